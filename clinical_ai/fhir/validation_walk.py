"""One pass over raw FHIR JSON, guided by the R4B model classes, for what ``fhir.resources`` leaves out:

- codes of required bindings (``required_codes`` first, complete ``enum_values`` metadata otherwise);
- the type of every nested resource (contained, Bundle.entry.resource, Parameters.parameter.resource),
  checked before the models see it: the library raises KeyError / TypeError on unknown types there;
- local references (``"#id"``) resolve to a contained resource of the same container;
- every ``Reference.reference`` string, with its path, for the Bundle checks (``urn:uuid:`` targets);
- the JSON type of every element: the models coerce ("yes" or 1 as a boolean, "72" as an integer, a
  number as a dateTime, even a string of JSON text as a complex element), FHIR JSON does not.

Iterative, never recursive. Elements the model does not know are skipped: model validation reports them.
"""

from __future__ import annotations

import datetime
import decimal
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from clinical_ai.fhir import resource_types
from clinical_ai.fhir.outcome import Issue
from clinical_ai.fhir.required_codes import REQUIRED_CODES, REQUIRED_CODINGS

_RESOURCE_BASES = frozenset({"Resource", "DomainResource"})


# The JSON type FHIR requires for each Python type the models use for a primitive.
_JSON_KINDS: dict[type[Any], str] = {
    bool: "boolean",
    int: "integer",
    decimal.Decimal: "decimal",
    float: "decimal",
    str: "string",
    bytes: "string",  # base64Binary
    datetime.date: "string",
    datetime.datetime: "string",
    datetime.time: "string",
}
_UNKNOWN_ELEMENT = "Unknown element: not defined for this type in FHIR R4"
_ARRAY_EXPECTED = "FHIR JSON requires an array here"
_SINGLE_EXPECTED = "FHIR JSON requires a single value here, not an array"
_KIND_DIAGNOSTICS = {
    "boolean": "FHIR JSON requires a boolean (true or false) here",
    "integer": "FHIR JSON requires an integer number here",
    "decimal": "FHIR JSON requires a number here",
    "string": "FHIR JSON requires a string here",
}


def _json_kind_matches(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "integer":
        return isinstance(value, int)
    if kind == "decimal":
        return isinstance(value, int | float)
    return False


@dataclass(frozen=True)
class _FieldRule:
    repeats: bool  # a JSON array in FHIR JSON
    json_kind: str | None
    codes: frozenset[str] | None
    coding: tuple[str, frozenset[str]] | None
    child: type[Any] | None
    resource_slot: bool


@dataclass(frozen=True)
class _ClassRules:
    fields: dict[str, _FieldRule]
    is_reference: bool


@dataclass
class WalkResult:
    issues: list[Issue] = field(default_factory=list)
    # (path of the Reference.reference element, its value)
    references: list[tuple[str, str]] = field(default_factory=list)
    # a nested resource the models cannot be trusted with: skip model validation, report this instead
    nested_type_error: bool = False
    # paths whose JSON type is wrong: the model's own complaint there, if any, says the same
    type_error_paths: set[str] = field(default_factory=set)


def _primitive_kind(annotation: Any) -> str | None:
    """The JSON type of a primitive field, from an annotation such as ``Optional[Annotated[int, ...]]``."""
    pending = [annotation]
    while pending:
        candidate = pending.pop(0)
        if isinstance(candidate, type) and candidate in _JSON_KINDS:
            return _JSON_KINDS[candidate]
        pending.extend(typing.get_args(candidate))
    return None


def _repeats(annotation: Any) -> bool:
    """Whether a field is a list: ``Optional[List[X]]`` is, ``Optional[X]`` is not."""
    pending = [annotation]
    while pending:
        candidate = pending.pop()
        origin = typing.get_origin(candidate)
        if origin is list:
            return True
        if origin in (typing.Union, types.UnionType, typing.Annotated):
            pending.extend(
                typing.get_args(candidate)[:1] if origin is typing.Annotated else typing.get_args(candidate)
            )
    return False


def element_class(annotation: Any) -> type[Any] | None:
    """The model class inside a field annotation such as ``Optional[List[abc.CodingType]]``."""
    pending = [annotation]
    while pending:
        candidate = pending.pop()
        if isinstance(candidate, type):
            get_model_klass = getattr(candidate, "get_model_klass", None)
            if get_model_klass is not None:
                klass: type[Any] = get_model_klass()
                return klass
        pending.extend(typing.get_args(candidate))
    return None


def _complete_enum(extra: Any) -> frozenset[str] | None:
    if not isinstance(extra, dict):
        return None
    values = extra.get("enum_values")
    # a list ending in "+" was cut short by the generator: it would reject valid codes
    if not isinstance(values, list) or not values or values[-1] == "+":
        return None
    if not all(isinstance(v, str) for v in values):
        return None
    return frozenset(values)


_RULES: dict[type[Any], _ClassRules] = {}


def _class_rules(model: type[Any]) -> _ClassRules:
    rules = _RULES.get(model)
    if rules is None:
        rules = _RULES[model] = _compute_class_rules(model)
    return rules


def _compute_class_rules(model: type[Any]) -> _ClassRules:
    lineage = [klass.__name__ for klass in model.__mro__]
    rules: dict[str, _FieldRule] = {}
    for name, model_field in model.model_fields.items():
        alias = model_field.alias or name
        codes = next((REQUIRED_CODES[(k, alias)] for k in lineage if (k, alias) in REQUIRED_CODES), None)
        if codes is None:
            codes = _complete_enum(model_field.json_schema_extra)
        coding = next((REQUIRED_CODINGS[(k, alias)] for k in lineage if (k, alias) in REQUIRED_CODINGS), None)
        child = element_class(model_field.annotation)
        json_kind = None if child is not None else _primitive_kind(model_field.annotation)
        resource_slot = child is not None and child.__name__ in _RESOURCE_BASES
        if alias == "fhir_comments":
            continue  # a DSTU2 leftover the library still accepts; unknown in R4, reported as such
        rules[alias] = _FieldRule(
            repeats=_repeats(model_field.annotation),
            json_kind=json_kind,
            codes=codes,
            coding=coding,
            child=child,
            resource_slot=resource_slot,
        )
    return _ClassRules(fields=rules, is_reference="Reference" in lineage)


def contained_ids(resource: dict[str, Any]) -> frozenset[str]:
    contained = resource.get("contained")
    if not isinstance(contained, list):
        return frozenset()
    return frozenset(
        item["id"] for item in contained if isinstance(item, dict) and isinstance(item.get("id"), str)
    )


def resource_type_issue(value: object, path: str) -> Issue | None:
    """Why ``value`` cannot be validated as an R4 resourceType, or None when it can. ``path`` is the
    resource's own path ("" for a top-level resource of unknown type)."""
    expression = (f"{path}.resourceType" if path else "resourceType",)
    if value is None:
        return Issue(code="required", diagnostics="resourceType is missing", expression=expression)
    if not isinstance(value, str):
        return Issue(code="structure", diagnostics="resourceType must be a string", expression=expression)
    if not resource_types.is_r4_resource_type(value):
        return Issue(
            code="not-supported",
            diagnostics="Unknown resource type: not a FHIR R4 resource type",
            expression=expression,
        )
    if not resource_types.is_supported_resource_type(value):
        return Issue(
            code="not-supported",
            diagnostics=f"R4 resource type {value} is not supported",
            expression=expression,
        )
    return None


def _code_issue(path: str, codes: frozenset[str]) -> Issue:
    return Issue(
        code="code-invalid",
        diagnostics=f"Code not in the FHIR R4 required value set; allowed: {' | '.join(sorted(codes))}",
        expression=(path,),
    )


def walk_resource(resource: dict[str, Any], model: type[Any], root: str) -> WalkResult:
    """Walk ``resource`` (already known to be of ``model``'s type); paths start at ``root``."""
    result = WalkResult()
    # (element, its model, its path, ids of the contained resources in scope, inside a contained resource)
    stack: list[tuple[dict[str, Any], type[Any], str, frozenset[str], bool]] = [
        (resource, model, root, contained_ids(resource), False)
    ]
    while stack:
        node, node_model, path, scope, in_contained = stack.pop()
        rules = _class_rules(node_model)
        children: list[tuple[dict[str, Any], type[Any], str, frozenset[str], bool]] = []
        if rules.is_reference:
            reference = node.get("reference")
            if isinstance(reference, str):
                reference_path = f"{path}.reference"
                result.references.append((reference_path, reference))
                target = reference[1:]
                if reference.startswith("#") and target and target not in scope:
                    result.issues.append(
                        Issue(
                            code="not-found",
                            diagnostics="Local reference does not match the id of a contained resource",
                            expression=(reference_path,),
                        )
                    )
        for key, value in node.items():
            rule = rules.fields.get(key)
            if rule is None:
                if key == "fhir_comments":
                    result.issues.append(
                        Issue(code="structure", diagnostics=_UNKNOWN_ELEMENT, expression=(f"{path}.{key}",))
                    )
                continue
            element_path = f"{path}.{key}"
            if value is not None and isinstance(value, list) != rule.repeats:
                # cardinality first: the library crashes on some arrays where one value belongs
                result.issues.append(
                    Issue(
                        code="structure",
                        diagnostics=_ARRAY_EXPECTED if rule.repeats else _SINGLE_EXPECTED,
                        expression=(element_path,),
                    )
                )
                result.type_error_paths.add(element_path)
                continue
            if value is None:
                # null only stands in for an absent value inside an array of primitives
                result.issues.append(
                    Issue(
                        code="structure",
                        diagnostics="FHIR JSON does not allow null here",
                        expression=(element_path,),
                    )
                )
                result.type_error_paths.add(element_path)
                continue
            items = (
                [(f"{element_path}[{i}]", item) for i, item in enumerate(value)]
                if isinstance(value, list)
                else [(element_path, value)]
            )
            for item_path, item in items:
                if rule.json_kind is not None:
                    if item is None and isinstance(value, list):
                        continue
                    if not _json_kind_matches(rule.json_kind, item):
                        result.issues.append(
                            Issue(
                                code="structure",
                                diagnostics=_KIND_DIAGNOSTICS[rule.json_kind],
                                expression=(item_path,),
                            )
                        )
                        result.type_error_paths.add(item_path)
                        continue
                if rule.codes is not None and isinstance(item, str) and item not in rule.codes:
                    result.issues.append(_code_issue(item_path, rule.codes))
                if rule.child is None:
                    continue
                if item is None and key.startswith("_") and isinstance(value, list):
                    continue  # "_given": [null, {...}] lines extensions up with the primitive array
                if not isinstance(item, dict):
                    # the models would even parse a string here as JSON text
                    result.issues.append(
                        Issue(
                            code="structure",
                            diagnostics="FHIR JSON requires an object here",
                            expression=(item_path,),
                        )
                    )
                    result.type_error_paths.add(item_path)
                    continue
                if rule.resource_slot:
                    problem = resource_type_issue(item.get("resourceType"), item_path)
                    if problem is not None:
                        result.issues.append(problem)
                        result.nested_type_error = True
                        continue
                    if key == "contained" and in_contained:
                        result.issues.append(
                            Issue(
                                code="invariant",
                                diagnostics="A contained resource cannot contain resources (dom-2)",
                                expression=(item_path,),
                            )
                        )
                    nested_model = resource_types.model_class(item["resourceType"])
                    # contained resources share their container's scope; any other nested resource
                    # (a Bundle entry, a Parameters value) is a scope of its own
                    if key == "contained":
                        children.append((item, nested_model, item_path, scope, True))
                    else:
                        children.append((item, nested_model, item_path, contained_ids(item), False))
                    continue
                if rule.coding is not None:
                    _check_codings(item, item_path, rule.coding, result)
                children.append((item, rule.child, item_path, scope, in_contained))
        stack.extend(reversed(children))  # depth first, in document order
    return result


def _check_codings(
    concept: dict[str, Any], path: str, binding: tuple[str, frozenset[str]], result: WalkResult
) -> None:
    system, codes = binding
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return
    for index, coding in enumerate(codings):
        if not isinstance(coding, dict) or coding.get("system") != system:
            continue
        code = coding.get("code")
        if isinstance(code, str) and code not in codes:
            result.issues.append(_code_issue(f"{path}.coding[{index}].code", codes))
