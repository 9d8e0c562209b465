"""Small declarative models written the way a hospital would: a model file, reference rows and a manifest.

``write_onnx_sqrt_model`` hand-builds an ONNX graph with onnx.helper: probability = sigmoid(sqrt(heart rate
- 40) - 5) + 0 x age. It is not a tree or a linear model, so its explanations come from the model-agnostic
Shapley explainer, and it gives NaN for a heart rate under 40: the way one patient can fail alone.
``write_gbm_model`` trains a scikit-learn gradient-boosted classifier on synthetic rows and exports it with
skl2onnx: a tree ensemble, explained by TreeSHAP.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

HEART_RATE = "http://loinc.org|8867-4"

FEATURES: list[dict[str, Any]] = [
    {
        "name": "hr_mean_24h",
        "label": "mean heart rate, last 24 h",
        "resourceType": "Observation",
        "codes": [HEART_RATE],
        "window": "PT24H",
        "aggregate": "mean",
        "unit": "/min",
        "missing": "refuse",
    },
    {"name": "age", "label": "age", "source": "age", "missing": {"impute": 60}},
]

CARD: dict[str, Any] = {
    "clinical_summary": "A test model. It estimates a made-up risk from the heart rate; never for care.",
    "intended_use": "tests",
    "intended_users": "tests",
    "inputs": "heart rate, age",
    "development": "written by hand",
    "validation": {"summary": "none", "figures": []},
    "limitations": ["not a clinical model"],
    "explanation_method": "Shapley values against two reference rows; they describe the model, not causes.",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_write(
    folder: Path,
    *,
    model_id: str,
    kind: str = "onnx",
    model_file: str = "model.onnx",
    features: list[dict[str, Any]] | None = None,
    background: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    chosen = FEATURES if features is None else features
    rows = background or {
        "features": [f["name"] for f in chosen],
        "rows": [[80.0, 60.0], [100.0, 40.0]],
        "weights": [0.5, 0.5],
    }
    (folder / "background.json").write_text(json.dumps(rows), encoding="utf-8")
    manifest = {
        "id": model_id,
        "version": "1.0.0",
        "name": "Test heart-rate risk",
        "kind": kind,
        "default_enabled": True,
        "artifacts": [
            {"name": "model", "path": model_file, "sha256": _sha256(folder / model_file)},
            {"name": "background", "path": "background.json", "sha256": _sha256(folder / "background.json")},
        ],
        "inputs": [{"name": "heart_rate", "resourceType": "Observation", "codes": [HEART_RATE]}],
        "features": chosen,
        "explanation": {"background": "background"},
        "outputs": {"outcome": "a made-up outcome"},
        "thresholds": {"warning": 0.3, "critical": 0.9},
        "card": CARD,
        **(extra or {}),
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path


def sqrt_graph(*, width: int = 2, inputs: int = 1) -> onnx.ModelProto:
    """sigmoid(sqrt(x[:, 0] - 40) - 5) as (batch, 1); ``inputs`` 2 adds a second graph input (refused)."""
    nodes = [
        helper.make_node(
            "Constant", [], ["starts"], value=helper.make_tensor("s", TensorProto.INT64, [1], [0])
        ),
        helper.make_node(
            "Constant", [], ["ends"], value=helper.make_tensor("e", TensorProto.INT64, [1], [1])
        ),
        helper.make_node(
            "Constant", [], ["axes"], value=helper.make_tensor("a", TensorProto.INT64, [1], [1])
        ),
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["hr"]),
        helper.make_node(
            "Constant", [], ["forty"], value=helper.make_tensor("f", TensorProto.FLOAT, [], [40.0])
        ),
        helper.make_node(
            "Constant", [], ["five"], value=helper.make_tensor("v", TensorProto.FLOAT, [], [5.0])
        ),
        helper.make_node("Sub", ["hr", "forty"], ["shifted"]),
        helper.make_node("Sqrt", ["shifted"], ["root"]),
        helper.make_node("Sub", ["root", "five"], ["margin"]),
        helper.make_node("Sigmoid", ["margin"], ["probability"]),
    ]
    graph_inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])]
    if inputs == 2:
        graph_inputs.append(helper.make_tensor_value_info("other", TensorProto.FLOAT, ["batch", 1]))
    graph = helper.make_graph(
        nodes,
        "sqrt_risk",
        graph_inputs,
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_onnx_sqrt_model(folder: Path, *, model_id: str = "test-hr-risk", **graph: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(sqrt_graph(**graph), folder / "model.onnx")
    return manifest_write(folder, model_id=model_id)


def write_gbm_model(folder: Path, *, model_id: str = "test-hr-gbm") -> Path:
    """A gradient-boosted classifier on (heart rate, age) trained on synthetic rows, exported to ONNX."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import GradientBoostingClassifier

    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(7)
    rows = np.column_stack([generator.normal(85, 20, 600), generator.uniform(20, 90, 600)])
    labels = (rows[:, 0] + 0.3 * rows[:, 1] + generator.normal(0, 10, 600) > 115).astype(int)
    model = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0).fit(rows, labels)
    exported = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, 2]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
        options={id(model): {"zipmap": False}},
    )
    (folder / "model.onnx").write_bytes(exported.SerializeToString())
    return manifest_write(folder, model_id=model_id)
