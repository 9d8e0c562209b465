"""Linear models read from ONNX, and their exact contributions. No Django.

For a margin w.x + b (log-odds for a logistic model), the Shapley value of input j against reference rows
is exactly w_j (x_j - mean of the references' x_j): the game is additive, so no sampling is needed. A
StandardScaler in front (skl2onnx writes it as an ``ai.onnx.ml`` Scaler node) is folded into the
coefficients, so the contributions are about the inputs the hospital's features produce, not scaled ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from clinical_ai.inference.engine.explain.links import FloatArray, Link, apply_link
from clinical_ai.inference.engine.explain.onnx_graph import float_attribute, node_attributes, scoring_graph
from clinical_ai.inference.engine.explain.shapley import normalised_weights
from clinical_ai.inference.engine.explain.types import Explanation, OutputSpace


@dataclass(frozen=True)
class LinearModel:
    """margin = coefficients . x + intercept; ``link`` gives the graph's output for the positive class."""

    coefficients: FloatArray
    intercept: float
    link: Link

    @property
    def n_features(self) -> int:
        return int(self.coefficients.shape[0])

    @property
    def output_space(self) -> OutputSpace:
        return "log-odds" if self.link == "logistic" else "probability"

    def margin(self, rows: FloatArray) -> FloatArray:
        return np.asarray(np.asarray(rows, dtype=np.float64) @ self.coefficients + self.intercept)

    def predict(self, rows: FloatArray) -> FloatArray:
        return apply_link(self.link, self.margin(rows))


class LinearExplainer:
    """contribution_j = coefficient_j x (x_j - weighted mean of the references' x_j), in the margin space.
    A missing input (NaN) makes its contribution and the output NaN, as it makes the model's output NaN."""

    def __init__(self, model: LinearModel, background: FloatArray, weights: FloatArray | None = None) -> None:
        background = np.asarray(background, dtype=np.float64)
        if background.ndim != 2 or background.shape[0] == 0 or background.shape[1] != model.n_features:
            raise ValueError(f"the reference set must be a non-empty (rows, {model.n_features}) array")
        self.model = model
        self.weights = normalised_weights(weights, background.shape[0])
        self.references = background.shape[0]
        self.reference_mean = np.asarray(self.weights @ background, dtype=np.float64)
        self.base_value = float(model.margin(self.reference_mean[None, :])[0])

    def explain(self, rows: FloatArray) -> list[Explanation]:
        rows = np.asarray(rows, dtype=np.float64)
        contributions = (rows - self.reference_mean[None, :]) * self.model.coefficients[None, :]
        return [
            Explanation(
                method="linear_exact",
                output_space=self.model.output_space,
                base_value=self.base_value,
                output_value=float(margin),
                contributions=tuple(float(v) for v in row_contributions),
                references=self.references,
            )
            for row_contributions, margin in zip(contributions, self.model.margin(rows), strict=True)
        ]


def linear_from_onnx(model: onnx.ModelProto, *, n_features: int | None = None) -> LinearModel | None:
    """The binary LinearClassifier or single-target LinearRegressor in ``model`` (with at most one Scaler
    in front), or None for any other graph, a layout whose output is not a function of one margin, or
    coefficients for another number of inputs than the graph declares or ``n_features`` (the caller's)."""
    graph = scoring_graph(model, ("LinearClassifier", "LinearRegressor"), prefix_ops=("Scaler",))
    if graph is None or len(graph.prefix) > 1:
        return None
    attributes = node_attributes(graph.node)
    try:
        if graph.node.op_type == "LinearClassifier":
            margin = _classifier_margin(attributes)
        else:
            margin = _regressor_margin(attributes)
        if margin is None:
            return None
        coefficients, intercept, link = margin
        if any(width is not None and coefficients.shape[0] != width for width in (graph.width, n_features)):
            return None
        if graph.prefix:
            folded = _fold_scaler(node_attributes(graph.prefix[0]), coefficients, intercept)
            if folded is None:
                return None
            coefficients, intercept = folded
    except (KeyError, ValueError):
        return None
    return LinearModel(coefficients=coefficients, intercept=intercept, link=link)


def _classifier_margin(attributes: dict[str, Any]) -> tuple[FloatArray, float, Link] | None:
    """skl2onnx writes a binary logistic regression as two rows (-w, w) with LOGISTIC; onnxruntime's
    output for class 1 is then sigmoid(row 1). SOFTMAX over two rows is sigmoid(row 1 - row 0); NONE is
    row 1 itself. A single row (the other spelling of binary) is sigmoid(row) with LOGISTIC."""
    labels = attributes.get("classlabels_ints") or attributes.get("classlabels_strings") or []
    if len(labels) != 2:
        return None
    intercepts = float_attribute(attributes, "intercepts")
    coefficients = float_attribute(attributes, "coefficients")
    if intercepts is None or coefficients is None or len(intercepts) not in (1, 2):
        return None
    if len(coefficients) % len(intercepts):
        return None
    rows = coefficients.reshape(len(intercepts), -1)
    transform = str(attributes.get("post_transform", "NONE"))
    if len(intercepts) == 1:
        if transform == "LOGISTIC":
            return rows[0], float(intercepts[0]), "logistic"
        return None
    if transform in ("LOGISTIC", "NONE"):
        return rows[1], float(intercepts[1]), "logistic" if transform == "LOGISTIC" else "identity"
    if transform == "SOFTMAX":
        return rows[1] - rows[0], float(intercepts[1] - intercepts[0]), "logistic"
    return None


def _regressor_margin(attributes: dict[str, Any]) -> tuple[FloatArray, float, Link] | None:
    if int(attributes.get("targets", 1)) != 1 or str(attributes.get("post_transform", "NONE")) != "NONE":
        return None
    coefficients = float_attribute(attributes, "coefficients")
    intercepts = float_attribute(attributes, "intercepts")
    if coefficients is None:
        return None
    intercept = 0.0 if intercepts is None or not len(intercepts) else float(intercepts[0])
    return coefficients, intercept, "identity"


def _fold_scaler(
    attributes: dict[str, Any], coefficients: FloatArray, intercept: float
) -> tuple[FloatArray, float] | None:
    """Scaler computes (x - offset) * scale (one value broadcast, or one per input), so
    w . ((x - offset) * scale) + b = (w * scale) . x + (b - sum(w * scale * offset))."""
    m = coefficients.shape[0]
    offset = float_attribute(attributes, "offset")
    scale = float_attribute(attributes, "scale")
    offset = np.zeros(m) if offset is None else offset
    scale = np.ones(m) if scale is None else scale
    if len(offset) not in (1, m) or len(scale) not in (1, m):
        return None
    offset = np.broadcast_to(offset, (m,))
    scale = np.broadcast_to(scale, (m,))
    folded = coefficients * scale
    return np.asarray(folded, dtype=np.float64), float(intercept - folded @ offset)
