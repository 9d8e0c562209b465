"""The model-agnostic Shapley explainer: exact on small games with known answers, and its sampled estimate
(for models with too many inputs to enumerate) close to the exact values, reproducible and additive."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from clinical_ai.inference.engine.explain.links import PROBABILITY_CLIP, expit, logit
from clinical_ai.inference.engine.explain.shapley import ShapleyExplainer
from clinical_ai.inference.engine.explain.trees import TreeShapExplainer, tree_ensemble_from_onnx

from .onnx_models import export


def product_game(rows: np.ndarray) -> np.ndarray:
    values: np.ndarray = rows[:, 0] * rows[:, 1] + 2.0 * rows[:, 2]
    return values


def test_an_interaction_is_shared_equally_and_a_main_effect_kept_whole() -> None:
    explainer = ShapleyExplainer(product_game, np.zeros((1, 4)))
    explanation = explainer.explain(np.array([[3.0, 4.0, 5.0, 9.0]]))[0]
    assert explanation.method == "shapley_exact"
    assert explanation.contributions == pytest.approx((6.0, 6.0, 10.0, 0.0), abs=1e-12)
    assert explanation.base_value == 0.0 and explanation.output_value == 22.0


def test_weighted_references_weight_the_game() -> None:
    background = np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]])
    weighted = ShapleyExplainer(product_game, background, np.array([3.0, 1.0])).explain(np.ones((1, 3)))[0]
    # v(S) is the 3:1 weighted mean of the two single-reference games
    singles = [ShapleyExplainer(product_game, background[[i]]).explain(np.ones((1, 3)))[0] for i in (0, 1)]
    expected = 0.75 * np.array(singles[0].contributions) + 0.25 * np.array(singles[1].contributions)
    np.testing.assert_allclose(weighted.contributions, expected, rtol=0, atol=1e-12)
    assert weighted.base_value == pytest.approx(0.75 * 0.0 + 0.25 * 8.0)


@pytest.fixture(scope="module")
def fourteen_inputs() -> tuple[TreeShapExplainer, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(31)
    rows = rng.normal(size=(800, 14))
    signal = rows[:, 0] + rows[:, 1] * rows[:, 2] - rows[:, 7] + 0.5 * rows[:, 9] * rows[:, 10]
    model = GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0).fit(rows, signal > 0)
    ensemble = tree_ensemble_from_onnx(export(model, 14))
    assert ensemble is not None
    background = rows[:16]
    return TreeShapExplainer(ensemble, background), background, rows[100:104]


def test_sampled_values_are_close_to_the_exact_ones(
    fourteen_inputs: tuple[TreeShapExplainer, np.ndarray, np.ndarray],
) -> None:
    exact, background, rows = fourteen_inputs
    sampler = ShapleyExplainer(exact.ensemble.margin, background, samples=256, seed=0)
    for row, reference in zip(rows, exact.explain(rows), strict=True):
        estimate = sampler.estimate(row)
        assert not estimate.exact
        error = np.abs(estimate.values - np.array(reference.contributions))
        spread = abs(reference.output_value - reference.base_value) + np.abs(reference.contributions).sum()
        # within 4 standard errors each, and a small share of the size of the explanation overall
        assert (error <= 4 * estimate.standard_errors + 1e-9).all()
        assert error.max() < 0.05 * spread
        # every ordering's gains add up to f(x) - E f(r): the estimate is exactly additive
        assert estimate.values.sum() == pytest.approx(reference.output_value - reference.base_value, abs=1e-9)


def test_sampling_is_reproducible_and_labelled(
    fourteen_inputs: tuple[TreeShapExplainer, np.ndarray, np.ndarray],
) -> None:
    exact, background, rows = fourteen_inputs
    first = ShapleyExplainer(exact.ensemble.margin, background, samples=32, seed=5).explain(rows[:2])
    again = ShapleyExplainer(exact.ensemble.margin, background, samples=32, seed=5).explain(rows[1::-1])
    other = ShapleyExplainer(exact.ensemble.margin, background, samples=32, seed=6).explain(rows[:1])
    assert first[0] == again[1] and first[1] == again[0]  # same patient, same answer, in any batch
    assert first[0].contributions != other[0].contributions
    assert first[0].method == "shapley_sampling" and first[0].references == 16


def test_hybrid_rows_are_sent_in_one_batch() -> None:
    calls: list[int] = []

    def counting(rows: np.ndarray) -> np.ndarray:
        calls.append(rows.shape[0])
        totals: np.ndarray = rows.sum(axis=1)
        return totals

    explainer = ShapleyExplainer(counting, np.zeros((8, 5)))
    calls.clear()
    explainer.explain(np.ones((1, 5)))
    assert calls == [2**5 * 8]


def test_a_model_answering_the_wrong_number_of_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="answered"):
        ShapleyExplainer(lambda rows: np.zeros(1), np.zeros((3, 2)))


@pytest.mark.parametrize(
    "weights", [np.array([1.0, -1.0]), np.array([0.0, 0.0]), np.array([1.0]), np.array([np.nan, 1.0])]
)
def test_bad_reference_weights_are_refused(weights: np.ndarray) -> None:
    with pytest.raises(ValueError):
        ShapleyExplainer(product_game, np.zeros((2, 3)), weights)


def test_logit_and_expit() -> None:
    probabilities = np.array([0.01, 0.3, 0.5, 0.9])
    np.testing.assert_allclose(expit(logit(probabilities)), probabilities, rtol=1e-12)
    assert logit(np.array([0.0, 1.0])) == pytest.approx(
        [logit(PROBABILITY_CLIP)[()], -logit(PROBABILITY_CLIP)[()]]
    )
    assert np.isfinite(logit(np.array([0.0]))).all()
    with np.errstate(over="raise"):
        assert expit(np.array([-1000.0, 1000.0])) == pytest.approx([0.0, 1.0])
