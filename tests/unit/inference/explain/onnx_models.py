"""Small ONNX models for the explainer tests: scikit-learn models exported with skl2onnx, and tree or linear
graphs written by hand for the layouts skl2onnx does not produce (XGBoost-style strict splits with missing
values, two-column softmax, averaged regressors)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import skl2onnx.common.tree_ensemble as skl2onnx_trees
from onnx import helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]


@contextmanager
def bool_safe_skl2onnx() -> Iterator[None]:
    """skl2onnx 1.20 writes HistGradientBoosting leaves' missing-value flag as a Python bool, which onnx
    1.23 refuses in an ints attribute ("Expected an int, got a boolean"); pass it on as an int instead."""
    original = skl2onnx_trees.add_node

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        return original(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

    skl2onnx_trees.add_node = add_node
    try:
        yield
    finally:
        skl2onnx_trees.add_node = original


def export(model: Any, width: int) -> onnx.ModelProto:
    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    with bool_safe_skl2onnx():
        model_proto: onnx.ModelProto = convert_sklearn(
            model,
            initial_types=[("input", FloatTensorType([None, width]))],
            target_opset={"": 17, "ai.onnx.ml": 3},
            options=options,
        )
    return model_proto


def onnxruntime_output(model: onnx.ModelProto, rows: np.ndarray) -> np.ndarray:
    """The positive class's probability (classifier) or the value (regressor) onnxruntime computes."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    input_type = session.get_inputs()[0].type
    dtype = np.float64 if "double" in input_type else np.float32
    outputs = session.run(None, {session.get_inputs()[0].name: rows.astype(dtype)})
    scores = np.asarray(outputs[-1], dtype=np.float64)
    return scores[:, 1] if scores.ndim == 2 and scores.shape[1] == 2 else scores.reshape(-1)


def one_node_model(
    node: onnx.NodeProto, width: int, outputs: Sequence[onnx.ValueInfoProto]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node],
        "hand_written",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, width])],
        list(outputs),
    )
    model = helper.make_model(graph, opset_imports=OPSETS)
    onnx.checker.check_model(model)
    return model


def classifier_outputs() -> list[onnx.ValueInfoProto]:
    return [
        helper.make_tensor_value_info("label", onnx.TensorProto.INT64, [None]),
        helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, [None, 2]),
    ]


# One node per tuple: (tree, node, mode, feature, threshold, true node, false node, missing goes true)
Node = tuple[int, int, str, int, float, int, int, int]


def tree_classifier(
    nodes: Sequence[Node],
    leaves: Sequence[tuple[int, int, int, float]],  # (tree, node, class, weight)
    *,
    width: int,
    post_transform: str,
    base_values: Sequence[float] = (),
) -> onnx.ModelProto:
    attributes: dict[str, Any] = {
        "nodes_treeids": [n[0] for n in nodes],
        "nodes_nodeids": [n[1] for n in nodes],
        "nodes_modes": [n[2] for n in nodes],
        "nodes_featureids": [n[3] for n in nodes],
        "nodes_values": [n[4] for n in nodes],
        "nodes_truenodeids": [n[5] for n in nodes],
        "nodes_falsenodeids": [n[6] for n in nodes],
        "nodes_missing_value_tracks_true": [n[7] for n in nodes],
        "class_treeids": [leaf[0] for leaf in leaves],
        "class_nodeids": [leaf[1] for leaf in leaves],
        "class_ids": [leaf[2] for leaf in leaves],
        "class_weights": [leaf[3] for leaf in leaves],
        "classlabels_int64s": [0, 1],
        "post_transform": post_transform,
    }
    if base_values:
        attributes["base_values"] = list(base_values)
    node = helper.make_node(
        "TreeEnsembleClassifier", ["input"], ["label", "probabilities"], domain="ai.onnx.ml", **attributes
    )
    return one_node_model(node, width, classifier_outputs())


def tree_regressor(
    nodes: Sequence[Node],
    leaves: Sequence[tuple[int, int, float]],  # (tree, node, weight)
    *,
    width: int,
    aggregate: str,
    base_value: float,
) -> onnx.ModelProto:
    node = helper.make_node(
        "TreeEnsembleRegressor",
        ["input"],
        ["variable"],
        domain="ai.onnx.ml",
        nodes_treeids=[n[0] for n in nodes],
        nodes_nodeids=[n[1] for n in nodes],
        nodes_modes=[n[2] for n in nodes],
        nodes_featureids=[n[3] for n in nodes],
        nodes_values=[n[4] for n in nodes],
        nodes_truenodeids=[n[5] for n in nodes],
        nodes_falsenodeids=[n[6] for n in nodes],
        nodes_missing_value_tracks_true=[n[7] for n in nodes],
        target_treeids=[leaf[0] for leaf in leaves],
        target_nodeids=[leaf[1] for leaf in leaves],
        target_ids=[0 for _ in leaves],
        target_weights=[leaf[2] for leaf in leaves],
        n_targets=1,
        aggregate_function=aggregate,
        base_values=[base_value],
    )
    output = helper.make_tensor_value_info("variable", onnx.TensorProto.FLOAT, [None, 1])
    return one_node_model(node, width, [output])


def linear_classifier(
    coefficients: Sequence[float], intercepts: Sequence[float], *, width: int, post_transform: str
) -> onnx.ModelProto:
    node = helper.make_node(
        "LinearClassifier",
        ["input"],
        ["label", "probabilities"],
        domain="ai.onnx.ml",
        coefficients=list(coefficients),
        intercepts=list(intercepts),
        classlabels_ints=[0, 1],
        post_transform=post_transform,
    )
    return one_node_model(node, width, classifier_outputs())


# An XGBoost-style ensemble over 3 inputs: strict (<) and other comparisons, missing values sent left on
# some nodes and right on others, thresholds that test rows hit exactly.
STRICT_SPLITS: list[Node] = [
    (0, 0, "BRANCH_LT", 0, 0.5, 1, 2, 1),
    (0, 1, "BRANCH_GTE", 1, 2.0, 3, 4, 0),
    (0, 2, "LEAF", 0, 0.0, 0, 0, 0),
    (0, 3, "LEAF", 0, 0.0, 0, 0, 0),
    (0, 4, "LEAF", 0, 0.0, 0, 0, 0),
    (1, 0, "BRANCH_EQ", 2, 1.0, 1, 2, 0),
    (1, 1, "LEAF", 0, 0.0, 0, 0, 0),
    (1, 2, "BRANCH_GT", 0, -1.0, 3, 4, 1),
    (1, 3, "LEAF", 0, 0.0, 0, 0, 0),
    (1, 4, "LEAF", 0, 0.0, 0, 0, 0),
    (2, 0, "BRANCH_NEQ", 1, 0.0, 1, 2, 0),
    (2, 1, "BRANCH_LEQ", 0, 1.0, 3, 4, 0),
    (2, 2, "LEAF", 0, 0.0, 0, 0, 0),
    (2, 3, "LEAF", 0, 0.0, 0, 0, 0),
    (2, 4, "LEAF", 0, 0.0, 0, 0, 0),
]
STRICT_LEAVES: list[tuple[int, int, float]] = [
    (0, 2, 0.1),
    (0, 3, 0.4),
    (0, 4, -0.3),
    (1, 1, 0.7),
    (1, 3, -0.5),
    (1, 4, 0.2),
    (2, 2, -0.2),
    (2, 3, 0.3),
    (2, 4, -0.6),
]


def grid_rows(rng: np.random.Generator, count: int, width: int, missing: float) -> np.ndarray:
    """Rows drawn from values that sit on and around the hand-written thresholds, some of them NaN."""
    values = np.array([-1.5, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0])
    rows = rng.choice(values, size=(count, width))
    rows[rng.random(rows.shape) < missing] = np.nan
    return rows
