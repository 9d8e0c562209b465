"""Model-agnostic Shapley values of any tabular model against reference patients. No Django.

Used when the model's parameters cannot be read (a torch program, an ONNX graph with other operators): it
needs only the model's predictions. The value of a set S of inputs is v(S) = E_r[f(x on S, r elsewhere)],
the (weighted) mean over the reference rows r of the model on hybrid rows. With few inputs every one of the
2^m sets is evaluated, in one batch of hybrid rows, and the Shapley values are exact. With more, orderings
of the inputs are sampled, each with its reverse (antithetic pairs, which cancel much of the noise); each
ordering's marginal gains sum to f(x) - E f(r), so the estimate stays exactly additive, and its standard
error is measured from the spread between pairs (``ShapleyEstimate.standard_errors``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clinical_ai.inference.engine.explain.links import FloatArray, expit, logit
from clinical_ai.inference.engine.explain.types import Explanation, OutputSpace

__all__ = ["ShapleyEstimate", "ShapleyExplainer", "expit", "logit", "normalised_weights"]

Predict = Callable[[FloatArray], FloatArray]

# Hybrid rows are sent to the model in batches of at most this many (2^12 sets x 32 references = 131,072
# rows of 12 values is ~13 MB: one batch for the largest exact case at the default settings).
MAX_ROWS_PER_CALL = 1 << 17


def normalised_weights(weights: npt.ArrayLike | None, count: int) -> FloatArray:
    """Reference-row weights summing to 1 (equal when None); refuses negative, non-finite or all-zero."""
    if weights is None:
        return np.full(count, 1.0 / count)
    array = np.asarray(weights, dtype=np.float64).reshape(-1)
    if array.shape[0] != count:
        raise ValueError(f"{array.shape[0]} weights for {count} reference rows")
    if not np.isfinite(array).all() or (array < 0).any() or array.sum() <= 0:
        raise ValueError("reference weights must be finite, non-negative and not all zero")
    return np.asarray(array / array.sum(), dtype=np.float64)


@dataclass(frozen=True)
class ShapleyEstimate:
    """Shapley values of one row, their standard errors (zero when exact), v(empty set) and f(x)."""

    values: FloatArray
    standard_errors: FloatArray
    base_value: float
    output_value: float
    exact: bool


class ShapleyExplainer:
    """Shapley values of ``predict`` (rows -> outputs already in ``output_space``: pass logit(probability)
    to explain in log-odds) against ``background`` rows weighted by ``weights``.

    ``max_exact_features``: up to this many inputs, all 2^m sets are evaluated (2^m x references model
    rows per patient). Above it, ``samples`` orderings (rounded up to an even number: each is paired with
    its reverse) cost samples x (m + 1) x references rows; with the default 128, the standard error of each
    value is typically a few percent of |f(x) - E f(r)|. ``seed`` fixes the orderings, so a patient gets the
    same explanation on every run and in any batch.
    """

    def __init__(
        self,
        predict: Predict,
        background: FloatArray,
        weights: FloatArray | None = None,
        *,
        output_space: OutputSpace = "log-odds",
        max_exact_features: int = 12,
        samples: int = 128,
        seed: int = 0,
    ) -> None:
        background = np.asarray(background, dtype=np.float64)
        if background.ndim != 2 or background.shape[0] == 0:
            raise ValueError("the reference set must be a non-empty (rows, features) array")
        if samples < 2:
            raise ValueError("at least two sampled orderings are needed")
        self.predict = predict
        self.background = background
        self.weights = normalised_weights(weights, background.shape[0])
        self.output_space: OutputSpace = output_space
        self.max_exact_features = max_exact_features
        self.pairs = (samples + 1) // 2
        self.seed = seed
        self.base_value = float(self.weights @ self._predict(background))

    @property
    def references(self) -> int:
        return int(self.background.shape[0])

    def explain(self, rows: FloatArray) -> list[Explanation]:
        explanations = []
        for row in np.asarray(rows, dtype=np.float64):
            estimate = self.estimate(row)
            explanations.append(
                Explanation(
                    method="shapley_exact" if estimate.exact else "shapley_sampling",
                    output_space=self.output_space,
                    base_value=estimate.base_value,
                    output_value=estimate.output_value,
                    contributions=tuple(float(v) for v in estimate.values),
                    references=self.references,
                )
            )
        return explanations

    def estimate(self, row: FloatArray) -> ShapleyEstimate:
        row = np.asarray(row, dtype=np.float64).reshape(-1)
        if row.shape[0] != self.background.shape[1]:
            raise ValueError(f"expected {self.background.shape[1]} features, got {row.shape[0]}")
        if row.shape[0] <= self.max_exact_features:
            return self._exact(row)
        return self._sampled(row)

    def _predict(self, rows: FloatArray) -> FloatArray:
        parts = [
            np.asarray(self.predict(rows[start : start + MAX_ROWS_PER_CALL]), dtype=np.float64).reshape(-1)
            for start in range(0, rows.shape[0], MAX_ROWS_PER_CALL)
        ]
        out = np.concatenate(parts)
        if out.shape[0] != rows.shape[0]:
            raise ValueError(f"the model answered {out.shape[0]} values for {rows.shape[0]} rows")
        return out

    def _coalition_values(self, row: FloatArray, masks: npt.NDArray[np.bool_]) -> FloatArray:
        """v(S) for each row of ``masks`` (sets, m): the weighted mean over references of f(hybrid)."""
        hybrid = np.where(masks[:, None, :], row[None, None, :], self.background[None, :, :])
        outputs = self._predict(hybrid.reshape(-1, row.shape[0])).reshape(masks.shape[0], -1)
        return np.asarray(outputs @ self.weights, dtype=np.float64)

    def _exact(self, row: FloatArray) -> ShapleyEstimate:
        m = row.shape[0]
        codes = np.arange(1 << m)
        masks = ((codes[:, None] >> np.arange(m)[None, :]) & 1).astype(np.bool_)
        values = self._coalition_values(row, masks)
        sizes = masks.sum(axis=1)
        # weight of a set S of size s (not containing i) in i's value: s! (m - s - 1)! / m!
        weight_by_size = np.array(
            [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)]
        )
        shap = np.zeros(m)
        for i in range(m):
            without = codes[~masks[:, i]]
            shap[i] = weight_by_size[sizes[without]] @ (values[without | (1 << i)] - values[without])
        return ShapleyEstimate(
            values=shap,
            standard_errors=np.zeros(m),
            base_value=float(values[0]),
            output_value=float(values[-1]),
            exact=True,
        )

    def _sampled(self, row: FloatArray) -> ShapleyEstimate:
        m = row.shape[0]
        rng = np.random.default_rng(self.seed)
        forward = np.array([rng.permutation(m) for _ in range(self.pairs)])
        orders = np.concatenate([forward, forward[:, ::-1]])  # (2P, m): each ordering then its reverse
        # masks[p, t]: the first t inputs of ordering p come from the patient (t = 0..m)
        ranks = np.argsort(orders, axis=1)  # rank of each input in each ordering
        masks = ranks[:, None, :] < np.arange(m + 1)[None, :, None]  # (2P, m+1, m)
        values = self._coalition_values(row, masks.reshape(-1, m)).reshape(orders.shape[0], m + 1)
        gains = np.diff(values, axis=1)  # gains[p, t]: the gain of adding input orders[p, t]
        per_order = np.zeros_like(gains)
        np.put_along_axis(per_order, orders, gains, axis=1)
        per_pair = (per_order[: self.pairs] + per_order[self.pairs :]) / 2.0
        spread = per_pair.std(axis=0, ddof=1) if self.pairs > 1 else np.full(m, np.inf)
        return ShapleyEstimate(
            values=per_pair.mean(axis=0),
            standard_errors=spread / math.sqrt(self.pairs),
            base_value=float(values[0, 0]),
            output_value=float(values[0, -1]),
            exact=False,
        )
