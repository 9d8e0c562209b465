"""Sentence embeddings with a local transformers checkpoint (mean pooling, L2-normalised), batched.

Loaded from files only: ``HF_HUB_OFFLINE`` is forced so a missing file is an error, never a download.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch


def best_device() -> str:
    """The GPU when one is present, the CPU otherwise."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceEncoder:
    """Encode sentences into unit vectors. ``batch_size`` 1 is the unbatched baseline the benchmark compares."""

    def __init__(
        self, model_dir: Path, *, device: str = "cpu", batch_size: int = 32, max_length: int = 128
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        self.device = device
        self.batch_size = max(1, batch_size)
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        # float32 whatever the checkpoint's dtype: the same numbers on every device, the thresholds as tuned.
        self.model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
        self.model.to(device)
        self.model.eval()

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> torch.Tensor:
        """A (len(texts), dimension) float tensor on the CPU, each row of norm 1."""
        size = batch_size or self.batch_size
        if not texts:
            return torch.zeros((0, self.dimension))
        chunks: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(texts), size):
                batch = list(texts[start : start + size])
                tokens = self.tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                ).to(self.device)
                hidden = self.model(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, p=2, dim=1).float().cpu())
        return torch.cat(chunks, dim=0)
