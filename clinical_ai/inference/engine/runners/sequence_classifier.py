"""A hospital's own text classifier: a local transformers sequence-classification checkpoint that scores a
clinical note with the probability of one of its labels. No Django.

Loaded from files only (``HF_HUB_OFFLINE`` forced, ``local_files_only``), like the sentence encoder, so a
missing file is an error and never a download; weights in float32 whatever the checkpoint's dtype, so the
probabilities, and the thresholds tuned on them, are the same on every device.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from clinical_ai.inference.engine.runners.base import FloatArray, RunnerError


class SequenceClassifier:
    """Probabilities of ``positive_label`` (one of the checkpoint's ``id2label`` names) for texts, batched.

    Several labels: softmax over them. One label, or ``problem_type`` "multi_label_classification": a
    sigmoid of the label's own logit, as the model was trained."""

    def __init__(
        self,
        model_dir: Path,
        *,
        positive_label: str,
        device: str = "cpu",
        max_length: int = 256,
        batch_size: int = 16,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model_dir = model_dir
        self.device = device
        self.max_length = max_length
        self.batch_size = max(1, batch_size)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                str(model_dir), local_files_only=True, dtype=torch.float32
            )
        except (OSError, ValueError, KeyError) as error:  # missing files, an unknown architecture
            raise RunnerError(f"{model_dir.name}: cannot load the sequence classifier ({error})") from error
        self.model.to(device)
        self.model.eval()
        config = self.model.config
        labels = {int(index): str(name) for index, name in (config.id2label or {}).items()}
        matches = [index for index, name in labels.items() if name == positive_label]
        if not matches:
            known = ", ".join(name for _, name in sorted(labels.items()))
            raise RunnerError(
                f"{model_dir.name}: the positive label {positive_label!r} is not one of the model's labels ({known})"
            )
        self.positive_label = positive_label
        self.positive_index = matches[0]
        self.num_labels = int(config.num_labels)
        self.sigmoid = self.num_labels == 1 or config.problem_type == "multi_label_classification"

    def class_probabilities(self, texts: Sequence[str]) -> FloatArray:
        """(len(texts), num_labels) float64: each row sums to 1 under softmax; with the sigmoid each label's
        probability stands alone. Texts longer than ``max_length`` tokens are cut there (as in training)."""
        chunks: list[FloatArray] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = list(texts[start : start + self.batch_size])
                tokens = self.tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                ).to(self.device)
                logits = self.model(**tokens).logits.float()
                probabilities = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=-1)
                chunks.append(probabilities.cpu().numpy().astype(np.float64))
        if not chunks:
            return np.zeros((0, self.num_labels), dtype=np.float64)
        return np.concatenate(chunks, axis=0)

    def predict_texts(self, texts: Sequence[str]) -> FloatArray:
        """(len(texts),) float64 probabilities of the positive label."""
        return np.ascontiguousarray(self.class_probabilities(texts)[:, self.positive_index])
