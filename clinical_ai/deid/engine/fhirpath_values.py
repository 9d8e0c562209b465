"""FHIRPath system values (date/time, quantity) and the comparisons the rule language needs.

Date/time ordering follows the reference anonymizer (Firely .NET): a partial value is compared as if
its missing parts were at their start (``2002`` orders like ``2002-01-01T00:00:00``), so a generalize case
``$this >= @1990-01-01T00:00:00Z`` matches a year-only dateTime. Equality still needs equal precision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from clinical_ai.deid.engine import fhir_types
from clinical_ai.deid.engine.nodes import Node, to_json

_DATETIME_RE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?)?)?)?)?"
    r"T?(?P<tz>Z|[+-]\d{2}:\d{2})?$"
)
_TIME_RE = re.compile(
    r"^T?(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?)?$"
)


class FhirPathEvaluationError(Exception):
    """An expression cannot be evaluated on this data (type mismatch, bad argument, ...)."""


@dataclass(frozen=True, slots=True)
class FPDateTime:
    """A FHIRPath Date or DateTime with its precision (number of parts given: 1=year .. 7=fraction)."""

    text: str
    parts: tuple[int, ...]
    precision: int
    tz_minutes: int | None
    has_time: bool

    @classmethod
    def parse(cls, text: str) -> FPDateTime | None:
        match = _DATETIME_RE.match(text.strip())
        if match is None:
            return None
        names = ("year", "month", "day", "hour", "minute", "second")
        parts: list[int] = []
        for name in names:
            group = match.group(name)
            if group is None:
                break
            parts.append(int(group))
        fraction = match.group("fraction")
        precision = len(parts) + (1 if fraction else 0)
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        tz = match.group("tz")
        tz_minutes: int | None = None
        if tz == "Z":
            tz_minutes = 0
        elif tz:
            sign = -1 if tz[0] == "-" else 1
            tz_minutes = sign * (int(tz[1:3]) * 60 + int(tz[4:6]))
        return cls(text, (*parts, micro), precision, tz_minutes, len(parts) > 3)

    def as_datetime(self) -> datetime:
        """Missing parts at their start; no time zone means UTC."""
        year, *rest = self.parts[:-1]
        fields = [*rest, *[1, 1, 0, 0, 0][len(rest) :]]
        month, day, hour, minute, second = fields[:5]
        offset = timezone(timedelta(minutes=self.tz_minutes)) if self.tz_minutes is not None else UTC
        try:
            return datetime(year, month, day, hour, minute, second, self.parts[-1], tzinfo=offset)
        except ValueError as error:
            raise FhirPathEvaluationError("invalid date/time value") from error

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class FPTime:
    text: str
    seconds: Decimal

    @classmethod
    def parse(cls, text: str) -> FPTime | None:
        match = _TIME_RE.match(text.strip())
        if match is None:
            return None
        hour = int(match.group("hour"))
        minute = int(match.group("minute") or 0)
        second = Decimal(match.group("second") or 0)
        if match.group("fraction"):
            second += Decimal("0." + match.group("fraction"))
        return cls(text.lstrip("T"), hour * 3600 + minute * 60 + second)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class FPQuantity:
    value: Decimal
    unit: str

    def __str__(self) -> str:
        return f"{self.value} '{self.unit}'"


Item = Any  # Node | str | int | Decimal | bool | FPDateTime | FPTime | FPQuantity
Collection = list[Item]

_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})
_STRINGISH_TYPES = frozenset(
    {"string", "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid", "base64Binary", "xhtml"}
)
_QUANTITY_TYPES = frozenset(
    {"Quantity", "Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"}
)


def system_value(item: Item) -> Item:
    """The FHIRPath system value of an item: primitives of nodes become str/int/Decimal/bool/date."""
    if not isinstance(item, Node):
        if isinstance(item, float):
            return Decimal(str(item))
        return item
    if not item.primitive:
        if item.fhir_type in _QUANTITY_TYPES:
            value_node = item.first_child("value")
            code_node = item.first_child("code") or item.first_child("unit")
            if value_node is not None and value_node.value is not None:
                unit = str(code_node.value) if code_node is not None and code_node.value is not None else "1"
                return FPQuantity(to_decimal(value_node.value), unit)
        return item
    value = item.value
    if value is None:
        return None
    fhir_type = item.fhir_type
    if fhir_type in ("date", "dateTime", "instant") and isinstance(value, str):
        parsed = FPDateTime.parse(value)
        return parsed if parsed is not None else value
    if fhir_type == "time" and isinstance(value, str):
        parsed_time = FPTime.parse(value)
        return parsed_time if parsed_time is not None else value
    if fhir_type == "decimal" and not isinstance(value, bool) and isinstance(value, int | float | str):
        return to_decimal(value)
    if fhir_type in _INTEGER_TYPES and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    return value


def to_decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation as error:
        raise FhirPathEvaluationError("not a number") from error


def is_number(value: Any) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def values_equal(left: Item, right: Item) -> bool | None:
    """FHIRPath ``=`` on two single items; None when the answer is unknown (different precisions)."""
    a, b = system_value(left), system_value(right)
    if isinstance(a, Node) or isinstance(b, Node):
        if isinstance(a, Node) and isinstance(b, Node):
            return a is b or to_json(a) == to_json(b)
        return False
    if isinstance(a, FPDateTime) and isinstance(b, str):
        b = FPDateTime.parse(b) or b
    if isinstance(b, FPDateTime) and isinstance(a, str):
        a = FPDateTime.parse(a) or a
    if isinstance(a, FPDateTime) and isinstance(b, FPDateTime):
        if a.precision != b.precision:
            return None
        return a.as_datetime() == b.as_datetime()
    if isinstance(a, FPTime) and isinstance(b, FPTime):
        return a.seconds == b.seconds
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return Decimal(a) == Decimal(b)
    if isinstance(a, FPQuantity) and isinstance(b, FPQuantity):
        return a.unit == b.unit and a.value == b.value
    if type(a) is not type(b):
        return False
    result: bool = a == b
    return result


def values_equivalent(left: Item, right: Item) -> bool:
    """FHIRPath ``~``: strings case- and whitespace-insensitive, dates at the lower precision."""
    a, b = system_value(left), system_value(right)
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.lower().split()) == " ".join(b.lower().split())
    if isinstance(a, FPDateTime) and isinstance(b, FPDateTime):
        precision = min(a.precision, b.precision)
        return a.parts[: min(precision, 6)] == b.parts[: min(precision, 6)]
    return bool(values_equal(a, b))


def compare(left: Item, right: Item) -> int:
    """-1/0/1 ordering of two single items; raises on types that cannot be ordered together."""
    a, b = system_value(left), system_value(right)
    if isinstance(a, FPDateTime) and isinstance(b, str):
        b = FPDateTime.parse(b) or b
    if isinstance(b, FPDateTime) and isinstance(a, str):
        a = FPDateTime.parse(a) or a
    if is_number(a) and is_number(b):
        da, db = Decimal(a), Decimal(b)
    elif isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    elif isinstance(a, FPDateTime) and isinstance(b, FPDateTime):
        xa, xb = a.as_datetime(), b.as_datetime()
        return (xa > xb) - (xa < xb)
    elif isinstance(a, FPTime) and isinstance(b, FPTime):
        da, db = a.seconds, b.seconds
    elif isinstance(a, FPQuantity) and isinstance(b, FPQuantity) and a.unit == b.unit:
        da, db = a.value, b.value
    else:
        raise FhirPathEvaluationError(f"cannot compare {_describe(a)} with {_describe(b)}")
    return (da > db) - (da < db)


def _describe(value: Any) -> str:
    if isinstance(value, Node):
        return f"a {value.fhir_type or 'element'} node"
    return type(value).__name__


def to_output_value(item: Item) -> Any:
    """A FHIRPath result item as a JSON primitive to store in a node."""
    value = system_value(item)
    if isinstance(value, FPDateTime | FPTime):
        return value.text
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        integral = isinstance(exponent, int) and exponent >= 0
        return int(value) if integral else float(value)
    if isinstance(value, FPQuantity):
        return str(value)
    if isinstance(value, Node):
        raise FhirPathEvaluationError("a replacement expression must give a primitive value")
    return value


# --- collections -----------------------------------------------------------------------------------


def only(collection: Collection) -> Item:
    if len(collection) != 1:
        raise FhirPathEvaluationError(f"expected a single item, got {len(collection)}")
    return collection[0]


def single(collection: Collection) -> Item:
    """The single system value of a collection, None for an empty one."""
    if not collection:
        return None
    return system_value(only(collection))


def boolean(collection: Collection) -> bool | None:
    if not collection:
        return None
    value = system_value(only(collection))
    if isinstance(value, bool):
        return value
    return True


def truthy(result: Collection) -> bool:
    if len(result) != 1:
        return False
    value = system_value(result[0])
    return value is True or not isinstance(value, bool)


_SYSTEM_TYPES: dict[str, tuple[type, ...]] = {
    "String": (str,),
    "Boolean": (bool,),
    "Integer": (int,),
    "Decimal": (Decimal,),
    "Date": (FPDateTime,),
    "DateTime": (FPDateTime,),
    "Time": (FPTime,),
    "Quantity": (FPQuantity,),
}


def is_type(item: Item, type_name: str) -> bool:
    name = type_name[7:] if type_name.startswith("System.") else type_name
    if isinstance(item, Node):
        return fhir_types.type_is(item.fhir_type, name, is_resource=item.is_resource)
    wanted = _SYSTEM_TYPES.get(name)
    if wanted is None:
        return False
    if isinstance(item, bool):
        return name == "Boolean"
    return isinstance(item, wanted)
