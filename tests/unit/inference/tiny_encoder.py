"""Encoders for the problem-list tests: a tiny real BERT checkpoint built at test time (random weights, the
real ``SentenceEncoder`` code path) and a deterministic bag-of-words encoder for behaviour tests."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

TINY_WORDS = ("patient", "is", "presenting", "with", "has", "a", "history", "of", "no", "denies", "hypertension",
              "high", "blood", "pressure", "asthma", "diabetes", "type", "2", "mellitus", "pneumonia", "heart",
              "failure", "chronic", "kidney", "disease", "the", "and")  # fmt: skip
_WORD = re.compile(r"[a-z0-9]+")


def tiny_bert(folder: Path) -> Path:
    """Write a one-layer BERT (hidden size 32) and its WordPiece tokenizer to ``folder``, as
    ``SentenceEncoder`` expects a checkpoint folder to be. (``BertTokenizer`` is the fast tokenizer from
    transformers 5 on, the Python one before; both save what ``AutoTokenizer`` loads.)"""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(TINY_WORDS))]
    (folder / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    BertTokenizer(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BertModel(config).eval().save_pretrained(str(folder))
    return folder


class BagOfWordsEncoder:
    """Unit vectors of word counts: the cosine of two texts is their word overlap. Records each call."""

    def __init__(self, dimension: int = 2048) -> None:
        self.dimension = dimension
        self._index: dict[str, int] = {}
        self.calls: list[tuple[int, int | None]] = []  # (number of texts, batch_size)

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> torch.Tensor:
        self.calls.append((len(texts), batch_size))
        vectors = torch.zeros((len(texts), self.dimension))
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                column = self._index.setdefault(word, len(self._index) % self.dimension)
                vectors[row, column] += 1.0
        return torch.nn.functional.normalize(vectors, p=2, dim=1)
