"""The node tree built and written back without per-element interpretation, for the compiled rules.

:func:`build_tree` gives the same :class:`~nodes.Node` tree as :func:`nodes.build_resource`, but what each
JSON key becomes under each element kind (its FHIR type, name, schema, list-ness) is worked out once per
kind and key and kept in a table, instead of being looked up for every element of every resource. While
it builds, it records each resource's elements by FHIR type and by name (:class:`ResourceIndex`), which
``nodesByType``/``nodesByName`` rules then read instead of walking the resource again.
:func:`tree_json` writes the same JSON as :func:`nodes.to_json`.

Both are checked against the interpreted functions (``tests/unit/deid/engine/test_compiled_rules.py``).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from clinical_ai.deid.engine import fhir_types
from clinical_ai.deid.engine.fhir_types import UNTYPED, ElementSpec, Schema
from clinical_ai.deid.engine.nodes import JsonValue, Node

_new_node = Node.__new__
_MAX_SLOTS = 4096  # keys remembered per element kind (FHIR's largest types have a few hundred)
_SCALARS = (str, int, float, bool, list)


class ResourceIndex:
    """The elements of one resource, in document order: the resource itself excluded, nested resources
    (bundle entries, contained) included as elements but not entered, as the reference tool indexes them."""

    __slots__ = ("by_name", "by_type", "nested", "resource", "resource_names", "resource_types")

    def __init__(self, resource: Node) -> None:
        self.resource = resource
        self.by_type: dict[str, list[Node]] = {}
        self.by_name: dict[str, list[Node]] = {}
        self.nested: list[Node] = []
        # Keys under which a nested resource was filed: FHIRPath's nodesByType/nodesByName leave them out.
        self.resource_types: set[str] = set()
        self.resource_names: set[str] = set()

    def add(self, node: Node) -> None:
        fhir_type = node.fhir_type
        if fhir_type:
            found = self.by_type.get(fhir_type)
            if found is None:
                self.by_type[fhir_type] = [node]
            else:
                found.append(node)
        found = self.by_name.get(node.name)
        if found is None:
            self.by_name[node.name] = [node]
        else:
            found.append(node)
        if node.is_resource:
            self.nested.append(node)
            if fhir_type:
                self.resource_types.add(fhir_type)
            self.resource_names.add(node.name)

    @classmethod
    def of(cls, resource: Node) -> ResourceIndex:
        """Index ``resource`` as it is now (after a rule changed the tree's shape)."""
        index = cls(resource)
        stack = list(reversed(resource.children))
        while stack:
            node = stack.pop()
            index.add(node)
            if not node.is_resource:
                stack.extend(reversed(node.children))
        return index

    def fhirpath_nodes_by_type(self, resource: Node, type_name: str) -> list[Node]:
        """``resource.nodesByType(type_name)``: the resource itself included, nested resources left out."""
        found = self.by_type.get(type_name, [])
        if type_name in self.resource_types:
            found = [node for node in found if not node.is_resource]
        return [resource, *found] if resource.fhir_type == type_name else list(found)

    def fhirpath_nodes_by_name(self, resource: Node, name: str) -> list[Node]:
        found = self.by_name.get(name, [])
        if name in self.resource_names:
            found = [node for node in found if not node.is_resource]
        return [resource, *found] if resource.name == name else list(found)


# --- what each key becomes, per element kind --------------------------------------------------------------


class _Slot:
    """JSON key ``key`` under an element of one kind, as ``nodes.add_json_child``/``_build_value`` type it."""

    __slots__ = (
        "complex_schema",
        "complex_type",
        "name",
        "primitive_type",
        "resource_ok",
        "spec_list",
        "table",
    )

    def __init__(self, key: str, spec: ElementSpec | None) -> None:
        self.name = spec.name if spec else key
        complex_ok = spec is not None and not fhir_types.is_primitive(spec.fhir_type)
        self.complex_type = spec.fhir_type if spec is not None and complex_ok else None
        self.complex_schema = spec.schema if spec is not None and complex_ok else UNTYPED
        self.primitive_type = (
            spec.fhir_type if spec is not None and fhir_types.is_primitive(spec.fhir_type) else None
        )
        self.spec_list = bool(spec and spec.is_list)
        self.resource_ok = spec is None or spec.fhir_type == fhir_types.RESOURCE
        self.table: _Table | None = None  # the children's table, when first needed

    def child_table(self) -> _Table:
        table = self.table
        if table is None:
            table = self.table = _table(self.complex_schema)
        return table


class _Table:
    __slots__ = ("schema", "slots", "typed")

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.typed = schema is not UNTYPED
        self.slots: dict[str, _Slot] = {}

    def slot(self, key: str) -> _Slot:
        slot = self.slots.get(key)
        if slot is None:
            spec = fhir_types.lookup(self.schema, key) if self.typed else None
            slot = _Slot(key, spec)
            if len(self.slots) < _MAX_SLOTS:  # input may bring any number of unknown keys: not all kept
                self.slots[key] = slot
        return slot


_TABLES: dict[Schema, _Table] = {}
_RESOURCE_TABLES: dict[str | None, tuple[Schema, _Table]] = {}


def _table(schema: Schema) -> _Table:
    table = _TABLES.get(schema)
    if table is None:
        table = _TABLES[schema] = _Table(schema)
    return table


def _resource_table(type_name: str | None) -> tuple[Schema, _Table]:
    found = _RESOURCE_TABLES.get(type_name)
    if found is None:
        schema = (fhir_types.resource_schema(type_name) if type_name else None) or UNTYPED
        found = _RESOURCE_TABLES[type_name] = (schema, _table(schema))
    return found


_ELEMENT_TABLE: list[_Table] = []


def _element_table() -> _Table:
    """The table of a primitive's ``_name`` object (an Element: id and extension)."""
    if not _ELEMENT_TABLE:
        _ELEMENT_TABLE.append(_table(Schema(fhir_types._r4b_model("Element"), "Element")))
    return _ELEMENT_TABLE[0]


# --- JSON -> tree -----------------------------------------------------------------------------------------


def _is_object(value: Any) -> bool:
    kind = type(value)
    return kind is dict or (kind not in _SCALARS and isinstance(value, Mapping))


class _Builder:
    __slots__ = ("index", "indexes")

    def __init__(self) -> None:
        self.indexes: list[ResourceIndex] = []
        self.index: ResourceIndex | None = None

    def resource(self, data: Mapping[str, JsonValue], parent: Node | None, key: str, in_list: bool) -> Node:
        resource_type = data.get("resourceType")
        type_name = resource_type if isinstance(resource_type, str) else None
        schema, table = _resource_table(type_name)
        node = _new_node(Node)
        node.name = key or (type_name or "")
        node.json_key = key
        node.fhir_type = type_name
        node.parent = parent
        node.schema = schema
        node.primitive = False
        node.in_list = in_list
        node.is_resource = True
        node.value = None
        node.children = []
        outer = self.index
        if outer is not None:
            outer.add(node)
        self.index = ResourceIndex(node)
        self.indexes.append(self.index)
        self.fill(node, data, table, True)
        self.index = outer
        return node

    def fill(self, node: Node, data: Mapping[str, JsonValue], table: _Table, is_resource: bool) -> None:
        slots = table.slots
        children = node.children
        for key, value in data.items():
            if key[:1] == "_" and len(key) > 1:
                base = key[1:]
                if base in data:
                    continue  # handled together with its value
                self.add(node, table, base, None, value)
                continue
            if key == "resourceType" and is_resource:
                continue
            extension = data.get(f"_{key}")
            if extension is not None:
                self.add(node, table, key, value, extension)
                continue
            slot = slots.get(key) or table.slot(key)
            if isinstance(value, list):
                for item in value:
                    if item is not None:
                        children.append(self.value(node, slot, key, item, None, True))
            elif value is not None:
                children.append(self.value(node, slot, key, value, None, slot.spec_list))

    def add(self, parent: Node, table: _Table, key: str, value: JsonValue, extension: JsonValue) -> None:
        slot = table.slot(key)
        children = parent.children
        if extension is None:
            if isinstance(value, list):
                for item in value:
                    if item is not None:
                        children.append(self.value(parent, slot, key, item, None, True))
            elif value is not None:
                children.append(self.value(parent, slot, key, value, None, slot.spec_list))
            return
        values = value if isinstance(value, list) else [value]
        extensions: list[JsonValue] = extension if isinstance(extension, list) else [extension]
        if value is None:
            values = [None] * max(len(extensions), 1)
        in_list = isinstance(value, list) or isinstance(extension, list) or slot.spec_list
        for position, item in enumerate(values):
            item_extension = extensions[position] if position < len(extensions) else None
            if item is None and item_extension is None:
                continue
            children.append(self.value(parent, slot, key, item, item_extension, in_list))

    def value(
        self, parent: Node, slot: _Slot, key: str, value: JsonValue, extension: JsonValue, in_list: bool
    ) -> Node:
        kind = type(value)
        is_object = kind is dict or (kind not in _SCALARS and isinstance(value, Mapping))
        if is_object and slot.resource_ok and "resourceType" in value:
            return self.resource(value, parent, slot.name, in_list)
        node = _new_node(Node)
        node.name = name = slot.name
        node.json_key = key
        node.parent = parent
        node.in_list = in_list
        node.is_resource = False
        node.children = []
        if is_object:
            node.fhir_type = fhir_type = slot.complex_type
            node.schema = slot.complex_schema
            node.primitive = False
            node.value = None
        else:
            node.fhir_type = fhir_type = slot.primitive_type
            node.schema = UNTYPED
            node.primitive = True
            node.value = value
        index = self.index
        if index is not None:  # index.add(node), inlined: once per element
            if fhir_type:
                found = index.by_type.get(fhir_type)
                if found is None:
                    index.by_type[fhir_type] = [node]
                else:
                    found.append(node)
            found = index.by_name.get(name)
            if found is None:
                index.by_name[name] = [node]
            else:
                found.append(node)
        if is_object:
            table = slot.table or slot.child_table()
            self.fill(node, value, table, False)
        elif extension is not None and _is_object(extension):
            self.fill(node, extension, _element_table(), False)
        return node


def json_child(parent: Node, key: str, value: JsonValue) -> list[Node]:
    """The node(s) for JSON property ``key`` added under ``parent`` (as :func:`nodes.add_json_child`)."""
    children = parent.children
    before = len(children)
    _Builder().add(parent, _table(parent.schema), key, value, None)
    return children[before:]


def build_tree(data: Mapping[str, JsonValue]) -> tuple[Node, list[ResourceIndex]]:
    """The tree of a resource (as :func:`nodes.build_resource`), and the index of each resource in it."""
    builder = _Builder()
    root = builder.resource(data, None, "", False)
    return root, builder.indexes


# --- tree -> JSON -----------------------------------------------------------------------------------------


def _scalar(value: Any) -> JsonValue:
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and value.as_tuple().exponent == 0:
            return int(value)
        return float(value)
    return value


def tree_json(node: Node) -> dict[str, JsonValue]:
    """The JSON of ``node`` (as :func:`nodes.to_json`)."""
    out: dict[str, JsonValue] = {}
    if node.is_resource and node.fhir_type:
        out["resourceType"] = node.fhir_type
    children = node.children
    if not children:
        return out
    groups: dict[str, Any] = {}  # json key -> its one node, or the list of its nodes
    for child in children:
        key = child.json_key
        found = groups.get(key)
        if found is None:
            groups[key] = child
        elif type(found) is list:
            found.append(child)
        else:
            groups[key] = [found, child]
    for key, found in groups.items():
        if type(found) is list:
            _group_json(out, key, found)
            continue
        member: Node = found
        if member.primitive:
            value = _scalar(member.value)
            extension = tree_json(member) if member.children else None
            if member.in_list:
                if value is not None:
                    out[key] = [value]
                if extension is not None:
                    out[f"_{key}"] = [extension]
            else:
                if value is not None:
                    out[key] = value
                if extension is not None:
                    out[f"_{key}"] = extension
        else:
            item = tree_json(member)
            out[key] = [item] if member.in_list else item
    return out


def pruned_json(node: Node) -> dict[str, JsonValue]:
    """:func:`nodes.prune_empty` then :func:`tree_json`, in one pass that also unlinks each node it passes
    from its parent (the tree is not used after it is written; see :func:`release_tree`)."""
    out: dict[str, JsonValue] = {}
    if node.is_resource and node.fhir_type:
        out["resourceType"] = node.fhir_type
    groups: dict[str, Any] = {}  # json key -> (node, its pruned JSON) or a list of them
    for child in node.children:
        child.parent = None
        sub = pruned_json(child) if child.children else None
        if not (sub or child.value is not None or child.is_resource):
            continue  # empty: pruned
        key = child.json_key
        found = groups.get(key)
        if found is None:
            groups[key] = (child, sub)
        elif type(found) is list:
            found.append((child, sub))
        else:
            groups[key] = [found, (child, sub)]
    for key, found in groups.items():
        if type(found) is list:
            _pruned_group_json(out, key, found)
            continue
        member, sub = found
        if member.primitive:
            value = _scalar(member.value)
            if member.in_list:
                if value is not None:
                    out[key] = [value]
                if sub:
                    out[f"_{key}"] = [sub]
            else:
                if value is not None:
                    out[key] = value
                if sub:
                    out[f"_{key}"] = sub
        else:
            item = sub if sub is not None else _empty_object(member)
            out[key] = [item] if member.in_list else item
    return out


def _empty_object(node: Node) -> dict[str, JsonValue]:
    return {"resourceType": node.fhir_type} if node.is_resource and node.fhir_type else {}


def _pruned_group_json(out: dict[str, JsonValue], key: str, members: list[tuple[Node, Any]]) -> None:
    if members[0][0].primitive:
        values = [_scalar(member.value) for member, _ in members]
        extensions = [sub or None for _, sub in members]
        if any(value is not None for value in values):
            out[key] = values
        if any(extension is not None for extension in extensions):
            out[f"_{key}"] = extensions
    else:
        out[key] = [sub if sub is not None else _empty_object(member) for member, sub in members]


def _group_json(out: dict[str, JsonValue], key: str, members: list[Node]) -> None:
    """Several elements under one key: always a list (as ``nodes._object_json``)."""
    if members[0].primitive:
        values = [_scalar(member.value) for member in members]
        extensions = [tree_json(member) if member.children else None for member in members]
        if any(value is not None for value in values):
            out[key] = values
        if any(extension is not None for extension in extensions):
            out[f"_{key}"] = extensions
    else:
        out[key] = [tree_json(member) for member in members]


# --- memory -----------------------------------------------------------------------------------------------


def release_tree(root: Node) -> None:
    """Unlink every node from its parent, so that the tree is freed as soon as it is dropped (by reference
    counting) instead of waiting, cycles and all, for the cyclic garbage collector."""
    stack = [root]
    while stack:
        node = stack.pop()
        node.parent = None
        stack.extend(node.children)


class _CollectorPause:
    """Pauses Python's cyclic garbage collector while trees are built and changed.

    A tree is hundreds of thousands of linked objects that all stay alive until the output is written;
    the collector, triggered by the allocations, would traverse them (and every long-lived object of the
    process) again and again for nothing: in the benchmark it took half of the interpreted engine's time.
    The trees are released by :func:`release_tree`, so nothing is left for the collector. Counted, so
    that threads pausing at the same time restore the collector only when the last one finishes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._was_enabled = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._was_enabled:
                    gc.enable()


collector_paused = _CollectorPause()
