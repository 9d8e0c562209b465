"""The links between a model's additive score and its probability, shared by the explainers. No Django.

Explanations of a probability model are given in log-odds, where a tree ensemble or a logistic model is
additive and contributions can be summed; these two functions move between that space and probabilities.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Link = Literal["identity", "logistic"]

# A probability of exactly 0 or 1 (a saturated model, a float32 rounding) has infinite log-odds; clipping
# keeps contributions finite: 1e-7 is below any probability a clinician is shown, and logit(1e-7) ~ -16.1.
PROBABILITY_CLIP = 1e-7


def logit(probability: npt.ArrayLike) -> FloatArray:
    """Log-odds of ``probability``, clipped to [1e-7, 1 - 1e-7] first. NaN stays NaN."""
    p = np.clip(np.asarray(probability, dtype=np.float64), PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
    return np.asarray(np.log(p) - np.log1p(-p), dtype=np.float64)


def expit(log_odds: npt.ArrayLike) -> FloatArray:
    """The logistic function, written so that large negative log-odds do not overflow ``exp``."""
    z = np.asarray(log_odds, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.asarray(np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)), dtype=np.float64)


def apply_link(link: Link, margin: FloatArray) -> FloatArray:
    """The model's probability (or value, for ``identity``) from its additive score."""
    return expit(margin) if link == "logistic" else margin
