"""SequenceClassifier on a tiny random BERT classification checkpoint built here and loaded offline, and the
sentence-occlusion explanation run through it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch

from clinical_ai.inference.engine.explain.text import sentence_occlusion, sentence_spans
from clinical_ai.inference.engine.runners.base import RunnerError
from clinical_ai.inference.engine.runners.sequence_classifier import SequenceClassifier

WORDS = ("patient", "is", "has", "a", "history", "of", "no", "denies", "fever", "cough", "chest", "pain",
         "pneumonia", "sepsis", "discharged", "home", "today", "stable", "the", "and", ".", ",")  # fmt: skip
LABELS = {0: "negative", 1: "sepsis", 2: "uncertain"}
NOTE = "Patient has fever and cough.\nDenies chest pain! History of pneumonia? Discharged home today"


def tiny_classifier(
    folder: Path, labels: dict[int, str], problem_type: Literal["multi_label_classification"] | None = None
) -> Path:
    """A two-layer BERT (hidden size 32) with a classification head and its WordPiece tokenizer, as a
    hospital's checkpoint folder would hold them."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    BertTokenizer(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(str(folder))
    torch.manual_seed(1)
    config = BertConfig(  # type: ignore[call-arg]  # PretrainedConfig takes the label keywords
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=len(labels),
        id2label=labels,
        label2id={name: index for index, name in labels.items()},
        problem_type=problem_type,
    )
    BertForSequenceClassification(config).eval().save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_classifier(tmp_path_factory.mktemp("classifier"), LABELS)


def test_probabilities_of_the_positive_label(checkpoint: Path) -> None:
    classifier = SequenceClassifier(checkpoint, positive_label="sepsis", batch_size=2)
    texts = [NOTE, "no fever", "", "patient is stable and discharged home today"]

    classes = classifier.class_probabilities(texts)
    scores = classifier.predict_texts(texts)

    assert classes.shape == (4, 3) and scores.shape == (4,) and scores.dtype == np.float64
    assert ((scores >= 0) & (scores <= 1)).all()
    np.testing.assert_allclose(classes.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(scores, classes[:, 1])
    # Batches of 2 with padding score as one text at a time.
    one_by_one = SequenceClassifier(checkpoint, positive_label="sepsis", batch_size=1).predict_texts(texts)
    np.testing.assert_allclose(scores, one_by_one, atol=1e-5)
    assert classifier.predict_texts([]).shape == (0,)


def test_an_unknown_positive_label_is_refused(checkpoint: Path) -> None:
    with pytest.raises(
        RunnerError,
        match=r"the positive label 'Sepsis' is not one of the model's labels \(negative, sepsis, uncertain\)",
    ):
        SequenceClassifier(checkpoint, positive_label="Sepsis")


def test_a_folder_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="empty: cannot load the sequence classifier"):
        SequenceClassifier(tmp_path / "empty", positive_label="sepsis")


def test_a_multi_label_model_gets_the_sigmoid(tmp_path: Path) -> None:
    folder = tiny_classifier(tmp_path / "multi", {0: "sepsis", 1: "pneumonia"}, "multi_label_classification")
    classifier = SequenceClassifier(folder, positive_label="pneumonia")
    model = classifier.model
    tokens = classifier.tokenizer([NOTE], return_tensors="pt")
    with torch.no_grad():
        expected = torch.sigmoid(model(**tokens).logits[0, 1]).item()
    assert classifier.sigmoid
    assert classifier.predict_texts([NOTE])[0] == pytest.approx(expected, abs=1e-6)


def test_sentence_occlusion_through_the_model(checkpoint: Path) -> None:
    classifier = SequenceClassifier(checkpoint, positive_label="sepsis")
    spans = sentence_spans(NOTE)

    explanation = sentence_occlusion(classifier, NOTE)

    assert explanation.method == "sentence_occlusion" and explanation.output_space == "probability"
    assert len(explanation.sentence_weights) == len(spans) == 4
    weights = [weight for _, _, weight in explanation.sentence_weights]
    assert weights == sorted(weights, reverse=True)
    assert sorted((start, end) for start, end, _ in explanation.sentence_weights) == spans
    assert [NOTE[start:end] for start, end in spans] == [
        "Patient has fever and cough.",
        "Denies chest pain!",
        "History of pneumonia?",
        "Discharged home today",
    ]
    full, empty = classifier.predict_texts([NOTE, ""])
    assert explanation.output_value == pytest.approx(full) and explanation.base_value == pytest.approx(empty)
    for start, end, weight in explanation.sentence_weights:
        without = classifier.predict_texts([NOTE[:start] + NOTE[end:]])[0]
        assert weight == pytest.approx(full - without, abs=1e-6)
