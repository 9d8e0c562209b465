"""The FHIRPath functions the rule language supports, including the reference anonymizer's
``nodesByType`` and ``nodesByName`` (self and descendants, not entering nested resources)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from clinical_ai.deid.engine.fhirpath_operators import union
from clinical_ai.deid.engine.fhirpath_values import (
    Collection,
    FhirPathEvaluationError,
    FPDateTime,
    FPTime,
    Item,
    boolean,
    is_number,
    is_type,
    only,
    single,
    system_value,
    truthy,
)
from clinical_ai.deid.engine.nodes import Node


@dataclass(frozen=True, slots=True)
class Env:
    """Evaluation environment: ``$this``, ``$index`` and the resources ``%resource`` names."""

    this: Collection
    index: int | None = None
    resource: Node | None = None
    root_resource: Node | None = None
    context: Collection = field(default_factory=list)


Evaluator = Callable[[Collection, Env], Collection]


@dataclass(frozen=True, slots=True)
class Function:
    """A FHIRPath function: ``lambdas`` are argument positions evaluated per input item."""

    implementation: Callable[..., Collection]
    arities: tuple[int, ...]
    lambdas: tuple[int, ...] = ()
    type_args: tuple[int, ...] = ()


def _per_item(criteria: Evaluator, item: Item, index: int, env: Env) -> Collection:
    return criteria([item], Env([item], index, env.resource, env.root_resource, env.context))


def _fn_where(focus: Collection, env: Env, criteria: Evaluator) -> Collection:
    return [item for index, item in enumerate(focus) if truthy(_per_item(criteria, item, index, env))]


def _fn_select(focus: Collection, env: Env, projection: Evaluator) -> Collection:
    result: Collection = []
    for index, item in enumerate(focus):
        result.extend(_per_item(projection, item, index, env))
    return result


def _fn_exists(focus: Collection, env: Env, criteria: Evaluator | None = None) -> Collection:
    if criteria is None:
        return [bool(focus)]
    return [any(truthy(_per_item(criteria, item, index, env)) for index, item in enumerate(focus))]


def _fn_all(focus: Collection, env: Env, criteria: Evaluator) -> Collection:
    return [all(truthy(_per_item(criteria, item, index, env)) for index, item in enumerate(focus))]


def _fn_iif(
    focus: Collection, env: Env, condition: Evaluator, then: Evaluator, otherwise: Evaluator | None = None
) -> Collection:
    context = focus if focus else env.this
    if truthy(condition(context, Env(context, env.index, env.resource, env.root_resource, env.context))):
        return then(context, env)
    return otherwise(context, env) if otherwise is not None else []


def _fn_of_type(focus: Collection, env: Env, type_name: str) -> Collection:
    return [item for item in focus if is_type(item, type_name)]


def _fn_is(focus: Collection, env: Env, type_name: str) -> Collection:
    if not focus:
        return []
    return [is_type(only(focus), type_name)]


def _fn_nodes_by_type(focus: Collection, env: Env, argument: Collection) -> Collection:
    type_name = _string_argument(argument, "nodesByType")
    return [
        node
        for item in focus
        if isinstance(item, Node)
        for node in item.self_and_descendants()
        if node.fhir_type == type_name
    ]


def _fn_nodes_by_name(focus: Collection, env: Env, argument: Collection) -> Collection:
    name = _string_argument(argument, "nodesByName")
    return [
        node
        for item in focus
        if isinstance(item, Node)
        for node in item.self_and_descendants()
        if node.name == name
    ]


def _fn_children(focus: Collection, env: Env) -> Collection:
    return [child for item in focus if isinstance(item, Node) for child in item.children]


def _fn_descendants(focus: Collection, env: Env) -> Collection:
    return [node for item in focus if isinstance(item, Node) for node in item.all_descendants()]


def _fn_extension(focus: Collection, env: Env, argument: Collection) -> Collection:
    url = _string_argument(argument, "extension")
    result: Collection = []
    for item in focus:
        if isinstance(item, Node):
            for child in item.children_named("extension"):
                url_node = child.first_child("url")
                if url_node is not None and url_node.value == url:
                    result.append(child)
    return result


def _fn_has_value(focus: Collection, env: Env) -> Collection:
    return [
        len(focus) == 1 and isinstance(focus[0], Node) and focus[0].primitive and focus[0].value is not None
    ]


def _fn_distinct(focus: Collection, env: Env) -> Collection:
    return union([], focus)


def _fn_trace(focus: Collection, env: Env, *arguments: Any) -> Collection:
    return focus


def _fn_not(focus: Collection, env: Env) -> Collection:
    value = boolean(focus)
    return [] if value is None else [not value]


def _fn_first(focus: Collection, env: Env) -> Collection:
    return focus[:1]


def _fn_last(focus: Collection, env: Env) -> Collection:
    return focus[-1:]


def _fn_tail(focus: Collection, env: Env) -> Collection:
    return focus[1:]


def _fn_skip(focus: Collection, env: Env, count: Collection) -> Collection:
    return focus[_integer_argument(count, "skip") :]


def _fn_take(focus: Collection, env: Env, count: Collection) -> Collection:
    return focus[: max(_integer_argument(count, "take"), 0)]


def _fn_single(focus: Collection, env: Env) -> Collection:
    if len(focus) > 1:
        raise FhirPathEvaluationError("single() on more than one item")
    return focus


def _fn_count(focus: Collection, env: Env) -> Collection:
    return [len(focus)]


def _fn_empty(focus: Collection, env: Env) -> Collection:
    return [not focus]


def _string_input(focus: Collection, name: str) -> str | None:
    if not focus:
        return None
    value = system_value(only(focus))
    if isinstance(value, FPDateTime | FPTime):
        return value.text
    if not isinstance(value, str):
        raise FhirPathEvaluationError(f"{name}() needs a string, got {type(value).__name__}")
    return value


def _string_function(name: str, operation: Callable[..., Item]) -> Callable[..., Collection]:
    def implementation(focus: Collection, env: Env, *arguments: Collection) -> Collection:
        text = _string_input(focus, name)
        if text is None:
            return []
        values = [single(argument) for argument in arguments]
        if any(value is None for value in values):
            return []
        return [operation(text, *values)]

    return implementation


def _substring(text: str, start: Any, length: Any = None) -> Item:
    if not isinstance(start, int) or start < 0 or start >= len(text):
        return None
    if length is None:
        return text[start:]
    return text[start : start + int(length)]


def _fn_substring(
    focus: Collection, env: Env, start: Collection, length: Collection | None = None
) -> Collection:
    text = _string_input(focus, "substring")
    begin = single(start)
    if text is None or begin is None:
        return []
    size = single(length) if length is not None else None
    result = _substring(text, begin, size)
    return [] if result is None else [result]


def _fn_to_string(focus: Collection, env: Env) -> Collection:
    if not focus:
        return []
    value = system_value(only(focus))
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, Node):
        return []
    return [str(value)]


def _fn_to_integer(focus: Collection, env: Env) -> Collection:
    if not focus:
        return []
    value = system_value(only(focus))
    if isinstance(value, bool):
        return [int(value)]
    if isinstance(value, int):
        return [value]
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return [int(value)]
    return []


def _fn_to_decimal(focus: Collection, env: Env) -> Collection:
    if not focus:
        return []
    value = system_value(only(focus))
    if isinstance(value, bool):
        return [Decimal(int(value))]
    try:
        return [Decimal(str(value))] if isinstance(value, int | Decimal | str) else []
    except InvalidOperation:
        return []


def _math_function(operation: Callable[[Decimal], Any]) -> Callable[..., Collection]:
    def implementation(focus: Collection, env: Env) -> Collection:
        if not focus:
            return []
        value = system_value(only(focus))
        if not is_number(value):
            raise FhirPathEvaluationError("a math function needs a number")
        return [operation(Decimal(value))]

    return implementation


def _fn_round(focus: Collection, env: Env, precision: Collection | None = None) -> Collection:
    if not focus:
        return []
    value = system_value(only(focus))
    if not is_number(value):
        raise FhirPathEvaluationError("round() needs a number")
    places = _integer_argument(precision, "round") if precision is not None else 0
    return [Decimal(value).quantize(Decimal(1).scaleb(-places))]


def _fn_now(focus: Collection, env: Env) -> Collection:
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    parsed = FPDateTime.parse(now)
    return [parsed] if parsed else []


def _fn_today(focus: Collection, env: Env) -> Collection:
    parsed = FPDateTime.parse(datetime.now(UTC).date().isoformat())
    return [parsed] if parsed else []


def _string_argument(argument: Collection, name: str) -> str:
    value = single(argument)
    if not isinstance(value, str):
        raise FhirPathEvaluationError(f"{name}() needs a string argument")
    return value


def _integer_argument(argument: Collection | None, name: str) -> int:
    value = single(argument or [])
    if not isinstance(value, int) or isinstance(value, bool):
        raise FhirPathEvaluationError(f"{name}() needs an integer argument")
    return value


def _matches(text: str, pattern: str) -> bool:
    return re.search(pattern, text, flags=re.DOTALL) is not None


def _replace_matches(text: str, pattern: str, substitution: str) -> str:
    python_substitution = re.sub(
        r"\$\{(\w+)\}|\$(\d+)", lambda m: f"\\g<{m.group(1) or m.group(2)}>", substitution
    )
    python_pattern = re.sub(r"\(\?<(\w+)>", r"(?P<\1>", pattern)
    return re.sub(python_pattern, python_substitution, text)


FUNCTIONS: dict[str, Function] = {
    "where": Function(_fn_where, (1,), lambdas=(0,)),
    "select": Function(_fn_select, (1,), lambdas=(0,)),
    "exists": Function(_fn_exists, (0, 1), lambdas=(0,)),
    "all": Function(_fn_all, (1,), lambdas=(0,)),
    "iif": Function(_fn_iif, (2, 3), lambdas=(0, 1, 2)),
    "ofType": Function(_fn_of_type, (1,), type_args=(0,)),
    "as": Function(_fn_of_type, (1,), type_args=(0,)),
    "is": Function(_fn_is, (1,), type_args=(0,)),
    "nodesByType": Function(_fn_nodes_by_type, (1,)),
    "nodesByName": Function(_fn_nodes_by_name, (1,)),
    "children": Function(_fn_children, (0,)),
    "descendants": Function(_fn_descendants, (0,)),
    "extension": Function(_fn_extension, (1,)),
    "hasValue": Function(_fn_has_value, (0,)),
    "distinct": Function(_fn_distinct, (0,)),
    "trace": Function(_fn_trace, (1, 2)),
    "not": Function(_fn_not, (0,)),
    "empty": Function(_fn_empty, (0,)),
    "count": Function(_fn_count, (0,)),
    "first": Function(_fn_first, (0,)),
    "last": Function(_fn_last, (0,)),
    "tail": Function(_fn_tail, (0,)),
    "skip": Function(_fn_skip, (1,)),
    "take": Function(_fn_take, (1,)),
    "single": Function(_fn_single, (0,)),
    "startsWith": Function(_string_function("startsWith", lambda s, p: s.startswith(p)), (1,)),
    "endsWith": Function(_string_function("endsWith", lambda s, p: s.endswith(p)), (1,)),
    "contains": Function(_string_function("contains", lambda s, p: p in s), (1,)),
    "upper": Function(_string_function("upper", str.upper), (0,)),
    "lower": Function(_string_function("lower", str.lower), (0,)),
    "trim": Function(_string_function("trim", str.strip), (0,)),
    "length": Function(_string_function("length", len), (0,)),
    "indexOf": Function(_string_function("indexOf", lambda s, p: s.find(p)), (1,)),
    "replace": Function(_string_function("replace", lambda s, a, b: s.replace(a, b)), (2,)),
    "matches": Function(_string_function("matches", _matches), (1,)),
    "replaceMatches": Function(_string_function("replaceMatches", _replace_matches), (2,)),
    "substring": Function(_fn_substring, (1, 2)),
    "toString": Function(_fn_to_string, (0,)),
    "toInteger": Function(_fn_to_integer, (0,)),
    "toDecimal": Function(_fn_to_decimal, (0,)),
    "abs": Function(_math_function(abs), (0,)),
    "ceiling": Function(_math_function(math.ceil), (0,)),
    "floor": Function(_math_function(math.floor), (0,)),
    "truncate": Function(_math_function(lambda d: int(d)), (0,)),
    "round": Function(_fn_round, (0, 1)),
    "now": Function(_fn_now, (0,)),
    "today": Function(_fn_today, (0,)),
}
