"""What FHIR type each JSON element has, derived from the ``fhir.resources.R4B`` pydantic models.

FHIRPath rules such as ``nodesByType('HumanName')`` need the FHIR type of every element, which plain JSON
does not carry. The R4B models annotate every field; this module reads those annotations once per class
and answers "under a node of this kind, what is the JSON key ``k``?" with an :class:`ElementSpec`.

R4 content that R4B dropped (e.g. ``MedicinalProduct``, a few renamed fields) falls back to the R4 path
table that ships with fhirpathpy (``fhirpathpy/models/r4``). Anything neither knows stays untyped: it is
still walked, kept and removable, but no ``nodesByType`` rule can select it.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from uuid import UUID

PRIMITIVE_TYPES = frozenset(
    {
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "integer64",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
    }
)

# Specialisations, for ``is``/``as``/``ofType``: each type maps to the type it derives from.
_PARENT_TYPE = {
    "Age": "Quantity",
    "Count": "Quantity",
    "Distance": "Quantity",
    "Duration": "Quantity",
    "MoneyQuantity": "Quantity",
    "SimpleQuantity": "Quantity",
    "code": "string",
    "id": "string",
    "markdown": "string",
    "url": "uri",
    "canonical": "uri",
    "oid": "uri",
    "uuid": "uri",
    "positiveInt": "integer",
    "unsignedInt": "integer",
}

# Resources that are not DomainResources (no text, contained or extensions).
_PLAIN_RESOURCES = frozenset({"Bundle", "Binary", "Parameters"})

RESOURCE = "Resource"
BACKBONE = "BackboneElement"


@dataclass(frozen=True, slots=True)
class Schema:
    """How to look up the children of a complex node: its R4B model class (if R4B knows it) and its R4
    path (the resource-relative path for backbone elements, the type name for data types)."""

    model: type[Any] | None
    r4_path: str | None


UNTYPED = Schema(None, None)


@dataclass(frozen=True, slots=True)
class ElementSpec:
    """One JSON key of a complex type."""

    name: str  # element name; for a choice element without its type suffix ("value" for "valueQuantity")
    fhir_type: str  # FHIR type name: "HumanName", "dateTime", "BackboneElement", "Resource" ...
    is_list: bool
    schema: Schema  # for complex types: how to type the children


def is_primitive(fhir_type: str | None) -> bool:
    return fhir_type in PRIMITIVE_TYPES


def type_is(fhir_type: str | None, wanted: str, *, is_resource: bool = False) -> bool:
    """FHIRPath ``is``: exact type or one of its specialisations (``Age`` is a ``Quantity``)."""
    if fhir_type is None:
        return False
    if wanted.startswith("FHIR."):
        wanted = wanted[5:]
    if is_resource:
        if wanted == "Resource":
            return True
        if wanted == "DomainResource":
            return fhir_type not in _PLAIN_RESOURCES
        return fhir_type == wanted
    current: str | None = fhir_type
    while current is not None:
        if current == wanted:
            return True
        current = _PARENT_TYPE.get(current)
    return wanted == "Element" and fhir_type != RESOURCE


def resource_schema(resource_type: str) -> Schema | None:
    """The schema of a resource type, or None when neither R4B nor R4 knows it."""
    model = _r4b_model(resource_type)
    if model is not None:
        return Schema(model, resource_type)
    if resource_type in _r4_resource_types():
        return Schema(None, resource_type)
    return None


def resource_type_names() -> frozenset[str]:
    """Every concrete FHIR R4 resource type name."""
    return _r4_resource_types() - {"Resource", "DomainResource"}


def lookup(schema: Schema, key: str) -> ElementSpec | None:
    """The spec of JSON key ``key`` under a node with ``schema``; None when unknown."""
    return _lookup(schema, key)


@cache
def _lookup(schema: Schema, key: str) -> ElementSpec | None:
    if schema.model is not None:
        spec = _r4b_fields(schema.model).get(key)
        if spec is not None:
            return ElementSpec(spec.name, spec.fhir_type, spec.is_list, _child_schema(spec, schema))
    if schema.r4_path is not None:
        return _r4_lookup(schema.r4_path, key)
    return None


def _child_schema(spec: _FieldSpec, parent: Schema) -> Schema:
    if spec.fhir_type in PRIMITIVE_TYPES or spec.fhir_type == RESOURCE:
        return UNTYPED
    if spec.fhir_type == BACKBONE:
        r4_path = f"{parent.r4_path}.{spec.name}" if parent.r4_path else None
        return Schema(spec.model, _r4_canonical_path(r4_path) if r4_path else None)
    return Schema(spec.model, spec.fhir_type)


# --- R4B pydantic models ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    fhir_type: str
    is_list: bool
    model: type[Any] | None


@cache
def _r4b_model(type_name: str) -> type[Any] | None:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model: type[Any] = get_fhir_model_class(type_name)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None
    return model


@cache
def _backbone_base() -> type[Any]:
    from fhir.resources.R4B.backboneelement import BackboneElement

    cls: type[Any] = BackboneElement
    return cls


@cache
def _resource_base() -> type[Any]:
    from fhir.resources.R4B.resource import Resource

    cls: type[Any] = Resource
    return cls


_FIELDS_BY_MODEL: dict[type[Any], dict[str, _FieldSpec]] = {}


def _r4b_fields(model: type[Any]) -> dict[str, _FieldSpec]:
    cached = _FIELDS_BY_MODEL.get(model)
    if cached is None:
        cached = _FIELDS_BY_MODEL[model] = _read_fields(model)
    return cached


def _read_fields(model: type[Any]) -> dict[str, _FieldSpec]:
    fields: dict[str, _FieldSpec] = {}
    for field in model.model_fields.values():
        alias = field.alias
        extra = field.json_schema_extra
        if not alias or alias.startswith("_") or not isinstance(extra, dict):
            continue
        if not extra.get("element_property"):
            continue
        typed = _annotation_type(field.annotation)
        if typed is None:
            continue
        fhir_type, is_list, element_model = typed
        choice = extra.get("one_of_many")
        name = choice if isinstance(choice, str) and choice else alias
        fields[alias] = _FieldSpec(name, fhir_type, is_list, element_model)
    return fields


def _annotation_type(annotation: Any) -> tuple[str, bool, type[Any] | None] | None:
    """(FHIR type, is list, model class for complex types) of a field annotation."""
    is_list = False
    current = annotation
    for _ in range(6):
        origin = typing.get_origin(current)
        args = typing.get_args(current)
        if origin is typing.Union or (origin is not None and type(None) in args):
            non_none = [a for a in args if a is not type(None)]
            if len(non_none) != 1:
                return None
            current = non_none[0]
            continue
        if origin in (list, typing.List):  # noqa: UP006 - the models use typing.List
            is_list = True
            current = args[0]
            continue
        if origin is typing.Annotated:
            base, *metadata = args
            for meta in metadata:
                meta_type = type(meta)
                name = meta_type.__name__[:1].lower() + meta_type.__name__[1:]
                if meta_type.__module__.startswith("fhir_core") and name in PRIMITIVE_TYPES:
                    return name, is_list, None
            current = base
            continue
        break
    if current is bool:
        return "boolean", is_list, None
    if current is UUID:
        return "uuid", is_list, None
    get_klass = getattr(current, "get_model_klass", None)
    if get_klass is None:
        return None
    klass: type[Any] = get_klass()
    if issubclass(klass, _resource_base()):
        return RESOURCE, is_list, None
    if issubclass(klass, _backbone_base()):
        return BACKBONE, is_list, klass
    type_name = klass.__name__
    if type_name == "FHIRPrimitiveExtension":
        return None
    return type_name, is_list, klass


# --- R4 fallback (fhirpathpy's R4 model tables) -------------------------------------------------------


@cache
def _r4_table(name: str) -> dict[str, Any]:
    text = resources.files("fhirpathpy.models.r4").joinpath(f"{name}.json").read_text(encoding="utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


@cache
def _r4_resource_types() -> frozenset[str]:
    parents = _r4_table("type2Parent")
    return frozenset(name for name, parent in parents.items() if parent in ("DomainResource", "Resource"))


@cache
def _r4_backbone_paths() -> frozenset[str]:
    paths: set[str] = set()
    for path in _r4_table("path2Type"):
        parts = path.split(".")
        for end in range(2, len(parts)):
            paths.add(".".join(parts[:end]))
    return frozenset(paths)


def _r4_canonical_path(path: str) -> str:
    elsewhere: dict[str, str] = _r4_table("pathsDefinedElsewhere")
    return elsewhere.get(path, path)


def _r4_lookup(r4_path: str, key: str) -> ElementSpec | None:
    path2type: dict[str, str] = _r4_table("path2Type")
    base = _r4_canonical_path(r4_path)
    name = key
    fhir_type = path2type.get(f"{base}.{key}")
    if fhir_type is None:
        choices: dict[str, list[str]] = _r4_table("choiceTypePaths")
        for index in range(len(key) - 1, 0, -1):
            if not key[index].isupper():
                continue
            candidates = choices.get(f"{base}.{key[:index]}")
            suffix = key[index:]
            if candidates and suffix in candidates:
                name = key[:index]
                lowered = suffix[0].lower() + suffix[1:]
                fhir_type = lowered if lowered in PRIMITIVE_TYPES else suffix
                break
    child_path = f"{base}.{name}"
    if fhir_type is None:
        if child_path in _r4_backbone_paths():
            return ElementSpec(name, BACKBONE, False, Schema(None, _r4_canonical_path(child_path)))
        return None
    if fhir_type.startswith("System."):
        fhir_type = "string"
    if fhir_type in PRIMITIVE_TYPES or fhir_type == RESOURCE:
        return ElementSpec(name, fhir_type, False, UNTYPED)
    if fhir_type == BACKBONE or child_path in _r4_backbone_paths():
        return ElementSpec(name, BACKBONE, False, Schema(None, _r4_canonical_path(child_path)))
    return ElementSpec(name, fhir_type, False, Schema(_r4b_model(fhir_type), fhir_type))
