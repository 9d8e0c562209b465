"""Linear models read back from ONNX (a StandardScaler folded in) reproduce onnxruntime, and their exact
contributions are the Shapley values found by enumerating every coalition."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clinical_ai.inference.engine.explain.linear import LinearExplainer, LinearModel, linear_from_onnx
from clinical_ai.inference.engine.explain.shapley import ShapleyExplainer
from clinical_ai.inference.engine.explain.trees import tree_ensemble_from_onnx

from .onnx_models import export, linear_classifier, onnxruntime_output

WIDTH = 6
UNUSED = 5


def training_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(17)
    rows = rng.normal(
        loc=[50.0, 120.0, 1.0, 0.0, 3.0, 0.0], scale=[15.0, 20.0, 1.0, 1.0, 2.0, 1.0], size=(400, WIDTH)
    )
    rows[:, UNUSED] = 4.0  # constant while training: standardised to 0, its coefficient stays 0
    logit = 0.04 * (rows[:, 0] - 50) + 0.03 * (rows[:, 1] - 120) - 0.8 * rows[:, 2] + 0.5 * rows[:, 3]
    return rows, logit + rng.logistic(size=400)


@pytest.fixture(scope="module")
def logistic_pipeline() -> onnx.ModelProto:
    rows, signal = training_data()
    return export(make_pipeline(StandardScaler(), LogisticRegression()).fit(rows, signal > 0), WIDTH)


def patients(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(
        loc=[50.0, 120.0, 1.0, 0.0, 3.0, 4.0], scale=[20.0, 25.0, 1.0, 1.0, 2.0, 30.0], size=(count, WIDTH)
    )
    return rows


def test_the_scaler_is_folded_and_onnxruntime_is_reproduced(logistic_pipeline: onnx.ModelProto) -> None:
    assert logistic_pipeline.graph.node[0].op_type == "Scaler"
    model = linear_from_onnx(logistic_pipeline)
    assert model is not None and model.output_space == "log-odds"
    rows = patients(300, seed=1)
    np.testing.assert_allclose(
        model.predict(rows), onnxruntime_output(logistic_pipeline, rows), rtol=0, atol=1e-5
    )
    assert tree_ensemble_from_onnx(logistic_pipeline) is None


def test_exact_contributions_equal_every_coalition_enumerated(logistic_pipeline: onnx.ModelProto) -> None:
    model = linear_from_onnx(logistic_pipeline)
    assert model is not None
    background = patients(20, seed=2)
    weights = np.random.default_rng(3).uniform(0.5, 2.0, size=20)
    rows = patients(5, seed=4)
    exact = LinearExplainer(model, background, weights).explain(rows)
    brute_force = ShapleyExplainer(model.margin, background, weights).explain(rows)
    for fast, slow in zip(exact, brute_force, strict=True):
        assert fast.method == "linear_exact" and fast.references == 20
        np.testing.assert_allclose(fast.contributions, slow.contributions, rtol=0, atol=1e-8)
        assert fast.base_value == pytest.approx(slow.base_value, abs=1e-9)
        assert fast.output_value == pytest.approx(slow.output_value, abs=1e-9)
        assert fast.base_value + sum(fast.contributions) == pytest.approx(fast.output_value, abs=1e-9)


def test_an_input_with_no_weight_gets_nothing(logistic_pipeline: onnx.ModelProto) -> None:
    model = linear_from_onnx(logistic_pipeline)
    assert model is not None
    assert model.coefficients[UNUSED] == 0.0
    explanations = LinearExplainer(model, patients(10, seed=5)).explain(patients(10, seed=6))
    assert all(explanation.contributions[UNUSED] == 0.0 for explanation in explanations)
    assert all(abs(explanation.contributions[0]) > 0 for explanation in explanations)


def test_a_missing_input_makes_its_contribution_and_the_output_missing(
    logistic_pipeline: onnx.ModelProto,
) -> None:
    model = linear_from_onnx(logistic_pipeline)
    assert model is not None
    row = patients(1, seed=7)
    row[0, 2] = np.nan
    explanation = LinearExplainer(model, patients(10, seed=8)).explain(row)[0]
    assert np.isnan(explanation.contributions[2]) and np.isnan(explanation.output_value)
    assert not np.isnan(explanation.contributions[0])


def test_a_standardised_linear_regression_is_read() -> None:
    rows, signal = training_data()
    graph = export(make_pipeline(StandardScaler(), LinearRegression()).fit(rows, signal), WIDTH)
    model = linear_from_onnx(graph)
    assert model is not None and model.output_space == "probability"
    sample = patients(50, seed=9)
    np.testing.assert_allclose(model.predict(sample), onnxruntime_output(graph, sample), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("coefficients", "intercepts", "post_transform"),
    [
        ([0.5, -1.0, 2.0], [0.3], "LOGISTIC"),
        ([0.5, -1.0, 2.0, -0.2, 0.4, 1.0], [0.3, -0.1], "SOFTMAX"),
        ([0.5, -1.0, 2.0, -0.2, 0.4, 1.0], [0.3, -0.1], "LOGISTIC"),
    ],
)
def test_other_binary_layouts_match_onnxruntime(
    coefficients: list[float], intercepts: list[float], post_transform: str
) -> None:
    graph = linear_classifier(coefficients, intercepts, width=3, post_transform=post_transform)
    model = linear_from_onnx(graph)
    assert model is not None and model.link == "logistic"
    rows = np.random.default_rng(10).normal(size=(100, 3))
    np.testing.assert_allclose(model.predict(rows), onnxruntime_output(graph, rows), rtol=0, atol=1e-6)


def test_a_reference_set_of_the_wrong_width_is_refused() -> None:
    model = LinearModel(coefficients=np.array([1.0, 2.0]), intercept=0.0, link="logistic")
    with pytest.raises(ValueError, match="2"):
        LinearExplainer(model, np.zeros((4, 3)))
