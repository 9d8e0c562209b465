"""Recognise the small ONNX graphs that scikit-learn converters write around one scoring operator. No Django.

A tree ensemble or linear model exported by skl2onnx (or onnxmltools) is one ``ai.onnx.ml`` scoring node,
sometimes fed through Cast/Identity (and a Scaler for a standardised pipeline) and followed by
ZipMap/Cast/Identity. Only such a graph can be explained from its parameters; anything else (another
operator anywhere) is left to the model-agnostic explainer, so this module answers ``None`` rather than guess.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

ML_DOMAIN = "ai.onnx.ml"
_PASS_THROUGH = frozenset({"Cast", "Identity"})
_AFTER_SCORING = frozenset({"Cast", "Identity", "ZipMap"})
_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE})


@dataclass(frozen=True)
class ScoringGraph:
    """The scoring node, the ``ai.onnx.ml`` nodes between it and the graph input (in order), the element
    type of the tensor it reads (FLOAT or DOUBLE: onnxruntime compares float32 inputs in float32) and the
    input width when the graph declares it."""

    node: onnx.NodeProto
    prefix: tuple[onnx.NodeProto, ...]
    input_elem_type: int
    width: int | None


def node_attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """Attribute values of ``node``: strings decoded, tensors as numpy arrays, lists as lists."""
    values: dict[str, Any] = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, list):
            value = [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
        values[attribute.name] = value
    return values


def float_attribute(attributes: dict[str, Any], name: str) -> np.ndarray[Any, np.dtype[np.float64]] | None:
    """``name`` or ``name_as_tensor`` (the double-precision spelling) as a float64 vector, None if absent."""
    for key in (f"{name}_as_tensor", name):
        if key in attributes:
            return np.asarray(attributes[key], dtype=np.float64).reshape(-1)
    return None


def scoring_graph(
    model: onnx.ModelProto, scoring_ops: Collection[str], prefix_ops: Collection[str] = ()
) -> ScoringGraph | None:
    """The single scoring node of ``model`` whose op is one of ``scoring_ops`` (domain ai.onnx.ml), when
    every other node is a pass-through, an allowed ``prefix_ops`` node (ai.onnx.ml) on the path from the
    one graph input, or a ZipMap/Cast/Identity downstream of it. None for any other graph."""
    graph = model.graph
    initialised = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initialised]
    if len(inputs) != 1 or not inputs[0].type.HasField("tensor_type"):
        return None
    graph_input = inputs[0]
    scoring = [n for n in graph.node if n.domain == ML_DOMAIN and n.op_type in scoring_ops]
    if len(scoring) != 1 or not scoring[0].input:
        return None
    node = scoring[0]

    producers = {output: n for n in graph.node for output in n.output}
    chain: list[onnx.NodeProto] = []
    name = node.input[0]
    while name != graph_input.name:
        producer = producers.get(name)
        if producer is None or len(chain) > len(graph.node) or not _is_prefix(producer, prefix_ops):
            return None
        chain.insert(0, producer)
        name = producer.input[0]

    elem_type = graph_input.type.tensor_type.elem_type
    prefix: list[onnx.NodeProto] = []
    for step in chain:
        if step.op_type == "Cast":
            elem_type = int(node_attributes(step).get("to", elem_type))
        elif step.op_type != "Identity":
            prefix.append(step)
    if elem_type not in _FLOAT_TYPES:
        return None

    in_chain = {id(step) for step in chain}
    available = set(node.output)
    for other in graph.node:
        if other is node or id(other) in in_chain:
            continue
        if other.op_type not in _AFTER_SCORING or not set(other.input) <= available:
            return None
        available.update(other.output)

    dims = graph_input.type.tensor_type.shape.dim
    width = int(dims[1].dim_value) if len(dims) == 2 and dims[1].dim_value > 0 else None
    return ScoringGraph(node=node, prefix=tuple(prefix), input_elem_type=elem_type, width=width)


def _is_prefix(node: onnx.NodeProto, prefix_ops: Collection[str]) -> bool:
    if len(node.input) != 1:
        return False
    if node.domain in ("", "ai.onnx") and node.op_type in _PASS_THROUGH:
        return True
    return node.domain == ML_DOMAIN and node.op_type in prefix_ops
