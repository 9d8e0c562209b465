"""What a tabular runner offers the declarative model (builtin/declarative.py). No Django.

A runner wraps one loaded model file (an ONNX graph, a torch.export program) and answers for a batch of
feature rows with the probability of the model's outcome. It also builds the explainer that fits its model
(exact TreeSHAP for a tree ensemble, exact contributions for a linear model, Shapley values otherwise).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from clinical_ai.inference.engine.explain.types import Explanation

FloatArray = npt.NDArray[np.float64]


class RunnerError(ValueError):
    """The model file does not fit its manifest (inputs, outputs, shape): the model refuses to load."""


class TabularExplainer(Protocol):
    def explain(self, rows: FloatArray) -> list[Explanation]:
        """One explanation per row of ``rows`` (n, features), in order."""
        ...


class TabularRunner(Protocol):
    @property
    def input_width(self) -> int | None:
        """How many features the model takes per row (None when the file does not say)."""
        ...

    def predict(self, rows: FloatArray) -> FloatArray:
        """(n, features) -> (n,) probabilities of the outcome. Non-finite outputs are returned as they are:
        the caller fails that patient's run."""
        ...

    def explainer(self, background: FloatArray, weights: FloatArray | None = None) -> TabularExplainer:
        """The explainer for this model against ``background`` reference rows (optionally weighted)."""
        ...


def feature_rows(
    rows: FloatArray, *, width: int, dtype: type[np.floating[Any]], source: str
) -> npt.NDArray[Any]:
    """``rows`` as a contiguous (n, width) array of the model's input type; any other shape is the caller's
    mistake, named with the model file."""
    matrix = np.asarray(rows, dtype=dtype)
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise RunnerError(f"{source}: expected rows of {width} features, got the shape {matrix.shape}")
    return np.ascontiguousarray(matrix)
