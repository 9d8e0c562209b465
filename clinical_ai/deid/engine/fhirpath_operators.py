"""FHIRPath operators on collections: equality, ordering, membership, boolean logic, arithmetic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clinical_ai.deid.engine.fhirpath_values import (
    Collection,
    FhirPathEvaluationError,
    boolean,
    compare,
    is_number,
    only,
    single,
    to_decimal,
    values_equal,
    values_equivalent,
)
from clinical_ai.deid.engine.nodes import Node


def _equals(left: Collection, right: Collection) -> Collection:
    if not left or not right:
        return []
    if len(left) != len(right):
        return [False]
    answers = [values_equal(a, b) for a, b in zip(left, right, strict=True)]
    if any(answer is False for answer in answers):
        return [False]
    if any(answer is None for answer in answers):
        return []
    return [True]


def _not_equals(left: Collection, right: Collection) -> Collection:
    result = _equals(left, right)
    return [not result[0]] if result else []


def _equivalent(left: Collection, right: Collection) -> Collection:
    if not left and not right:
        return [True]
    if len(left) != len(right):
        return [False]
    return [all(any(values_equivalent(a, b) for b in right) for a in left)]


def _not_equivalent(left: Collection, right: Collection) -> Collection:
    return [not _equivalent(left, right)[0]]


def _ordering(test: Callable[[int], bool]) -> Callable[[Collection, Collection], Collection]:
    def operator(left: Collection, right: Collection) -> Collection:
        if not left or not right:
            return []
        return [test(compare(only(left), only(right)))]

    return operator


def union(left: Collection, right: Collection) -> Collection:
    result: Collection = []
    for item in [*left, *right]:
        if isinstance(item, Node):
            if not any(existing is item for existing in result):
                result.append(item)
        elif not any(not isinstance(existing, Node) and values_equal(existing, item) for existing in result):
            result.append(item)
    return result


def _in(left: Collection, right: Collection) -> Collection:
    if not left:
        return []
    item = only(left)
    return [any(values_equal(item, other) is True for other in right)]


def _contains(left: Collection, right: Collection) -> Collection:
    return _in(right, left)


def _and(left: Collection, right: Collection) -> Collection:
    a, b = boolean(left), boolean(right)
    if a is False or b is False:
        return [False]
    if a is None or b is None:
        return []
    return [True]


def _or(left: Collection, right: Collection) -> Collection:
    a, b = boolean(left), boolean(right)
    if a is True or b is True:
        return [True]
    if a is None or b is None:
        return []
    return [False]


def _xor(left: Collection, right: Collection) -> Collection:
    a, b = boolean(left), boolean(right)
    if a is None or b is None:
        return []
    return [a != b]


def _implies(left: Collection, right: Collection) -> Collection:
    a, b = boolean(left), boolean(right)
    if a is False or b is True:
        return [True]
    if a is None or b is None:
        return []
    return [False]


def _arithmetic(operator: str) -> Callable[[Collection, Collection], Collection]:
    def evaluate(left: Collection, right: Collection) -> Collection:
        if operator == "&":
            a_text = single(left)
            b_text = single(right)
            return [f"{'' if a_text is None else a_text}{'' if b_text is None else b_text}"]
        a, b = single(left), single(right)
        if a is None or b is None:
            return []
        if operator == "+" and isinstance(a, str) and isinstance(b, str):
            return [a + b]
        if not (is_number(a) and is_number(b)):
            raise FhirPathEvaluationError(f"operator {operator} needs numbers (or strings for +)")
        return _number_arithmetic(operator, a, b)

    return evaluate


def _number_arithmetic(operator: str, a: Any, b: Any) -> Collection:
    both_int = isinstance(a, int) and isinstance(b, int)
    if operator == "+":
        return [a + b if both_int else to_decimal(a) + to_decimal(b)]
    if operator == "-":
        return [a - b if both_int else to_decimal(a) - to_decimal(b)]
    if operator == "*":
        return [a * b if both_int else to_decimal(a) * to_decimal(b)]
    if b == 0:
        return []
    if operator == "/":
        return [to_decimal(a) / to_decimal(b)]
    if operator == "div":
        quotient = to_decimal(a) / to_decimal(b)
        return [int(quotient)]
    if operator == "mod":
        remainder = to_decimal(a) % to_decimal(b)
        return [int(remainder) if both_int else remainder]
    raise FhirPathEvaluationError(f"unsupported operator {operator}")


OPERATORS: dict[str, Callable[[Collection, Collection], Collection]] = {
    "=": _equals,
    "!=": _not_equals,
    "~": _equivalent,
    "!~": _not_equivalent,
    "<": _ordering(lambda c: c < 0),
    "<=": _ordering(lambda c: c <= 0),
    ">": _ordering(lambda c: c > 0),
    ">=": _ordering(lambda c: c >= 0),
    "|": union,
    "in": _in,
    "contains": _contains,
    "and": _and,
    "or": _or,
    "xor": _xor,
    "implies": _implies,
    "+": _arithmetic("+"),
    "-": _arithmetic("-"),
    "*": _arithmetic("*"),
    "/": _arithmetic("/"),
    "div": _arithmetic("div"),
    "mod": _arithmetic("mod"),
    "&": _arithmetic("&"),
}
