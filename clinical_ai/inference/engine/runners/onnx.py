"""A hospital's own tabular model as an ONNX graph (scikit-learn, XGBoost or LightGBM exported), run with
onnxruntime. No Django.

The graph is checked against its manifest when it loads, so that a model which cannot answer is refused at
start-up with a sentence an engineer can act on, never at the first patient: one input, a float matrix of
``n_features`` columns, a free batch dimension, and one output that holds the probability. A dry run on a
zero batch then proves the graph executes and tells how its probability output is laid out.

The probability output is found the way the converters write it: skl2onnx and onnxmltools classifiers give
``probabilities`` (n, classes), or, with ZipMap left on, ``output_probability``, a sequence of
{class: probability} maps; a regressor or a one-column output is taken as the probability itself. A manifest
may name the output (``output``) when the graph has several candidates.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError

from clinical_ai.inference.engine.explain.linear import LinearExplainer, linear_from_onnx
from clinical_ai.inference.engine.explain.links import logit
from clinical_ai.inference.engine.explain.shapley import ShapleyExplainer
from clinical_ai.inference.engine.explain.trees import TreeShapExplainer, tree_ensemble_from_onnx
from clinical_ai.inference.engine.runners.base import FloatArray, RunnerError, TabularExplainer, feature_rows

# Names the converters give the probability output, tried in this order when the graph has several candidates.
_PROBABILITY_NAMES = ("probabilities", "output_probability", "probability", "probabilities_output")
_FLOAT_TYPES: dict[int, type[np.floating[Any]]] = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
}


@dataclass(frozen=True)
class _OutputLayout:
    """Where the probability sits in the chosen output: a column of a tensor, the tensor itself, or one
    class's entry in each map of a ZipMap sequence."""

    kind: Literal["column", "value", "map"]
    column: int = 0
    key: int | str = 0


def session_providers(device: str) -> list[str]:
    """CUDA first when the device asks for a GPU and this onnxruntime build has it, the CPU always last (so
    an operator CUDA lacks still runs)."""
    available = ort.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _intra_op_threads() -> int:
    """One thread per session unless the worker's environment says otherwise: workers scale by processes
    (``celery --concurrency``), and threads inside each would fight over the same cores."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1


def _type_text(value_type: onnx.TypeProto) -> str:
    """The ONNX type in the words onnxruntime prints (``tensor(float)``, ``seq(map(int64,tensor(float)))``)."""
    which = value_type.WhichOneof("value")
    if which == "tensor_type":
        name = onnx.TensorProto.DataType.Name(value_type.tensor_type.elem_type).lower()
        return f"tensor({name})"
    if which == "sequence_type":
        return f"seq({_type_text(value_type.sequence_type.elem_type)})"
    if which == "map_type":
        key = onnx.TensorProto.DataType.Name(value_type.map_type.key_type).lower()
        return f"map({key},{_type_text(value_type.map_type.value_type)})"
    return which or "unknown"


def _is_probability_candidate(value_type: onnx.TypeProto) -> bool:
    """A float tensor, or a sequence of maps to float (ZipMap): the two shapes a probability comes in."""
    which = value_type.WhichOneof("value")
    if which == "tensor_type":
        return int(value_type.tensor_type.elem_type) in _FLOAT_TYPES
    if which == "sequence_type":
        element = value_type.sequence_type.elem_type
        return bool(element.WhichOneof("value") == "map_type")
    return False


def _zipmap_labels(model: onnx.ModelProto, output_name: str) -> list[int | str] | None:
    """The class labels of the ZipMap node that writes ``output_name``, in column order (None when no
    ZipMap writes it): ``positive_index`` counts along them as it does along a probability matrix."""
    for node in model.graph.node:
        if node.op_type == "ZipMap" and output_name in node.output:
            for attribute in node.attribute:
                if attribute.name == "classlabels_int64s":
                    return [int(label) for label in attribute.ints]
                if attribute.name == "classlabels_strings":
                    return [label.decode("utf-8") for label in attribute.strings]
    return None


class OnnxRunner:
    """One ONNX graph, checked against its manifest at load, answering (n,) probabilities for feature rows.

    The ModelProto is kept so that the explainer can read a tree ensemble's or a linear model's structure
    for exact explanations."""

    def __init__(
        self,
        path: Path,
        *,
        n_features: int,
        output: str | None = None,
        positive_index: int = 1,
        device: str = "cpu",
    ) -> None:
        self.path = path
        self.n_features = n_features
        self.positive_index = positive_index
        self.device = device
        try:
            self.model = onnx.load(str(path))
        except (OSError, DecodeError) as error:  # a missing file, or not a protobuf
            raise RunnerError(f"{path.name}: cannot read the ONNX graph ({error})") from error
        self._input_name, self._input_dtype, self._input_width = self._check_input()
        self.output_name = self._choose_output(output)
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = _intra_op_threads()
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(
                self.model.SerializeToString(), sess_options=options, providers=session_providers(device)
            )
        except Exception as error:  # onnxruntime raises its own untyped classes for an invalid graph
            raise RunnerError(f"{path.name}: onnxruntime cannot load the graph ({error})") from error
        self._layout = self._dry_run()

    @property
    def input_width(self) -> int | None:
        """The feature count the graph declares; None when its second dimension is dynamic (then only the
        dry run at load and each prediction check it)."""
        return self._input_width

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really got (CUDA, when asked for, may be absent)."""
        return list(self.session.get_providers())

    def _fail(self, what: str) -> RunnerError:
        return RunnerError(f"{self.path.name}: {what}")

    def _check_input(self) -> tuple[str, type[np.floating[Any]], int | None]:
        graph = self.model.graph
        # Graphs written for IR version < 4 list their weights among the inputs as well.
        weights = {initializer.name for initializer in graph.initializer}
        inputs = [value for value in graph.input if value.name not in weights]
        declared = f"the manifest declares one feature row of {self.n_features} features"
        if len(inputs) != 1:
            names = ", ".join(value.name for value in inputs) or "nothing"
            raise self._fail(f"the ONNX graph takes inputs {names}; {declared}")
        value = inputs[0]
        value_type = value.type
        if (
            value_type.WhichOneof("value") != "tensor_type"
            or value_type.tensor_type.elem_type not in _FLOAT_TYPES
        ):
            raise self._fail(
                f"the ONNX graph's input {value.name} is {_type_text(value_type)}, not a float tensor; {declared}"
            )
        dims = list(value_type.tensor_type.shape.dim)
        if len(dims) != 2:
            raise self._fail(
                f"the ONNX graph's input {value.name} has {len(dims)} dimensions, not 2 (rows, features); "
                f"{declared}"
            )
        batch, width = dims
        if batch.HasField("dim_value") and batch.dim_value > 0:
            raise self._fail(
                f"the graph takes a fixed batch of {batch.dim_value}; export it with a dynamic first "
                "dimension (None) so it can score one patient or many"
            )
        input_width: int | None = None
        if width.HasField("dim_value") and width.dim_value > 0:
            input_width = int(width.dim_value)
            if input_width != self.n_features:
                raise self._fail(f"the ONNX graph takes rows of {input_width} features; {declared}")
        dtype = _FLOAT_TYPES[value_type.tensor_type.elem_type]
        return value.name, dtype, input_width

    def _choose_output(self, named: str | None) -> str:
        outputs = list(self.model.graph.output)
        listing = ", ".join(f"{value.name} ({_type_text(value.type)})" for value in outputs)
        if named is not None:
            match = [value for value in outputs if value.name == named]
            if not match:
                raise self._fail(
                    f"the manifest names the output {named!r}, but the graph's outputs are {listing}"
                )
            if not _is_probability_candidate(match[0].type):
                raise self._fail(
                    f"the output {named!r} is {_type_text(match[0].type)}: a probability output is a float tensor "
                    "or a sequence of class -> probability maps"
                )
            return named
        candidates = [str(value.name) for value in outputs if _is_probability_candidate(value.type)]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise self._fail(
                f"the ONNX graph has no output that can hold a probability (a float tensor or a sequence of "
                f"class -> probability maps); its outputs are {listing}"
            )
        for name in _PROBABILITY_NAMES:
            if name in candidates:
                return name
        raise self._fail(
            f"the ONNX graph has several outputs that could be the probability ({', '.join(candidates)}); "
            'name one with "output" in the manifest'
        )

    def _run(self, rows: np.ndarray[Any, Any]) -> Any:
        return self.session.run([self.output_name], {self._input_name: rows})[0]

    def _dry_run(self) -> _OutputLayout:
        """Score a zero batch of two rows once: the graph runs, and its answer says where the probability is
        (a column of how many, or which map key)."""
        zeros = np.zeros((2, self.n_features), dtype=self._input_dtype)
        try:
            answer = self._run(zeros)
        except Exception as error:  # onnxruntime's own exception classes
            raise self._fail(
                f"the ONNX graph fails on a batch of 2 rows of {self.n_features} features ({error})"
            ) from error
        if isinstance(answer, list):
            if len(answer) != 2 or not all(isinstance(entry, dict) for entry in answer):
                raise self._fail(f"the output {self.output_name} is not one class -> probability map per row")
            labels = _zipmap_labels(self.model, self.output_name) or list(answer[0].keys())
            if not 0 <= self.positive_index < len(labels):
                raise self._fail(
                    f"positive_index {self.positive_index} is out of range: the output {self.output_name} "
                    f"has the classes {', '.join(str(label) for label in labels)}"
                )
            return _OutputLayout("map", key=labels[self.positive_index])
        array = np.asarray(answer)
        if array.ndim == 1 and array.shape[0] == 2:
            return _OutputLayout("value")
        if array.ndim == 2 and array.shape[0] == 2:
            if array.shape[1] == 1:
                return _OutputLayout("value")
            if not 0 <= self.positive_index < array.shape[1]:
                raise self._fail(
                    f"positive_index {self.positive_index} is out of range: the output {self.output_name} "
                    f"has {array.shape[1]} columns"
                )
            return _OutputLayout("column", column=self.positive_index)
        raise self._fail(
            f"the output {self.output_name} has the shape {tuple(array.shape)} for a batch of 2 rows; a "
            "probability output is (rows,), (rows, 1) or (rows, classes)"
        )

    def predict(self, rows: FloatArray) -> FloatArray:
        """(n, n_features) -> (n,) float64 probabilities. NaN or infinite outputs are returned as they are."""
        matrix = feature_rows(rows, width=self.n_features, dtype=self._input_dtype, source=self.path.name)
        if matrix.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        answer = self._run(matrix)
        layout = self._layout
        if layout.kind == "map":
            return np.array([float(entry[layout.key]) for entry in answer], dtype=np.float64)
        array = np.asarray(answer, dtype=np.float64)
        if layout.kind == "column":
            return np.ascontiguousarray(array[:, layout.column])
        return array.reshape(matrix.shape[0])

    def log_odds(self, rows: FloatArray) -> FloatArray:
        """logit(predict(rows)), the probability clipped just inside (0, 1): the space the model-agnostic
        explanation adds up in, as the tree and linear ones do."""
        return logit(self.predict(rows))

    def explainer(self, background: FloatArray, weights: FloatArray | None = None) -> TabularExplainer:
        """Exact TreeSHAP when the graph is a tree ensemble, exact contributions when it is a linear model,
        Shapley values of the log-odds otherwise.

        The exact explainers read the graph's parameters and explain class 1 of a binary model; they are
        used only when the runner scores that same output (``positive_index`` 1, or a one-value output) and
        their own reproduction of the model agrees with onnxruntime on the reference rows, so that an
        explanation always adds up to the score the clinician sees."""
        background = np.asarray(background, dtype=np.float64)
        if self._layout.kind == "value" or self.positive_index == 1:
            ensemble = tree_ensemble_from_onnx(self.model, n_features=self.n_features)
            if ensemble is not None and self._reproduces(ensemble.predict, background):
                return TreeShapExplainer(ensemble, background, weights)
            linear = linear_from_onnx(self.model, n_features=self.n_features)
            if linear is not None and self._reproduces(linear.predict, background):
                return LinearExplainer(linear, background, weights)
        return ShapleyExplainer(self.log_odds, background, weights)

    def _reproduces(self, predict: Callable[[FloatArray], FloatArray], background: FloatArray) -> bool:
        """Whether an explainer's own model gives onnxruntime's outputs on (up to 64 of) the reference rows."""
        sample = background[:64]
        if sample.shape[0] == 0:
            return False
        expected = self.predict(sample)
        return bool(np.allclose(predict(sample), expected, rtol=1e-4, atol=1e-5, equal_nan=True))
