"""Reading values out of de-identified FHIR R4 Observations: codes, times, quantities and units. No Django.

Vital signs arrive in several shapes: one Observation per value (heart rate 8867-4), a panel whose values
sit in ``component`` (systolic 8480-6 inside blood pressure 85354-9), or a value riding along with another
one (the inhaled oxygen flow 3151-8 inside a pulse oximetry Observation). ``readings`` finds a code in all of
them, so a model asks for "systolic blood pressure" and never for a panel.

Codes are written ``"system|code"`` (``"http://loinc.org|8480-6"``), as in model manifests. Times are always
timezone-aware; units are converted explicitly and an unrecognised unit gives ``None``, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from clinical_ai.fhir.dates import fhir_datetime_or_none
from clinical_ai.inference.engine.types import SourceResource

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

# A value recorded in error or an order never carried out is not an observation of the patient.
IGNORED_STATUSES = frozenset({"entered-in-error", "cancelled"})

# --- times ----------------------------------------------------------------------------------------


def observation_effective(resource: Mapping[str, Any]) -> datetime | None:
    """When the observation applies to the patient.

    ``effectiveDateTime``, then ``effectivePeriod`` (its end, the latest moment it describes, else its start),
    then ``effectiveInstant``; ``issued`` (when it was released) only when no effective time is recorded.
    """
    when = fhir_datetime_or_none(resource.get("effectiveDateTime"))
    if when is not None:
        return when
    period = resource.get("effectivePeriod")
    if isinstance(period, Mapping):
        when = fhir_datetime_or_none(period.get("end")) or fhir_datetime_or_none(period.get("start"))
        if when is not None:
            return when
    return fhir_datetime_or_none(resource.get("effectiveInstant")) or fhir_datetime_or_none(
        resource.get("issued")
    )


def observation_usable(resource: Mapping[str, Any]) -> bool:
    """An Observation whose status does not withdraw it (entered-in-error, cancelled)."""
    return resource.get("resourceType") == "Observation" and resource.get("status") not in IGNORED_STATUSES


# --- codes ----------------------------------------------------------------------------------------


def concept_codes(concept: Any) -> list[str]:
    """The ``"system|code"`` keys of a CodeableConcept's codings, in order."""
    if not isinstance(concept, Mapping):
        return []
    keys: list[str] = []
    for coding in concept.get("coding") or ():
        if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
            keys.append(f"{coding.get('system') or ''}|{coding['code']}")
    return keys


def concept_texts(concept: Any) -> list[str]:
    """The human words of a CodeableConcept: each coding's display, then its ``text``."""
    if not isinstance(concept, Mapping):
        return []
    texts = [
        coding["display"]
        for coding in concept.get("coding") or ()
        if isinstance(coding, Mapping) and isinstance(coding.get("display"), str)
    ]
    if isinstance(concept.get("text"), str):
        texts.append(concept["text"])
    return texts


def first_match(concept: Any, codes: Collection[str]) -> str | None:
    """The first of the concept's codes that is in ``codes``."""
    return next((key for key in concept_codes(concept) if key in codes), None)


# --- values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quantity:
    """A number with its unit as sent: ``code`` is the UCUM code when there is one, ``unit`` the label."""

    value: float
    unit: str | None = None
    code: str | None = None

    @property
    def unit_label(self) -> str | None:
        return self.unit or self.code


@dataclass(frozen=True)
class Reading:
    """One coded value from an Observation or from one of its components.

    ``element`` is the dict that holds ``value[x]``: the Observation itself or the matching component.
    ``effective`` is the Observation's (components share it).
    """

    source: SourceResource
    code: str
    element: Mapping[str, Any]
    effective: datetime | None

    @property
    def ref(self) -> str:
        return self.source.ref

    @property
    def value_absent(self) -> bool:
        return "dataAbsentReason" in self.element

    @property
    def quantity(self) -> Quantity | None:
        return element_quantity(self.element)

    @property
    def concept(self) -> Mapping[str, Any] | None:
        concept = self.element.get("valueCodeableConcept")
        return concept if isinstance(concept, Mapping) else None

    @property
    def string(self) -> str | None:
        text = self.element.get("valueString")
        return text if isinstance(text, str) else None

    @property
    def boolean(self) -> bool | None:
        flag = self.element.get("valueBoolean")
        return flag if isinstance(flag, bool) else None

    @property
    def has_value(self) -> bool:
        return any(key.startswith("value") for key in self.element)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def element_quantity(element: Mapping[str, Any]) -> Quantity | None:
    """``valueQuantity`` (or a unitless ``valueInteger``) of an Observation or a component."""
    quantity = element.get("valueQuantity")
    if isinstance(quantity, Mapping):
        value = _number(quantity.get("value"))
        if value is None:
            return None
        unit = quantity.get("unit")
        code = quantity.get("code")
        return Quantity(
            value=value,
            unit=unit if isinstance(unit, str) and unit else None,
            code=code if isinstance(code, str) and code else None,
        )
    integer = element.get("valueInteger")
    if isinstance(integer, int) and not isinstance(integer, bool):
        return Quantity(value=float(integer))
    return None


def readings(sources: Iterable[SourceResource], codes: Collection[str]) -> list[Reading]:
    """Every value coded with one of ``codes``, at the top level or in a component, of the Observations
    that are not entered-in-error or cancelled; in input order."""
    wanted = frozenset(codes)
    found: list[Reading] = []
    for source in sources:
        resource = source.resource
        if not observation_usable(resource):
            continue
        effective = observation_effective(resource)
        top = first_match(resource.get("code"), wanted)
        if top is not None:
            found.append(Reading(source=source, code=top, element=resource, effective=effective))
        for component in resource.get("component") or ():
            if not isinstance(component, Mapping):
                continue
            key = first_match(component.get("code"), wanted)
            if key is not None:
                found.append(Reading(source=source, code=key, element=component, effective=effective))
    return found


def latest_reading(candidates: Sequence[Reading]) -> Reading | None:
    """The reading with the latest effective time (undated ones never win); on a tie, the later in input."""
    dated = [
        (reading.effective, index, reading)
        for index, reading in enumerate(candidates)
        if reading.effective is not None
    ]
    if not dated:
        return None
    return max(dated, key=lambda item: (item[0], item[1]))[2]


# --- units ----------------------------------------------------------------------------------------


def _unit_keys(quantity: Quantity) -> list[str]:
    keys = []
    for label in (quantity.code, quantity.unit):
        if label:
            key = re.sub(r"\s+", " ", label.strip().lower())
            if key not in keys:
                keys.append(key)
    return keys


_CELSIUS = {"cel", "[degc]", "degc", "deg c", "°c", "c", "celsius", "degrees celsius", "degree celsius"}
_FAHRENHEIT = {"[degf]", "degf", "deg f", "°f", "f", "fahrenheit", "degrees fahrenheit", "degree fahrenheit"}
_KELVIN = {"k", "kelvin"}
_PERCENT = {"%", "percent", "per cent"}
_FRACTION = {"1", "{fraction}", "{ratio}", "fraction", "ratio"}
_MMHG = {"mm[hg]", "mmhg", "mm hg"}
_KPA = {"kpa"}
_LITRES_PER_MINUTE = {
    "l/min",
    "l/min.",
    "lpm",
    "l per min",
    "litres/min",
    "liters/min",
    "litre/min",
    "liter/min",
}
_MILLILITRES_PER_MINUTE = {"ml/min"}
_PER_MINUTE = {"/min", "min-1", "1/min", "per minute", "bpm", "beats per minute", "breaths per minute"}


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value))


def to_celsius(quantity: Quantity) -> float | None:
    """Degrees Celsius from Cel, degF ([degF], °F) or kelvin; ``None`` for any other or a missing unit."""
    for key in _unit_keys(quantity):
        if key in _CELSIUS:
            return quantity.value
        if key in _FAHRENHEIT:
            return float((_decimal(quantity.value) - 32) * 5 / 9)
        if key in _KELVIN:
            return float(_decimal(quantity.value) - Decimal("273.15"))
    return None


def to_percent(quantity: Quantity) -> float | None:
    """A percentage (SpO2, FiO2) from % or from a fraction (unit ``1``). Without a unit, a value up to 1 is
    read as a fraction (0.93 → 93) and a larger one as a percentage."""
    keys = _unit_keys(quantity)
    for key in keys:
        if key in _PERCENT:
            return quantity.value
        if key in _FRACTION:
            return float(_decimal(quantity.value) * 100)
    if not keys and 0 <= quantity.value <= 1:
        return float(_decimal(quantity.value) * 100)
    if not keys:
        return quantity.value
    return None


def to_mmhg(quantity: Quantity) -> float | None:
    """Millimetres of mercury from mm[Hg] or kPa; unitless values are taken as mm[Hg]."""
    keys = _unit_keys(quantity)
    for key in keys:
        if key in _MMHG:
            return quantity.value
        if key in _KPA:
            return float(_decimal(quantity.value) * Decimal("7.50062"))
    return quantity.value if not keys else None


def to_litres_per_minute(quantity: Quantity) -> float | None:
    """A gas flow in L/min from L/min or mL/min; unitless values are taken as L/min."""
    keys = _unit_keys(quantity)
    for key in keys:
        if key in _LITRES_PER_MINUTE:
            return quantity.value
        if key in _MILLILITRES_PER_MINUTE:
            return float(_decimal(quantity.value) / 1000)
    return quantity.value if not keys else None


def to_per_minute(quantity: Quantity) -> float | None:
    """A rate per minute (breaths, beats) from /min and its spellings; unitless values are per minute."""
    keys = _unit_keys(quantity)
    for key in keys:
        if key in _PER_MINUTE or re.fullmatch(r"(\{[a-z ]+\}|[a-z]+)/(min|minute)", key):
            return quantity.value
    return quantity.value if not keys else None


Converter = Callable[[Quantity], float | None]

# Units that convert by a factor alone, by dimension: each spelling (lower case, as ``_unit_keys`` gives it)
# with its size in the dimension's base unit. Only units of the same dimension convert: mmol/L to mg/dL needs
# the substance's molar mass, and mEq/L is not mmol/L for a divalent ion, so neither is ever attempted. Unlike
# the vital-sign converters above, a value without a unit gives ``None`` here: a bare 80 is no weight.
_LINEAR_UNITS: dict[str, tuple[str, Decimal]] = {}


def _linear(dimension: str, size: str, *spellings: str) -> None:
    for spelling in spellings:
        _LINEAR_UNITS[spelling.lower()] = (dimension, Decimal(size))


_linear("mass", "1000", "kg", "kilogram", "kilograms")
_linear("mass", "1", "g", "gram", "grams")
_linear("mass", "0.001", "mg")
_linear("mass", "0.000001", "ug", "mcg")
_linear("mass", "0.000000000001", "pg")
_linear("mass", "453.59237", "[lb_av]", "lb", "lbs", "pound", "pounds")
_linear("mass", "28.349523125", "[oz_av]", "oz")
_linear("length", "1", "m", "metre", "meter")
_linear("length", "0.01", "cm", "centimetre", "centimeter")
_linear("length", "0.001", "mm")
_linear("length", "0.0254", "[in_i]", "in", "inch", "inches")
_linear("length", "0.3048", "[ft_i]", "ft")
_linear("mass/area", "1", "kg/m2", "kg/m^2", "kg/(m2)", "kg/m²")
_linear("mass/volume", "1", "g/L")
_linear("mass/volume", "10", "g/dL")
_linear("mass/volume", "0.01", "mg/dL")
_linear("mass/volume", "0.001", "mg/L", "ug/mL")
_linear("mass/volume", "0.000001", "ug/L", "ng/mL")
_linear("mass/volume", "0.000000001", "ng/L", "pg/mL")
_linear("substance/volume", "1", "mol/L")
_linear("substance/volume", "0.001", "mmol/L")
_linear("substance/volume", "0.000001", "umol/L", "µmol/L")
_linear("substance/volume", "0.000000001", "nmol/L")
_linear("number/volume", "1000000000", "10*3/uL", "10*9/L", "10*3/mm3", "10^3/uL", "10^9/L")
_linear("number/volume", "1000000000000", "10*6/uL", "10*12/L", "10^6/uL", "10^12/L")
_linear("number/volume", "1000000", "/uL", "/mm3")
_linear("volume", "1", "L")
_linear("volume", "0.1", "dL")
_linear("volume", "0.001", "mL")
_linear("volume", "0.000000000000001", "fL")
_linear("volume/time", "1", "mL/min")
_linear("volume/time", "1000", "L/min")
_linear("volume/time/area", "1", "mL/min/{1.73_m2}", "mL/min/1.73m2", "mL/min/1.73 m2")
_linear("enzyme/volume", "1", "U/L")
_linear("time", "8766", "a", "year", "years", "yr")  # UCUM's year is the Julian year, 365.25 days
_linear("time", "730.5", "mo", "month", "months")  # and its month a twelfth of it
_linear("time", "168", "wk", "week", "weeks")
_linear("time", "24", "d", "day", "days")
_linear("time", "1", "h", "hour", "hours")


def _linear_converter(target: str) -> Converter:
    dimension, size = _LINEAR_UNITS[target.lower()]

    def to_target(quantity: Quantity) -> float | None:
        for key in _unit_keys(quantity):
            known = _LINEAR_UNITS.get(key)
            if known is not None and known[0] == dimension:
                if known[1] == size:
                    return quantity.value
                return float(_decimal(quantity.value) * known[1] / size)
            if known is not None:
                return None  # a unit of another dimension: never read as this one
        return None

    to_target.__name__ = f"to_{target}"
    to_target.__doc__ = (
        f"``quantity`` in {target} from a unit of the same dimension ({dimension}); else None."
    )
    return to_target


CONVERTERS: dict[str, Converter] = {
    "Cel": to_celsius,
    "%": to_percent,
    "mm[Hg]": to_mmhg,
    "L/min": to_litres_per_minute,
    "/min": to_per_minute,
    "{beats}/min": to_per_minute,
    "{breaths}/min": to_per_minute,
}
for _target in (
    "kg", "g", "mg", "[lb_av]",
    "cm", "m", "mm", "[in_i]",
    "kg/m2",
    "g/L", "g/dL", "mg/dL", "mg/L", "ug/L", "ng/mL", "pg/mL", "ng/L",
    "mmol/L", "umol/L", "nmol/L",
    "10*3/uL", "10*9/L", "10*6/uL", "10*12/L",
    "fL", "pg",
    "mL/min", "mL/min/{1.73_m2}",
    "U/L",
    "a", "mo", "wk", "d", "h",
):  # fmt: skip
    CONVERTERS[_target] = _linear_converter(_target)


def convert(quantity: Quantity, unit: str) -> float | None:
    """``quantity`` in the UCUM ``unit`` (one of ``CONVERTERS``), or ``None`` when its unit is not known."""
    try:
        converter = CONVERTERS[unit]
    except KeyError:
        raise ValueError(f"no conversion to {unit!r}") from None
    return converter(quantity)


def round_half_up(value: float, decimals: int) -> Decimal:
    """``value`` rounded as a chart is read (38.05 → 38.1), free of binary floating-point surprises."""
    try:
        return _decimal(value).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:  # pragma: no cover - finite floats always quantize
        raise ValueError(f"cannot round {value!r}") from exc
