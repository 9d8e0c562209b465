"""Tree ensembles read back from ONNX reproduce onnxruntime, and their TreeSHAP values are the exact Shapley
values (checked against enumerating every coalition), additive, zero for an unused input, and follow the
graph's missing-value directions."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression

from clinical_ai.inference.engine.explain.linear import linear_from_onnx
from clinical_ai.inference.engine.explain.shapley import ShapleyExplainer
from clinical_ai.inference.engine.explain.trees import TreeShapExplainer, tree_ensemble_from_onnx
from clinical_ai.inference.engine.explain.types import METHOD_TEXT

from .onnx_models import (
    STRICT_LEAVES,
    STRICT_SPLITS,
    export,
    grid_rows,
    onnxruntime_output,
    tree_classifier,
    tree_regressor,
)

WIDTH = 7
UNUSED = 6  # constant while training: no tree can split on it


def training_data(with_missing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(500, WIDTH))
    rows[:, UNUSED] = 0.0
    signal = rows[:, 0] + rows[:, 1] * rows[:, 2] - 0.5 * rows[:, 3] + 0.5 * rng.normal(size=500)
    if with_missing:
        rows[:, :3][rng.random((500, 3)) < 0.15] = np.nan
        signal = signal + np.isnan(rows[:, 1])
    return rows, np.nan_to_num(signal)


def _fit(kind: str) -> Any:
    rows, signal = training_data(with_missing=kind == "hist_gradient_boosting")
    outcome = (signal > 0).astype(int)
    if kind == "gradient_boosting":
        return GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0).fit(rows, outcome)
    if kind == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(max_iter=30, max_depth=4, random_state=0).fit(rows, outcome)
    if kind == "random_forest":
        return RandomForestClassifier(n_estimators=25, max_depth=4, random_state=0).fit(rows, outcome)
    if kind == "gradient_boosting_regressor":
        return GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0).fit(rows, signal)
    return RandomForestRegressor(n_estimators=10, max_depth=3, random_state=0).fit(rows, signal)


KINDS = [
    "gradient_boosting",
    "hist_gradient_boosting",
    "random_forest",
    "gradient_boosting_regressor",
    "random_forest_regressor",
]


@pytest.fixture(scope="module", params=KINDS)
def exported(request: pytest.FixtureRequest) -> tuple[str, onnx.ModelProto]:
    return request.param, export(_fit(request.param), WIDTH)


def patients(count: int, seed: int, with_missing: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(count, WIDTH)) * 1.5
    rows[:, UNUSED] = rng.normal(size=count) * 10.0  # far from anything seen in training
    if with_missing:
        rows[:, :3][rng.random((count, 3)) < 0.3] = np.nan
    return rows


def test_the_parsed_ensemble_reproduces_onnxruntime(exported: tuple[str, onnx.ModelProto]) -> None:
    kind, model = exported
    ensemble = tree_ensemble_from_onnx(model)
    assert ensemble is not None
    rows = patients(300, seed=1, with_missing=kind == "hist_gradient_boosting")
    np.testing.assert_allclose(ensemble.predict(rows), onnxruntime_output(model, rows), rtol=0, atol=1e-5)
    expected_space = "log-odds" if kind in ("gradient_boosting", "hist_gradient_boosting") else "probability"
    assert ensemble.output_space == expected_space


def test_treeshap_equals_every_coalition_enumerated(exported: tuple[str, onnx.ModelProto]) -> None:
    kind, model = exported
    ensemble = tree_ensemble_from_onnx(model)
    assert ensemble is not None
    with_missing = kind == "hist_gradient_boosting"
    background = patients(12, seed=2, with_missing=with_missing)
    weights = np.random.default_rng(3).uniform(0.2, 2.0, size=12)
    rows = patients(4, seed=4, with_missing=with_missing)

    tree_shap = TreeShapExplainer(ensemble, background, weights).explain(rows)
    brute_force = ShapleyExplainer(
        ensemble.margin, background, weights, output_space=ensemble.output_space
    ).explain(rows)

    for fast, exact in zip(tree_shap, brute_force, strict=True):
        assert fast.method == "tree_shap_interventional" and fast.method in METHOD_TEXT
        assert exact.method == "shapley_exact"
        assert fast.references == 12
        np.testing.assert_allclose(fast.contributions, exact.contributions, rtol=0, atol=1e-8)
        assert fast.base_value == pytest.approx(exact.base_value, abs=1e-10)
        assert fast.output_value == pytest.approx(exact.output_value, abs=1e-10)


def test_contributions_add_up_to_the_patients_margin(exported: tuple[str, onnx.ModelProto]) -> None:
    _, model = exported
    ensemble = tree_ensemble_from_onnx(model)
    assert ensemble is not None
    background = patients(32, seed=5)
    weights = np.linspace(1.0, 3.0, 32)
    rows = patients(20, seed=6)
    explainer = TreeShapExplainer(ensemble, background, weights)
    margins = ensemble.margin(rows)
    expected_base = float(np.average(ensemble.margin(background), weights=weights))
    for explanation, margin in zip(explainer.explain(rows), margins, strict=True):
        assert explanation.output_value == pytest.approx(margin, abs=1e-12)
        assert explanation.base_value == pytest.approx(expected_base, abs=1e-12)
        assert explanation.base_value + sum(explanation.contributions) == pytest.approx(margin, abs=1e-9)


def test_an_input_the_model_never_splits_on_gets_nothing(exported: tuple[str, onnx.ModelProto]) -> None:
    _, model = exported
    ensemble = tree_ensemble_from_onnx(model)
    assert ensemble is not None
    assert all(UNUSED not in tree.feature[tree.mode != 0] for tree in ensemble.trees)
    explanations = TreeShapExplainer(ensemble, patients(16, seed=8)).explain(patients(10, seed=9))
    assert all(explanation.contributions[UNUSED] == 0.0 for explanation in explanations)
    # and the inputs it does use get something
    assert any(abs(explanation.contributions[0]) > 1e-6 for explanation in explanations)


def test_strict_splits_and_missing_directions_match_onnxruntime() -> None:
    model = tree_classifier(
        STRICT_SPLITS,
        [(tree, node, 0, weight) for tree, node, weight in STRICT_LEAVES],
        width=3,
        post_transform="LOGISTIC",
        base_values=[0.2],
    )
    ensemble = tree_ensemble_from_onnx(model)
    assert ensemble is not None and ensemble.link == "logistic"
    rng = np.random.default_rng(11)
    rows = grid_rows(rng, 400, 3, missing=0.25)
    np.testing.assert_allclose(ensemble.predict(rows), onnxruntime_output(model, rows), rtol=0, atol=1e-6)

    background = grid_rows(rng, 10, 3, missing=0.25)
    foreground = grid_rows(rng, 12, 3, missing=0.4)
    tree_shap = TreeShapExplainer(ensemble, background).explain(foreground)
    brute_force = ShapleyExplainer(ensemble.margin, background).explain(foreground)
    for fast, exact in zip(tree_shap, brute_force, strict=True):
        np.testing.assert_allclose(fast.contributions, exact.contributions, rtol=0, atol=1e-12)


def test_a_missing_value_follows_the_nodes_missing_direction() -> None:
    # one split on input 0 (< 0.5): missing goes to the true side when the flag is set, else to the false side
    for missing_goes_true, same_as in ((1, 0.0), (0, 2.0)):
        nodes = [
            (0, 0, "BRANCH_LT", 0, 0.5, 1, 2, missing_goes_true),
            (0, 1, "LEAF", 0, 0.0, 0, 0, 0),
            (0, 2, "LEAF", 0, 0.0, 0, 0, 0),
        ]
        model = tree_classifier(nodes, [(0, 1, 0, 1.5), (0, 2, 0, -0.5)], width=2, post_transform="LOGISTIC")
        ensemble = tree_ensemble_from_onnx(model)
        assert ensemble is not None
        background = np.array([[0.0, 0.0], [2.0, 0.0]])
        explainer = TreeShapExplainer(ensemble, background)
        missing = explainer.explain(np.array([[np.nan, 7.0]]))[0]
        present = explainer.explain(np.array([[same_as, 7.0]]))[0]
        assert missing.contributions == pytest.approx(present.contributions, abs=1e-15)
        assert missing.output_value == pytest.approx(present.output_value, abs=1e-15)
        # against references split evenly across the threshold, the input moves the margin by +-1
        assert missing.contributions[0] == pytest.approx(1.0 if missing_goes_true else -1.0)
        assert missing.contributions[1] == 0.0


@pytest.mark.parametrize("post_transform", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_two_score_columns_match_onnxruntime(post_transform: str) -> None:
    leaves = []
    for tree, node, weight in STRICT_LEAVES:
        leaves.append((tree, node, 0, 0.5 - weight))
        leaves.append((tree, node, 1, 0.5 + weight))
    model = tree_classifier(STRICT_SPLITS, leaves, width=3, post_transform=post_transform)
    ensemble = tree_ensemble_from_onnx(model)
    assert ensemble is not None
    rows = grid_rows(np.random.default_rng(12), 200, 3, missing=0.2)
    np.testing.assert_allclose(ensemble.predict(rows), onnxruntime_output(model, rows), rtol=0, atol=1e-6)


@pytest.mark.parametrize("aggregate", ["SUM", "AVERAGE"])
def test_regressor_aggregates_match_onnxruntime(aggregate: str) -> None:
    model = tree_regressor(STRICT_SPLITS, STRICT_LEAVES, width=3, aggregate=aggregate, base_value=0.25)
    ensemble = tree_ensemble_from_onnx(model)
    assert ensemble is not None and ensemble.output_space == "probability"
    rows = grid_rows(np.random.default_rng(13), 200, 3, missing=0.2)
    np.testing.assert_allclose(ensemble.predict(rows), onnxruntime_output(model, rows), rtol=0, atol=1e-6)


def test_graphs_it_cannot_reproduce_are_left_to_the_model_agnostic_explainer() -> None:
    rows, signal = training_data()
    three_classes = np.digitize(signal, [-0.5, 0.5])
    multiclass = export(
        GradientBoostingClassifier(n_estimators=5, max_depth=2).fit(rows, three_classes), WIDTH
    )
    assert tree_ensemble_from_onnx(multiclass) is None

    logistic = export(LogisticRegression().fit(rows, signal > 0), WIDTH)
    assert tree_ensemble_from_onnx(logistic) is None
    assert linear_from_onnx(export(_fit("gradient_boosting"), WIDTH)) is None

    # onnxruntime writes [1 - s, s] (no sigmoid) for one column of non-negative weights: not a margin
    positive = tree_classifier(
        STRICT_SPLITS,
        [(tree, node, 0, abs(weight)) for tree, node, weight in STRICT_LEAVES],
        width=3,
        post_transform="LOGISTIC",
    )
    assert tree_ensemble_from_onnx(positive) is None

    # any other operator after the scores (here a Mul) makes the graph something else
    model = export(_fit("gradient_boosting"), WIDTH)
    scaled = onnx.ModelProto()
    scaled.CopyFrom(model)
    graph = scaled.graph
    graph.initializer.append(helper.make_tensor("two", onnx.TensorProto.FLOAT, [], [2.0]))
    final = graph.output[-1].name
    graph.node.append(helper.make_node("Mul", [final, "two"], ["scaled"]))
    graph.output.append(helper.make_tensor_value_info("scaled", onnx.TensorProto.FLOAT, [None, 2]))
    assert tree_ensemble_from_onnx(scaled) is None


def test_the_default_zipmap_export_and_an_open_input_width_are_read() -> None:
    model = _fit("gradient_boosting")
    with_zipmap = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, None]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    assert "ZipMap" in [node.op_type for node in with_zipmap.graph.node]
    ensemble = tree_ensemble_from_onnx(with_zipmap, n_features=WIDTH)
    assert ensemble is not None and ensemble.n_features == WIDTH
    rows = patients(50, seed=3)
    np.testing.assert_allclose(ensemble.predict(rows), model.predict_proba(rows)[:, 1], rtol=0, atol=1e-5)
    assert tree_ensemble_from_onnx(export(model, WIDTH), n_features=WIDTH + 1) is None
    assert tree_ensemble_from_onnx(with_zipmap, n_features=2) is None  # the trees split on inputs beyond 2


def test_a_row_of_the_wrong_width_is_refused() -> None:
    ensemble = tree_ensemble_from_onnx(export(_fit("gradient_boosting"), WIDTH))
    assert ensemble is not None
    with pytest.raises(ValueError, match="7 features"):
        TreeShapExplainer(ensemble, patients(4, seed=1)).explain(np.zeros((1, WIDTH - 1)))


def test_timing_for_one_patient() -> None:
    """Prints the cost of one patient for a mid-sized boosted model (100 trees of depth 4, 15 inputs,
    32 references); asserts only that the explanation is additive, since timings depend on the machine."""
    rng = np.random.default_rng(21)
    rows = rng.normal(size=(1500, 15))
    outcome = (rows[:, 0] + rows[:, 1] * rows[:, 2] + rows[:, 5] > 0).astype(int)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=4, random_state=0).fit(rows, outcome)
    ensemble = tree_ensemble_from_onnx(export(model, 15))
    assert ensemble is not None
    explainer = TreeShapExplainer(ensemble, rows[:32])
    explainer.explain(rows[100:101])
    started = time.perf_counter()
    explanations = explainer.explain(rows[200:250])
    per_patient = (time.perf_counter() - started) / 50
    print(f"TreeSHAP: {per_patient * 1000:.2f} ms per patient (100 trees, depth 4, 15 inputs, 32 references)")
    last = explanations[-1]
    assert last.base_value + sum(last.contributions) == pytest.approx(last.output_value, abs=1e-9)
