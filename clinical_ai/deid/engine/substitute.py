"""``substitute``: replace a value, or a whole element with a JSON fragment, as the reference tool does.

Values an earlier rule already processed survive the substitution (with the elements that hold them), so
a configuration's earlier, more specific rules keep their effect.
"""

from __future__ import annotations

from typing import Any

from clinical_ai.deid.engine.config import Rule
from clinical_ai.deid.engine.methods import MethodContext, Operation, Outcome, ProcessingError
from clinical_ai.deid.engine.nodes import Node, add_json_child


def substitute(node: Node, rule: Rule, context: MethodContext) -> Outcome:
    replacement = _replacement_node(node, rule.replace_with)
    keep_nodes: set[Node] = set()
    _collect_keep_nodes(node, context.visited, keep_nodes)
    operations = _substitute_node(node, replacement, context.visited, keep_nodes)
    for descendant in [node, *node.all_descendants()]:
        context.visited.add(descendant)
    context.structure_changes += 1
    return Outcome(operations)


def _replacement_node(node: Node, replace_with: Any) -> Node:
    if node.primitive:
        if isinstance(replace_with, dict | list):
            raise ProcessingError(f"a primitive at {node.location()} cannot be replaced with a JSON object")
        return Node(
            name=node.name,
            json_key=node.json_key,
            fhir_type=node.fhir_type,
            parent=None,
            primitive=True,
            value=replace_with,
        )
    if replace_with is not None and not isinstance(replace_with, dict):
        raise ProcessingError(
            f"a {node.fhir_type or 'complex'} element at {node.location()} needs an object to replace it"
        )
    holder = Node(
        name=node.name, json_key=node.json_key, fhir_type=node.fhir_type, parent=None, schema=node.schema
    )
    content: dict[str, Any] = replace_with or {}
    for key, value in content.items():
        if key.startswith("_") and key[1:] in content:
            continue  # added with its value
        base = key[1:] if key.startswith("_") else key
        add_json_child(
            holder, base, None if key.startswith("_") else value, extension=content.get(f"_{base}")
        )
    return holder


def _collect_keep_nodes(node: Node, visited: set[Node], keep_nodes: set[Node]) -> bool:
    """Nodes that were processed before, and their ancestors, survive the substitution."""
    keep = False
    for child in node.children:
        keep = _collect_keep_nodes(child, visited, keep_nodes) or keep
    if keep or node in visited:
        keep_nodes.add(node)
        return True
    return False


def _substitute_node(
    node: Node, replacement: Node, visited: set[Node], keep_nodes: set[Node]
) -> frozenset[Operation]:
    if node in visited:
        return frozenset()
    names: list[str] = []
    for child in replacement.children:
        if child.name not in names:
            names.append(child.name)
    for name in names:
        targets = replacement.children_named(name)
        position = 0
        for child in node.children_named(name):
            if child in visited:
                position += 1
            elif position < len(targets):
                _substitute_node(child, targets[position], visited, keep_nodes)
                position += 1
            elif child in keep_nodes:
                _substitute_node(child, _dummy(child), visited, keep_nodes)
            else:
                child.remove()
        for target in targets[position:]:
            _adopt(node, target)
    for child in [c for c in node.children if c.name not in names]:
        if child in visited:
            continue
        if child in keep_nodes:
            _substitute_node(child, _dummy(child), visited, keep_nodes)
        else:
            child.remove()
    if replacement.json_key != node.json_key:
        node.json_key, node.fhir_type = replacement.json_key, replacement.fhir_type
        node.primitive, node.schema = replacement.primitive, replacement.schema
    node.value = replacement.value
    return frozenset({Operation.SUBSTITUTE})


def _dummy(node: Node) -> Node:
    return Node(
        name=node.name,
        json_key=node.json_key,
        fhir_type=node.fhir_type,
        parent=None,
        primitive=node.primitive,
        schema=node.schema,
    )


def _adopt(parent: Node, target: Node) -> None:
    copy = _copy_tree(target, parent)
    parent.children.append(copy)


def _copy_tree(node: Node, parent: Node) -> Node:
    copy = Node(
        name=node.name,
        json_key=node.json_key,
        fhir_type=node.fhir_type,
        parent=parent,
        schema=node.schema,
        primitive=node.primitive,
        in_list=node.in_list,
        is_resource=node.is_resource,
        value=node.value,
    )
    copy.children = [_copy_tree(child, copy) for child in node.children]
    return copy
