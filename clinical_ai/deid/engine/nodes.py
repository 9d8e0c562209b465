"""A typed, mutable tree over FHIR JSON: one :class:`Node` per element, with its FHIR type.

The engine builds the tree once per resource (a Bundle and everything in it is one tree), runs the rules
against node identities, and serialises the tree back to plain JSON. A primitive and its ``_name``
sibling (id and extensions of the primitive) are one node, as in the FHIR element model: the value is the
node's ``value`` and the extensions are its children.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from clinical_ai.deid.engine import fhir_types
from clinical_ai.deid.engine.fhir_types import UNTYPED, ElementSpec, Schema

JsonValue = Any  # what json.loads gives: dict, list, str, int, float, bool, None


class Node:
    """One FHIR element (or a whole resource)."""

    __slots__ = (
        "children",
        "fhir_type",
        "in_list",
        "is_resource",
        "json_key",
        "name",
        "parent",
        "primitive",
        "schema",
        "value",
    )

    def __init__(
        self,
        *,
        name: str,
        json_key: str,
        fhir_type: str | None,
        parent: Node | None,
        schema: Schema = UNTYPED,
        primitive: bool = False,
        in_list: bool = False,
        is_resource: bool = False,
        value: Any = None,
    ) -> None:
        self.name = name
        self.json_key = json_key
        self.fhir_type = fhir_type
        self.parent = parent
        self.schema = schema
        self.primitive = primitive
        self.in_list = in_list
        self.is_resource = is_resource
        self.value = value
        self.children: list[Node] = []

    def __repr__(self) -> str:
        return f"<Node {self.location()} {self.fhir_type} {self.value!r}>"

    def children_named(self, name: str) -> list[Node]:
        return [child for child in self.children if child.name == name]

    def first_child(self, name: str) -> Node | None:
        for child in self.children:
            if child.name == name:
                return child
        return None

    def root(self) -> Node:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def resource(self) -> Node:
        """The nearest enclosing resource (itself if it is one)."""
        node = self
        while not node.is_resource and node.parent is not None:
            node = node.parent
        return node

    def self_and_descendants(self) -> Iterator[Node]:
        """Self and every descendant, not descending into contained or bundled resources."""
        yield self
        yield from self.descendants()

    def descendants(self) -> Iterator[Node]:
        """Descendants that are not resources, and not inside one (bundle entries, contained)."""
        stack = [iter(self.children)]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                continue
            if child.is_resource:
                continue
            yield child
            if child.children:
                stack.append(iter(child.children))

    def all_descendants(self) -> Iterator[Node]:
        """Every descendant, sub-resources included."""
        for child in self.children:
            yield child
            yield from child.all_descendants()

    def location(self) -> str:
        parts: list[str] = []
        node: Node | None = self
        while node is not None:
            if node.parent is None:
                parts.append(node.fhir_type or node.name)
            else:
                siblings = [c for c in node.parent.children if c.name == node.name]
                suffix = f"[{siblings.index(node)}]" if len(siblings) > 1 or node.in_list else ""
                parts.append(f"{node.name}{suffix}")
            node = node.parent
        return ".".join(reversed(parts))

    def remove(self) -> None:
        if self.parent is not None:
            self.parent.children = [c for c in self.parent.children if c is not self]
            self.parent = None


# --- JSON -> tree ---------------------------------------------------------------------------------------

_ELEMENT_SCHEMA_CACHE: dict[str, Schema] = {}


def _element_schema() -> Schema:
    """Schema of the ``_name`` object of a primitive (an Element: id and extension)."""
    schema = _ELEMENT_SCHEMA_CACHE.get("Element")
    if schema is None:
        schema = Schema(fhir_types._r4b_model("Element"), "Element")
        _ELEMENT_SCHEMA_CACHE["Element"] = schema
    return schema


def build_resource(
    data: Mapping[str, JsonValue], *, parent: Node | None = None, key: str = "", in_list: bool = False
) -> Node:
    resource_type = data.get("resourceType")
    type_name = resource_type if isinstance(resource_type, str) else None
    schema = (fhir_types.resource_schema(type_name) if type_name else None) or UNTYPED
    node = Node(
        name=key or (type_name or ""),
        json_key=key,
        fhir_type=type_name,
        parent=parent,
        schema=schema,
        in_list=in_list,
        is_resource=True,
    )
    _fill_object(node, data)
    return node


def _fill_object(node: Node, data: Mapping[str, JsonValue]) -> None:
    for key, value in data.items():
        if key == "resourceType" and node.is_resource:
            continue
        if key.startswith("_") and len(key) > 1:
            base = key[1:]
            if base in data:
                continue  # handled together with its value
            add_json_child(node, base, None, extension=value)
            continue
        add_json_child(node, key, value, extension=data.get(f"_{key}"))


def add_json_child(parent: Node, key: str, value: JsonValue, *, extension: JsonValue = None) -> list[Node]:
    """Build the node(s) for JSON property ``key`` (value and optional ``_key`` sibling) under ``parent``."""
    spec = fhir_types.lookup(parent.schema, key) if parent.schema is not UNTYPED else None
    values = value if isinstance(value, list) else [value]
    if isinstance(extension, list):
        extensions: list[JsonValue] = extension
    elif extension is None:
        extensions = []
    else:
        extensions = [extension]
    if value is None:
        values = [None] * max(len(extensions), 1)
    in_list = isinstance(value, list) or isinstance(extension, list) or bool(spec and spec.is_list)
    created: list[Node] = []
    for index, item in enumerate(values):
        item_extension = extensions[index] if index < len(extensions) else None
        if item is None and item_extension is None:
            continue
        child = _build_value(parent, key, spec, item, item_extension, in_list)
        parent.children.append(child)
        created.append(child)
    return created


def _build_value(
    parent: Node, key: str, spec: ElementSpec | None, value: JsonValue, extension: JsonValue, in_list: bool
) -> Node:
    name = spec.name if spec else key
    if isinstance(value, Mapping):
        if "resourceType" in value and (spec is None or spec.fhir_type == fhir_types.RESOURCE):
            return build_resource(value, parent=parent, key=name, in_list=in_list)
        complex_ok = spec is not None and not fhir_types.is_primitive(spec.fhir_type)
        node = Node(
            name=name,
            json_key=key,
            fhir_type=spec.fhir_type if spec and complex_ok else None,
            parent=parent,
            schema=spec.schema if spec and complex_ok else UNTYPED,
            in_list=in_list,
        )
        _fill_object(node, value)
        return node
    primitive_ok = spec is None or fhir_types.is_primitive(spec.fhir_type)
    node = Node(
        name=name,
        json_key=key,
        fhir_type=spec.fhir_type if spec and primitive_ok else None,
        parent=parent,
        primitive=True,
        in_list=in_list,
        value=value,
    )
    if isinstance(extension, Mapping):
        node.schema = _element_schema()
        _fill_object(node, extension)
        node.schema = UNTYPED
    return node


# --- tree -> JSON ---------------------------------------------------------------------------------------


def to_json(node: Node) -> dict[str, JsonValue]:
    return _object_json(node)


def _object_json(node: Node) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {}
    if node.is_resource and node.fhir_type:
        out["resourceType"] = node.fhir_type
    groups: dict[str, list[Node]] = {}
    for child in node.children:
        groups.setdefault(child.json_key, []).append(child)
    for key, members in groups.items():
        as_list = any(member.in_list for member in members) or len(members) > 1
        if members[0].primitive:
            values = [_json_scalar(member.value) for member in members]
            extensions = [_object_json(member) if member.children else None for member in members]
            if as_list:
                if any(v is not None for v in values):
                    out[key] = values
                if any(e is not None for e in extensions):
                    out[f"_{key}"] = extensions
            else:
                if values[0] is not None:
                    out[key] = values[0]
                if extensions[0] is not None:
                    out[f"_{key}"] = extensions[0]
        else:
            items = [_object_json(member) for member in members]
            out[key] = items if as_list else items[0]
    return out


def _json_scalar(value: Any) -> JsonValue:
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and value.as_tuple().exponent == 0:
            return int(value)
        return float(value)
    return value


def prune_empty(node: Node) -> None:
    """Remove, bottom-up, every element left with neither value nor children (resources stay)."""
    kept: list[Node] = []
    for child in node.children:
        prune_empty(child)
        if child.value is None and not child.children and not child.is_resource:
            child.parent = None
            continue
        kept.append(child)
    node.children = kept
