"""Tree ensembles read from ONNX, and their exact interventional Shapley values (TreeSHAP). No Django.

A gradient-boosted or random-forest model exported to ONNX keeps its trees as attributes of one
``TreeEnsembleClassifier``/``TreeEnsembleRegressor`` node. Reading them back gives the model's additive
score (the margin: log-odds for a logistic ensemble) tree by tree, and for a sum of trees the Shapley values
of each input can be computed exactly, leaf by leaf, instead of being estimated from thousands of calls.

The game explained for a patient x and a reference patient r is v(S) = f(x on S, r elsewhere). For one
leaf, each input on its path is satisfied by x only (set A: it must come from x), by r only (set B: it must
come from r), by both (free) or by neither (the leaf cannot be reached). The leaf's value w therefore
depends only on A and B, which gives each input of A w (|A|-1)! |B|! / (|A|+|B|)! and each input of B
-w |A|! (|B|-1)! / (|A|+|B|)!. Summed over leaves and trees and averaged over the reference patients,
these are the exact Shapley values against that reference set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from clinical_ai.inference.engine.explain.links import FloatArray, Link, apply_link
from clinical_ai.inference.engine.explain.onnx_graph import (
    float_attribute,
    node_attributes,
    scoring_graph,
)
from clinical_ai.inference.engine.explain.shapley import normalised_weights
from clinical_ai.inference.engine.explain.types import Explanation, OutputSpace

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Deeper paths than this are not a model a hospital trains; a deeper (or cyclic) graph is refused.
MAX_TREE_DEPTH = 64
# margin() works on (rows, leaves, depth) booleans; this many cells per chunk keeps that near 16 MB.
_CELLS_PER_CHUNK = 1 << 24


class NodeMode(IntEnum):
    """How a node sends a row: ``value <op> threshold`` true -> the true child (ONNX's nodes_modes)."""

    LEAF = 0
    BRANCH_LEQ = 1
    BRANCH_LT = 2
    BRANCH_GTE = 3
    BRANCH_GT = 4
    BRANCH_EQ = 5
    BRANCH_NEQ = 6


_COMPARISONS: dict[NodeMode, Callable[[FloatArray, FloatArray], BoolArray]] = {
    NodeMode.BRANCH_LEQ: np.less_equal,
    NodeMode.BRANCH_LT: np.less,
    NodeMode.BRANCH_GTE: np.greater_equal,
    NodeMode.BRANCH_GT: np.greater,
    NodeMode.BRANCH_EQ: np.equal,
    NodeMode.BRANCH_NEQ: np.not_equal,
}


@dataclass(frozen=True)
class Tree:
    """One tree's nodes; children are indexes into these arrays (-1 for a leaf). ``leaf_value`` is the
    leaf's share of the margin (0 on branches). A missing value (NaN) goes to the true child where
    ``missing_tracks_true``; elsewhere it follows the comparison, which is false for NaN except NEQ."""

    feature: IntArray
    threshold: FloatArray
    mode: IntArray
    true_child: IntArray
    false_child: IntArray
    missing_tracks_true: BoolArray
    leaf_value: FloatArray
    root: int = 0


@dataclass(frozen=True)
class _Paths:
    """All trees flattened into one array of branch nodes and one of root-to-leaf paths (padded to the
    deepest), with each path's inputs gathered into slots (one slot per distinct input on the path)."""

    feature: IntArray  # (N,) per branch node
    threshold: FloatArray
    mode: IntArray
    missing_true: BoolArray
    leaf_value: FloatArray  # (L,)
    path_node: IntArray  # (L, D) branch node index; 0 where padded
    path_true: BoolArray  # (L, D) the path takes the true child
    path_valid: BoolArray  # (L, D)
    slot_member: FloatArray  # (L, D, S) 1 where path step d tests slot s's input
    slot_feature: IntArray  # (L, S) the input of the slot; n_features where unused
    slot_valid: BoolArray  # (L, S)


@dataclass(frozen=True)
class TreeEnsemble:
    """The sum of ``trees`` plus ``base_value`` is the margin; ``link`` turns it into what the ONNX graph
    outputs for the positive class (logistic: a probability from log-odds; identity: the margin itself, as
    for a random forest's averaged leaf probabilities). ``float32_input``: the graph compares float32
    inputs, so rows are rounded to float32 first, as onnxruntime does."""

    trees: tuple[Tree, ...]
    base_value: float
    link: Link
    post_transform: str
    n_features: int
    float32_input: bool = True

    @property
    def output_space(self) -> OutputSpace:
        return "log-odds" if self.link == "logistic" else "probability"

    def margin(self, rows: FloatArray) -> FloatArray:
        """(n, features) -> (n,) additive scores."""
        rows = self._rows(rows)
        paths = self._paths
        out = np.empty(rows.shape[0], dtype=np.float64)
        chunk = max(1, _CELLS_PER_CHUNK // paths.path_node.size)
        for start in range(0, rows.shape[0], chunk):
            conditions = self._path_conditions(rows[start : start + chunk])
            reached = conditions.all(axis=-1)
            out[start : start + chunk] = reached.astype(np.float64) @ paths.leaf_value
        return out + self.base_value

    def predict(self, rows: FloatArray) -> FloatArray:
        """(n, features) -> (n,) the graph's output for the positive class (probability for a classifier)."""
        return apply_link(self.link, self.margin(rows))

    def _rows(self, rows: FloatArray) -> FloatArray:
        array = np.asarray(rows, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {array.shape}")
        return array.astype(np.float32).astype(np.float64) if self.float32_input else array

    def _decisions(self, rows: FloatArray) -> BoolArray:
        """(n, N): whether each row goes to the true child at each branch node."""
        paths = self._paths
        values = rows[:, paths.feature]
        goes_true = np.zeros(values.shape, dtype=np.bool_)
        for mode, compare in _COMPARISONS.items():
            columns = np.flatnonzero(paths.mode == mode)
            if columns.size:
                goes_true[:, columns] = compare(values[:, columns], paths.threshold[columns])
        goes_true |= np.isnan(values) & paths.missing_true
        return goes_true

    def _path_conditions(self, rows: FloatArray) -> BoolArray:
        """(n, L, D): whether each row satisfies each step of each leaf's path (padding counts as true)."""
        paths = self._paths
        decisions = self._decisions(rows)
        satisfied: BoolArray = (decisions[:, paths.path_node] == paths.path_true) | ~paths.path_valid
        return satisfied

    @cached_property
    def _paths(self) -> _Paths:
        return _compile_paths(self.trees, self.n_features)


def _compile_paths(trees: tuple[Tree, ...], n_features: int) -> _Paths:
    features: list[IntArray] = []
    thresholds: list[FloatArray] = []
    modes: list[IntArray] = []
    missing: list[BoolArray] = []
    leaf_paths: list[list[tuple[int, bool]]] = []
    leaf_values: list[float] = []
    offset = 0
    for tree in trees:
        features.append(tree.feature)
        thresholds.append(tree.threshold)
        modes.append(tree.mode)
        missing.append(tree.missing_tracks_true)
        stack: list[tuple[int, list[tuple[int, bool]]]] = [(tree.root, [])]
        while stack:
            index, path = stack.pop()
            if tree.mode[index] == NodeMode.LEAF:
                leaf_paths.append(path)
                leaf_values.append(float(tree.leaf_value[index]))
                continue
            stack.append((int(tree.true_child[index]), [*path, (offset + index, True)]))
            stack.append((int(tree.false_child[index]), [*path, (offset + index, False)]))
        offset += tree.feature.shape[0]

    flat_feature = np.concatenate(features) if features else np.zeros(0, dtype=np.int64)
    depth = max([1, *(len(path) for path in leaf_paths)])
    n_leaves = len(leaf_paths)
    path_node = np.zeros((n_leaves, depth), dtype=np.int64)
    path_true = np.zeros((n_leaves, depth), dtype=np.bool_)
    path_valid = np.zeros((n_leaves, depth), dtype=np.bool_)
    # a path may test one input several times: slots are its distinct inputs, at most min(depth, inputs)
    slot_count = max([1, *(len({int(flat_feature[node]) for node, _ in path}) for path in leaf_paths)])
    slot_member = np.zeros((n_leaves, depth, slot_count), dtype=np.float64)
    slot_feature = np.full((n_leaves, slot_count), n_features, dtype=np.int64)
    for leaf, path in enumerate(leaf_paths):
        slots: dict[int, int] = {}
        for step, (node, goes_true) in enumerate(path):
            path_node[leaf, step] = node
            path_true[leaf, step] = goes_true
            path_valid[leaf, step] = True
            slot = slots.setdefault(int(flat_feature[node]), len(slots))
            slot_member[leaf, step, slot] = 1.0
            slot_feature[leaf, slot] = flat_feature[node]
    return _Paths(
        feature=flat_feature.astype(np.int64),
        threshold=np.concatenate(thresholds) if thresholds else np.zeros(0),
        mode=np.concatenate(modes) if modes else np.zeros(0, dtype=np.int64),
        missing_true=np.concatenate(missing) if missing else np.zeros(0, dtype=np.bool_),
        leaf_value=np.asarray(leaf_values, dtype=np.float64),
        path_node=path_node,
        path_true=path_true,
        path_valid=path_valid,
        slot_member=slot_member,
        slot_feature=slot_feature,
        slot_valid=slot_feature < n_features,
    )


class TreeShapExplainer:
    """Exact interventional TreeSHAP of ``ensemble``'s margin against ``background`` reference rows
    (weighted by ``weights``, equal when None). The background side is computed once, here; each patient
    then costs a few array operations over leaves x path inputs x reference rows."""

    def __init__(
        self, ensemble: TreeEnsemble, background: FloatArray, weights: FloatArray | None = None
    ) -> None:
        background = ensemble._rows(background)
        if background.shape[0] == 0:
            raise ValueError("the reference set is empty")
        self.ensemble = ensemble
        self.weights = normalised_weights(weights, background.shape[0])
        self.references = background.shape[0]
        paths = ensemble._paths
        # (L, D, k) -> (L, S, k): which path inputs each reference row satisfies.
        conditions = np.moveaxis(ensemble._path_conditions(background), 0, -1)
        failed = np.einsum("lds,ldk->lsk", paths.slot_member, (~conditions).astype(np.float64))
        # 1.0 where reference row k satisfies every test of slot s on leaf l's path (0 for unused slots)
        self._background_satisfies = ((failed < 0.5) & paths.slot_valid[:, :, None]).astype(np.float64)
        self.base_value = float(self.weights @ ensemble.margin(background))
        self._coefficient_x, self._coefficient_r = _shapley_coefficients(paths.slot_valid.shape[1])

    def explain(self, rows: FloatArray) -> list[Explanation]:
        rows = np.asarray(rows, dtype=np.float64)
        margins = self.ensemble.margin(rows)
        return [
            Explanation(
                method="tree_shap_interventional",
                output_space=self.ensemble.output_space,
                base_value=self.base_value,
                output_value=float(margin),
                contributions=tuple(float(v) for v in self.shap_values(row)),
                references=self.references,
            )
            for row, margin in zip(rows, margins, strict=True)
        ]

    def shap_values(self, row: FloatArray) -> FloatArray:
        """(features,) Shapley values of one row's margin; they sum to margin(row) - base_value.

        Per leaf l and reference k: a slot the patient satisfies is in A unless the reference satisfies it
        too (free); a slot the patient fails is in B if the reference satisfies it, else the leaf is out of
        reach. Sums over slots are batched matrix products with the reference table (L, S, k)."""
        ensemble = self.ensemble
        paths = ensemble._paths
        conditions = ensemble._path_conditions(ensemble._rows(np.asarray(row, dtype=np.float64)[None, :]))[0]
        failed = np.einsum("lds,ld->ls", paths.slot_member, (~conditions).astype(np.float64))
        x_satisfies = (failed < 0.5) & paths.slot_valid  # (L, S)
        x_fails = ~x_satisfies & paths.slot_valid
        reference = self._background_satisfies  # (L, S, k)
        x_side = x_satisfies.astype(np.float64)[:, None, :]  # (L, 1, S)
        fail_side = x_fails.astype(np.float64)[:, None, :]
        # |A| = satisfied by x and not by r; |B| = failed by x, satisfied by r; counts are exact small integers
        count_x = np.rint(x_satisfies.sum(axis=1)[:, None] - np.matmul(x_side, reference)[:, 0, :]).astype(
            np.int64
        )
        count_r_float = np.matmul(fail_side, reference)[:, 0, :]  # (L, k)
        reachable = x_fails.sum(axis=1)[:, None] - count_r_float < 0.5  # no slot failed by both
        count_r = np.rint(count_r_float).astype(np.int64)
        scale = paths.leaf_value[:, None] * reachable * self.weights[None, :]  # (L, k)
        gain_x = scale * self._coefficient_x[count_x, count_r]
        gain_r = scale * self._coefficient_r[count_x, count_r]
        # per slot: an A slot gets gain_x from every reference that fails it, a B slot gain_r from every
        # reference that satisfies it
        from_x = gain_x.sum(axis=1)[:, None] - np.matmul(reference, gain_x[:, :, None])[:, :, 0]
        from_r = np.matmul(reference, gain_r[:, :, None])[:, :, 0]
        per_slot = np.where(x_satisfies, from_x, 0.0) + np.where(x_fails, from_r, 0.0)
        totals = np.bincount(
            paths.slot_feature.ravel(), weights=per_slot.ravel(), minlength=ensemble.n_features + 1
        )
        return np.asarray(totals[: ensemble.n_features], dtype=np.float64)


def _shapley_coefficients(depth: int) -> tuple[FloatArray, FloatArray]:
    """Tables indexed [|A|, |B|]: an A input's share (|A|-1)!|B|!/(|A|+|B|)! and minus a B input's share
    |A|!(|B|-1)!/(|A|+|B|)!; zero where the set is empty."""
    size = depth + 1
    for_x = np.zeros((size, size))
    for_r = np.zeros((size, size))
    for a in range(size):
        for b in range(size):
            if a + b > depth:
                continue
            total = math.factorial(a + b)
            if a:
                for_x[a, b] = math.factorial(a - 1) * math.factorial(b) / total
            if b:
                for_r[a, b] = -math.factorial(a) * math.factorial(b - 1) / total
    return for_x, for_r


# --- reading the ensemble from ONNX -------------------------------------------------------------------


def tree_ensemble_from_onnx(model: onnx.ModelProto, *, n_features: int | None = None) -> TreeEnsemble | None:
    """The binary classifier or single-target regressor tree ensemble in ``model``, or None when the graph
    holds anything this module cannot reproduce exactly (other operators, several classes, a post-transform
    whose binary output onnxruntime writes in a way that is not a function of one margin). The caller then
    falls back to model-agnostic Shapley values, which need only the model's predictions.

    ``n_features``: the row width the caller feeds (the manifest's feature count), needed when the graph
    leaves its input width open; a graph that declares another width, or splits on an input beyond it,
    gives None."""
    graph = scoring_graph(model, ("TreeEnsembleClassifier", "TreeEnsembleRegressor"))
    if graph is None:
        return None
    if n_features is not None and graph.width is not None and graph.width != n_features:
        return None
    width = graph.width if graph.width is not None else n_features
    attributes = node_attributes(graph.node)
    try:
        if graph.node.op_type == "TreeEnsembleClassifier":
            scoring = _classifier_scoring(attributes)
        else:
            scoring = _regressor_scoring(attributes)
        if scoring is None:
            return None
        leaf_weights, base_value, link, divide_by_trees = scoring
        trees = _read_trees(attributes, leaf_weights, width)
    except (KeyError, ValueError, IndexError):
        return None
    if trees is None:
        return None
    if divide_by_trees:
        trees = tuple(replace(tree, leaf_value=tree.leaf_value / len(trees)) for tree in trees)
    if width is None:
        width = max(int(tree.feature.max(initial=0)) for tree in trees) + 1
    return TreeEnsemble(
        trees=trees,
        base_value=base_value,
        link=link,
        post_transform=str(attributes.get("post_transform", "NONE")),
        n_features=width,
        float32_input=graph.input_elem_type == onnx.TensorProto.FLOAT,
    )


# (tree id, node id) -> the leaf's share of the margin
_LeafWeights = dict[tuple[int, int], float]


def _classifier_scoring(attributes: dict[str, Any]) -> tuple[_LeafWeights, float, Link, bool] | None:
    """Leaf weights of the positive class's margin, for the binary layouts whose onnxruntime output is a
    function of one margin:
    - one score column (skl2onnx gradient boosting and random forests, onnxmltools XGBoost/LightGBM): the
      score is the positive class's; LOGISTIC with mixed-sign weights gives sigmoid(score), NONE with
      non-negative weights gives the score itself (averaged leaf probabilities);
    - two columns with a weight for both classes on every leaf and no base values: NONE and LOGISTIC
      use column 1 (identity / sigmoid), SOFTMAX gives sigmoid(column 1 - column 0)."""
    labels = attributes.get("classlabels_int64s") or attributes.get("classlabels_strings") or []
    if len(labels) != 2:
        return None
    class_ids = [int(v) for v in attributes["class_ids"]]
    weights = float_attribute(attributes, "class_weights")
    if weights is None or len(weights) != len(class_ids):
        return None
    tree_ids = [int(v) for v in attributes["class_treeids"]]
    node_ids = [int(v) for v in attributes["class_nodeids"]]
    base = float_attribute(attributes, "base_values")
    base = np.zeros(0) if base is None else base
    transform = str(attributes.get("post_transform", "NONE"))

    per_class: dict[int, _LeafWeights] = {0: {}, 1: {}}
    for tree_id, node_id, class_id, weight in zip(tree_ids, node_ids, class_ids, weights, strict=True):
        if class_id not in per_class:
            return None
        key = (tree_id, node_id)
        per_class[class_id][key] = per_class[class_id].get(key, 0.0) + float(weight)

    if set(class_ids) == {0}:
        if len(base) > 1:
            return None
        all_positive = bool((weights >= 0).all())
        if transform == "LOGISTIC" and not all_positive:
            link: Link = "logistic"
        elif transform == "NONE" and all_positive:
            link = "identity"
        else:
            return None
        return per_class[0], float(base.sum()), link, False

    if set(class_ids) == {0, 1} and len(base) == 0 and per_class[0].keys() == per_class[1].keys():
        if transform in ("NONE", "LOGISTIC"):
            link = "identity" if transform == "NONE" else "logistic"
            return per_class[1], 0.0, link, False
        if transform == "SOFTMAX":
            difference = {key: per_class[1][key] - per_class[0][key] for key in per_class[1]}
            return difference, 0.0, "logistic", False
    return None


def _regressor_scoring(attributes: dict[str, Any]) -> tuple[_LeafWeights, float, Link, bool] | None:
    """A single-target regressor summing (or averaging) its trees, with no post-transform."""
    if int(attributes.get("n_targets", 1)) != 1 or str(attributes.get("post_transform", "NONE")) != "NONE":
        return None
    aggregate = str(attributes.get("aggregate_function", "SUM"))
    if aggregate not in ("SUM", "AVERAGE"):
        return None
    weights = float_attribute(attributes, "target_weights")
    target_ids = [int(v) for v in attributes["target_ids"]]
    if weights is None or len(weights) != len(target_ids) or any(target_ids):
        return None
    base = float_attribute(attributes, "base_values")
    base = np.zeros(0) if base is None else base
    if len(base) > 1:
        return None
    leaves: _LeafWeights = {}
    for tree_id, node_id, weight in zip(
        attributes["target_treeids"], attributes["target_nodeids"], weights, strict=True
    ):
        key = (int(tree_id), int(node_id))
        leaves[key] = leaves.get(key, 0.0) + float(weight)
    return leaves, float(base.sum()), "identity", aggregate == "AVERAGE"


def _read_trees(
    attributes: dict[str, Any], leaf_weights: _LeafWeights, width: int | None
) -> tuple[Tree, ...] | None:
    tree_ids = np.asarray(attributes["nodes_treeids"], dtype=np.int64)
    node_ids = np.asarray(attributes["nodes_nodeids"], dtype=np.int64)
    features = np.asarray(attributes["nodes_featureids"], dtype=np.int64)
    modes = [str(mode) for mode in attributes["nodes_modes"]]
    thresholds = float_attribute(attributes, "nodes_values")
    true_ids = np.asarray(attributes["nodes_truenodeids"], dtype=np.int64)
    false_ids = np.asarray(attributes["nodes_falsenodeids"], dtype=np.int64)
    missing = np.asarray(
        attributes.get("nodes_missing_value_tracks_true", [0] * len(tree_ids)), dtype=np.int64
    )
    sizes = {
        len(tree_ids),
        len(node_ids),
        len(features),
        len(modes),
        len(true_ids),
        len(false_ids),
        len(missing),
    }
    if thresholds is None or sizes != {len(thresholds)} or not len(tree_ids):
        return None
    if any(mode not in NodeMode.__members__ for mode in modes):
        return None
    mode_codes = np.asarray([NodeMode[mode] for mode in modes], dtype=np.int64)
    if (features[mode_codes != NodeMode.LEAF] < 0).any():
        return None
    if width is not None and (features[mode_codes != NodeMode.LEAF] >= width).any():
        return None

    trees: list[Tree] = []
    known_leaves: set[tuple[int, int]] = set()
    for tree_id in sorted(set(tree_ids.tolist())):
        members = np.flatnonzero(tree_ids == tree_id)
        local = {int(node_ids[i]): position for position, i in enumerate(members)}
        if len(local) != len(members):
            return None
        tree_modes = mode_codes[members]
        is_branch = tree_modes != NodeMode.LEAF
        true_child = np.full(len(members), -1, dtype=np.int64)
        false_child = np.full(len(members), -1, dtype=np.int64)
        for position, i in enumerate(members):
            if is_branch[position]:
                if int(true_ids[i]) not in local or int(false_ids[i]) not in local:
                    return None
                true_child[position] = local[int(true_ids[i])]
                false_child[position] = local[int(false_ids[i])]
        children = set(true_child[is_branch].tolist()) | set(false_child[is_branch].tolist())
        roots = [position for position in range(len(members)) if position not in children]
        if len(roots) != 1:
            return None
        leaf_value = np.zeros(len(members), dtype=np.float64)
        for node_id, position in local.items():
            if not is_branch[position]:
                leaf_value[position] = leaf_weights.get((tree_id, node_id), 0.0)
                known_leaves.add((tree_id, node_id))
        tree = Tree(
            feature=np.where(is_branch, features[members], 0),
            threshold=np.where(is_branch, thresholds[members], 0.0),
            mode=tree_modes,
            true_child=true_child,
            false_child=false_child,
            missing_tracks_true=missing[members] != 0,
            leaf_value=leaf_value,
            root=roots[0],
        )
        if _depth(tree) is None:
            return None
        trees.append(tree)
    # a weight on a branch node or on a node that does not exist: not a layout this module understands
    if not set(leaf_weights) <= known_leaves:
        return None
    return tuple(trees)


def _depth(tree: Tree) -> int | None:
    """The tree's depth, or None when it loops or is deeper than MAX_TREE_DEPTH."""
    deepest = 0
    stack = [(tree.root, 0)]
    visited = 0
    while stack:
        index, depth = stack.pop()
        visited += 1
        if depth > MAX_TREE_DEPTH or visited > 2 * tree.mode.shape[0]:
            return None
        deepest = max(deepest, depth)
        if tree.mode[index] != NodeMode.LEAF:
            stack.append((int(tree.true_child[index]), depth + 1))
            stack.append((int(tree.false_child[index]), depth + 1))
    return deepest
