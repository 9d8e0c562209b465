"""What the FHIR searches this server answers (AuditEvent, the model outputs) share: the error that names
the parameter it refuses, and ``date``-type parameters on an instant. Plain Python.

A date parameter is ``[eq|ge|gt|le|lt]`` then a FHIR date or dateTime (see ``dates``); ``eq``, the default,
means within the value's precision (``eq2026-03`` is all of March). Against an instant each prefix is an
inclusive lower or an exclusive upper bound, and repeated values must all hold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from clinical_ai.fhir.dates import FhirDateError, parse_fhir_date_time

DATE_PREFIXES = ("eq", "ge", "gt", "le", "lt")
MAX_DATE_LENGTH = 64
# Every prefix FHIR defines, so that an unsupported one is refused by name rather than as a bad date.
_PREFIXED = re.compile(r"(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb|ap)?(?P<value>.*)", re.DOTALL)


class SearchParameterError(ValueError):
    """A search parameter this server does not support or cannot read."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


# Longer values are refused: no identifier, code or date this server searches by comes near it.
MAX_VALUE_LENGTH = 256


def single_value(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The one value of search parameter ``name``, or None when absent. Refused: given twice, empty,
    longer than ``MAX_VALUE_LENGTH`` or holding a NUL (PostgreSQL text cannot hold one: the query would
    fail with a 500 rather than match nothing)."""
    values = params.get(name) or []
    if not values:
        return None
    if len(values) > 1:
        raise SearchParameterError(name, f"{name} may appear only once")
    value = values[0]
    if not value:
        raise SearchParameterError(name, f"{name} is empty")
    if len(value) > MAX_VALUE_LENGTH:
        raise SearchParameterError(name, f"{name} is longer than {MAX_VALUE_LENGTH} characters")
    if "\x00" in value:
        raise SearchParameterError(name, f"{name} contains a NUL character")
    return value


@dataclass(frozen=True)
class DateParameter:
    prefix: str  # one of DATE_PREFIXES
    start: datetime  # the [start, end) the value's precision covers, timezone-aware
    end: datetime


def date_parameter(parameter: str, value: str) -> DateParameter:
    """One value of the ``date``-type search parameter ``parameter``; raises ``SearchParameterError``."""
    match = _PREFIXED.fullmatch(
        value.replace(" ", "+")
    )  # an unencoded '+' in a query string arrives as a space
    if match is None:  # the pattern takes any text; kept for the type checker
        raise SearchParameterError(parameter, f"{parameter} {value!r} is not a FHIR date or dateTime")
    prefix = match["prefix"] or "eq"
    if prefix not in DATE_PREFIXES:
        raise SearchParameterError(
            parameter, f"the date prefix {prefix!r} is not supported ({', '.join(DATE_PREFIXES)})"
        )
    try:
        parsed = parse_fhir_date_time(match["value"])
        end = parsed.end()
    except FhirDateError as error:
        raise SearchParameterError(parameter, f"{parameter}: {error}") from None
    return DateParameter(prefix=prefix, start=parsed.start, end=end)


def instant_bounds(parameter: str, values: Sequence[str]) -> tuple[datetime | None, datetime | None]:
    """The inclusive lower and exclusive upper bound on an instant that all ``values`` of ``parameter``
    allow together (None: unbounded)."""
    lower: datetime | None = None
    upper: datetime | None = None
    for value in values:
        if not value or len(value) > MAX_DATE_LENGTH:
            raise SearchParameterError(parameter, f"{parameter} is empty or too long")
        date = date_parameter(parameter, value)
        low, high = {
            "eq": (date.start, date.end),
            "ge": (date.start, None),
            "gt": (date.end, None),
            "le": (None, date.end),
            "lt": (None, date.start),
        }[date.prefix]
        if low is not None:
            lower = low if lower is None else max(lower, low)
        if high is not None:
            upper = high if upper is None else min(upper, high)
    return lower, upper
