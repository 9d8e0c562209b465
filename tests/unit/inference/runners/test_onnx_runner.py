"""OnnxRunner: scikit-learn models exported with skl2onnx score as scikit-learn does; a graph that does not fit
its manifest is refused at load with a sentence that says why; a NaN the graph computes is returned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression

from clinical_ai.inference.engine.explain.links import logit
from clinical_ai.inference.engine.runners.base import RunnerError
from clinical_ai.inference.engine.runners.onnx import OnnxRunner, session_providers

N_FEATURES = 4


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(300, N_FEATURES)).astype(np.float32)
    outcome = rows[:, 0] + 0.5 * rows[:, 1] - rows[:, 2] * rows[:, 3] + rng.normal(scale=0.5, size=300) > 0
    return rows, outcome.astype(np.int64)


@pytest.fixture(scope="module")
def boosted(data: Any) -> GradientBoostingClassifier:
    rows, outcome = data
    return GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0).fit(rows, outcome)


@pytest.fixture(scope="module")
def logistic(data: Any) -> LogisticRegression:
    rows, outcome = data
    return LogisticRegression().fit(rows, outcome)


def export(model: Any, path: Path, *, zipmap: bool = False, shape: list[int | None] | None = None) -> Path:
    options = {"zipmap": zipmap} if hasattr(model, "predict_proba") else None
    graph = to_onnx(
        model, initial_types=[("input", FloatTensorType(shape or [None, N_FEATURES]))], options=options
    )
    path.write_bytes(graph.SerializeToString())
    return path


def save(graph: onnx.GraphProto, path: Path) -> Path:
    """A hand-built graph at opset 17 and IR version 8, which every onnxruntime 1.x reads."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("zipmap", [False, True], ids=["matrix", "zipmap"])
@pytest.mark.parametrize("which", ["boosted", "logistic"])
def test_scores_as_scikit_learn(which: str, zipmap: bool, data: Any, request: Any, tmp_path: Path) -> None:
    rows, _ = data
    model = request.getfixturevalue(which)
    runner = OnnxRunner(export(model, tmp_path / "model.onnx", zipmap=zipmap), n_features=N_FEATURES)

    probabilities = runner.predict(rows.astype(np.float64))

    assert probabilities.dtype == np.float64 and probabilities.shape == (len(rows),)
    np.testing.assert_allclose(probabilities, model.predict_proba(rows)[:, 1], atol=1e-5)
    assert runner.input_width == N_FEATURES
    assert runner.output_name == ("output_probability" if zipmap else "probabilities")


def test_positive_index_picks_the_class(logistic: LogisticRegression, data: Any, tmp_path: Path) -> None:
    rows, _ = data
    path = export(logistic, tmp_path / "model.onnx")
    runner = OnnxRunner(path, n_features=N_FEATURES, positive_index=0)
    np.testing.assert_allclose(runner.predict(rows), logistic.predict_proba(rows)[:, 0], atol=1e-5)
    with pytest.raises(
        RunnerError, match="positive_index 2 is out of range: the output probabilities has 2 columns"
    ):
        OnnxRunner(path, n_features=N_FEATURES, positive_index=2)


def test_zipmap_with_text_labels_follows_the_class_order(data: Any, tmp_path: Path) -> None:
    rows, outcome = data
    labels = np.where(outcome == 1, "readmitted", "home")
    model = LogisticRegression().fit(rows, labels)
    runner = OnnxRunner(export(model, tmp_path / "model.onnx", zipmap=True), n_features=N_FEATURES)
    # classes_ is ["home", "readmitted"]: index 1 is "readmitted".
    np.testing.assert_allclose(runner.predict(rows[:20]), model.predict_proba(rows[:20])[:, 1], atol=1e-5)


def test_a_regressor_value_is_the_probability(data: Any, tmp_path: Path) -> None:
    rows, outcome = data
    model = GradientBoostingRegressor(n_estimators=10, random_state=0).fit(rows, outcome)
    runner = OnnxRunner(export(model, tmp_path / "model.onnx"), n_features=N_FEATURES)
    np.testing.assert_allclose(runner.predict(rows), model.predict(rows), atol=1e-5)


def test_a_dynamic_feature_dimension_is_accepted(
    logistic: LogisticRegression, data: Any, tmp_path: Path
) -> None:
    rows, _ = data
    runner = OnnxRunner(export(logistic, tmp_path / "model.onnx", shape=[None, None]), n_features=N_FEATURES)
    assert runner.input_width is None
    np.testing.assert_allclose(runner.predict(rows[:5]), logistic.predict_proba(rows[:5])[:, 1], atol=1e-5)


def test_one_row_and_no_row(logistic: LogisticRegression, data: Any, tmp_path: Path) -> None:
    rows, _ = data
    runner = OnnxRunner(export(logistic, tmp_path / "model.onnx"), n_features=N_FEATURES)
    assert runner.predict(rows[:1]).shape == (1,)
    assert runner.predict(np.zeros((0, N_FEATURES))).shape == (0,)
    with pytest.raises(RunnerError, match=r"expected rows of 4 features, got the shape \(3, 5\)"):
        runner.predict(np.zeros((3, 5)))


def test_two_inputs_are_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])],
        "two_inputs",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 12]) for name in ("a", "b")],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, [None, 12])],
    )
    with pytest.raises(
        RunnerError,
        match=r"model\.onnx: the ONNX graph takes inputs a, b; the manifest declares one feature row of 12 features",
    ):
        OnnxRunner(save(graph, tmp_path / "model.onnx"), n_features=12)


def test_a_wrong_feature_count_is_refused(logistic: LogisticRegression, tmp_path: Path) -> None:
    with pytest.raises(
        RunnerError,
        match="the ONNX graph takes rows of 4 features; the manifest declares one feature row of 5",
    ):
        OnnxRunner(export(logistic, tmp_path / "model.onnx"), n_features=5)


def test_a_fixed_batch_is_refused(logistic: LogisticRegression, tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="the graph takes a fixed batch of 1"):
        OnnxRunner(export(logistic, tmp_path / "model.onnx", shape=[1, N_FEATURES]), n_features=N_FEATURES)


def test_an_integer_or_three_dimensional_input_is_refused(tmp_path: Path) -> None:
    integer = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
        "integer_input",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
    )
    with pytest.raises(RunnerError, match=r"input x is tensor\(int64\), not a float tensor"):
        OnnxRunner(save(integer, tmp_path / "integer.onnx"), n_features=3)
    cube = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "cube",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, 2])],
    )
    with pytest.raises(RunnerError, match=r"input x has 3 dimensions, not 2 \(rows, features\)"):
        OnnxRunner(save(cube, tmp_path / "cube.onnx"), n_features=3)


def test_outputs_that_cannot_be_a_probability(logistic: LogisticRegression, tmp_path: Path) -> None:
    path = export(logistic, tmp_path / "model.onnx")
    with pytest.raises(RunnerError, match=r"the output 'label' is tensor\(int64\)"):
        OnnxRunner(path, n_features=N_FEATURES, output="label")
    with pytest.raises(
        RunnerError, match=r"names the output 'risk', but the graph's outputs are label \(tensor\(int64\)\), "
    ):
        OnnxRunner(path, n_features=N_FEATURES, output="risk")
    labels_only = helper.make_graph(
        [helper.make_node("ArgMax", ["x"], ["label"], axis=1)],
        "labels_only",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None, 1])],
    )
    with pytest.raises(RunnerError, match="has no output that can hold a probability"):
        OnnxRunner(save(labels_only, tmp_path / "labels.onnx"), n_features=3)


def test_several_candidate_outputs_need_a_name(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["first"]), helper.make_node("Tanh", ["x"], ["second"])],
        "two_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 1]) for name in ("first", "second")],
    )
    path = save(graph, tmp_path / "model.onnx")
    with pytest.raises(
        RunnerError, match=r"several outputs that could be the probability \(first, second\); name one"
    ):
        OnnxRunner(path, n_features=1)
    runner = OnnxRunner(path, n_features=1, output="second")
    np.testing.assert_allclose(runner.predict(np.array([[0.5], [-1.0]])), np.tanh([0.5, -1.0]), atol=1e-6)


def test_a_wrong_output_shape_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["y"], axis=0)],
        "flattened",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, None])],
    )
    with pytest.raises(RunnerError, match=r"has the shape \(1, 6\) for a batch of 2 rows"):
        OnnxRunner(save(graph, tmp_path / "model.onnx"), n_features=3)


def test_a_nan_the_graph_computes_is_returned_not_raised(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Log", ["x"], ["y"])],
        "log",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    )
    runner = OnnxRunner(save(graph, tmp_path / "model.onnx"), n_features=1)
    scores = runner.predict(np.array([[-1.0], [0.0], [0.5]]))
    assert np.isnan(scores[0]) and scores[1] == -np.inf
    assert scores[2] == pytest.approx(np.log(0.5), abs=1e-6)


def test_a_file_that_is_not_a_graph_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"this is not a protobuf message \xff\xfe")
    with pytest.raises(RunnerError, match=r"model\.onnx: cannot read the ONNX graph"):
        OnnxRunner(path, n_features=4)
    with pytest.raises(RunnerError, match=r"absent\.onnx: cannot read the ONNX graph"):
        OnnxRunner(tmp_path / "absent.onnx", n_features=4)


def test_cuda_is_asked_for_only_when_present() -> None:
    assert session_providers("cpu") == ["CPUExecutionProvider"]
    cuda = session_providers("cuda:0")
    assert cuda[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert cuda[0] == "CUDAExecutionProvider"
    else:
        assert cuda == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("which", "method"), [("boosted", "tree_shap_interventional"), ("logistic", "linear_exact")]
)
def test_exact_explainers_for_trees_and_linear_models(
    which: str, method: str, data: Any, request: Any, tmp_path: Path
) -> None:
    rows, _ = data
    runner = OnnxRunner(
        export(request.getfixturevalue(which), tmp_path / "model.onnx"), n_features=N_FEATURES
    )
    explanations = runner.explainer(rows[:32].astype(np.float64)).explain(rows[40:43].astype(np.float64))

    assert [explanation.method for explanation in explanations] == [method] * 3
    for explanation, log_odds in zip(explanations, logit(runner.predict(rows[40:43])), strict=True):
        assert explanation.output_space == "log-odds" and explanation.references == 32
        assert explanation.output_value == pytest.approx(log_odds, abs=1e-4)
        assert explanation.base_value + sum(explanation.contributions) == pytest.approx(
            explanation.output_value, abs=1e-6
        )


def test_other_graphs_and_the_other_class_get_shapley_values(
    logistic: LogisticRegression, data: Any, tmp_path: Path
) -> None:
    rows, _ = data
    background, patient = rows[:16].astype(np.float64), rows[50:51].astype(np.float64)
    # Class 0 of a logistic model: the exact explainer reads class 1's parameters, so it is not used.
    runner = OnnxRunner(export(logistic, tmp_path / "model.onnx"), n_features=N_FEATURES, positive_index=0)
    (explanation,) = runner.explainer(background).explain(patient)
    assert explanation.method == "shapley_exact"
    assert explanation.output_value == pytest.approx(float(logit(runner.predict(patient))[0]), abs=1e-9)
    assert explanation.base_value == pytest.approx(
        float(np.mean(logit(runner.predict(background)))), abs=1e-9
    )
    assert explanation.base_value + sum(explanation.contributions) == pytest.approx(explanation.output_value)
    # A linear model's log-odds are additive, so its Shapley values are the linear contributions of class 0.
    expected = -(patient[0] - background.mean(axis=0)) * logistic.coef_[0]
    np.testing.assert_allclose(explanation.contributions, expected, atol=1e-4)
