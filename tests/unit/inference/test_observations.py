"""Reading FHIR Observations: codes in components, times, values and unit conversions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from clinical_ai.inference.engine.observations import (
    LOINC,
    SNOMED,
    Quantity,
    concept_codes,
    concept_texts,
    convert,
    element_quantity,
    latest_reading,
    observation_effective,
    observation_usable,
    readings,
    round_half_up,
    to_celsius,
    to_litres_per_minute,
    to_mmhg,
    to_per_minute,
    to_percent,
)
from clinical_ai.inference.engine.types import SourceResource

HEART_RATE = f"{LOINC}|8867-4"
SYSTOLIC = f"{LOINC}|8480-6"
FLOW = f"{LOINC}|3151-8"


def coded(code: str, system: str = LOINC, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def observation(
    code: str,
    value: float | None = None,
    unit: str | None = None,
    *,
    when: str | None = "2026-11-20T08:15:00+00:00",
    status: str = "final",
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "status": status, "code": coded(code), **extra}
    if when is not None:
        resource["effectiveDateTime"] = when
    if value is not None:
        resource["valueQuantity"] = {"value": value, **({"unit": unit} if unit else {})}
    return resource


def sources(*resources: dict[str, Any]) -> list[SourceResource]:
    return [SourceResource(ref=f"row-{i}", resource=r) for i, r in enumerate(resources)]


# --- times ----------------------------------------------------------------------------------------


def test_effective_time_precedence() -> None:
    at = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert observation_effective({"effectiveDateTime": "2026-11-20T08:00:00Z", "issued": "2026-11-21"}) == at
    period = {"effectivePeriod": {"start": "2026-11-20T07:00:00Z", "end": "2026-11-20T08:00:00Z"}}
    assert observation_effective(period) == at
    assert observation_effective({"effectivePeriod": {"start": "2026-11-20T08:00:00Z"}}) == at
    assert observation_effective({"effectiveInstant": "2026-11-20T08:00:00.000Z"}) == at
    assert observation_effective({"issued": "2026-11-20T08:00:00Z"}) == at
    assert observation_effective({"effectiveDateTime": "garbage", "issued": "2026-11-20T08:00:00Z"}) == at
    assert observation_effective({}) is None


@pytest.mark.parametrize(
    ("status", "usable"),
    [
        ("final", True),
        ("amended", True),
        ("preliminary", True),
        ("entered-in-error", False),
        ("cancelled", False),
    ],
)
def test_withdrawn_observations_are_not_usable(status: str, usable: bool) -> None:
    assert observation_usable({"resourceType": "Observation", "status": status}) is usable


def test_only_observations_are_usable() -> None:
    assert observation_usable({"resourceType": "Condition", "status": "final"}) is False


# --- codes and values -----------------------------------------------------------------------------


def test_concept_codes_and_texts() -> None:
    concept = {
        "coding": [
            {"system": SNOMED, "code": "248234008", "display": "Mentally alert"},
            {"code": "A"},
            "junk",
        ],
        "text": "Alert",
    }
    assert concept_codes(concept) == [f"{SNOMED}|248234008", "|A"]
    assert concept_texts(concept) == ["Mentally alert", "Alert"]
    assert concept_codes(None) == []
    assert concept_texts("Alert") == []


def test_element_quantity() -> None:
    assert element_quantity({"valueQuantity": {"value": 98, "unit": "mmHg", "code": "mm[Hg]"}}) == Quantity(
        98.0, "mmHg", "mm[Hg]"
    )
    assert element_quantity({"valueInteger": 3}) == Quantity(3.0)
    assert element_quantity({"valueQuantity": {"unit": "%"}}) is None
    assert element_quantity({"valueQuantity": {"value": True}}) is None
    assert element_quantity({"valueQuantity": {"value": "NaN"}}) is None
    assert element_quantity({"valueString": "98"}) is None


def test_readings_find_top_level_values() -> None:
    found = readings(sources(observation("8867-4", 70, "/min"), observation("9279-1", 16)), [HEART_RATE])
    assert [(r.ref, r.code, r.quantity) for r in found] == [("row-0", HEART_RATE, Quantity(70.0, "/min"))]
    assert found[0].effective == datetime(2026, 11, 20, 8, 15, tzinfo=UTC)


def test_readings_find_a_component_of_a_panel() -> None:
    panel = observation(
        "85354-9",
        component=[
            {"code": coded("8480-6"), "valueQuantity": {"value": 98, "unit": "mmHg", "code": "mm[Hg]"}},
            {"code": coded("8462-4"), "valueQuantity": {"value": 61, "unit": "mmHg", "code": "mm[Hg]"}},
        ],
    )
    found = readings(sources(panel), [SYSTOLIC])
    assert len(found) == 1
    assert found[0].code == SYSTOLIC
    assert found[0].quantity == Quantity(98.0, "mmHg", "mm[Hg]")
    assert found[0].effective == datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
    assert found[0].ref == "row-0"


def test_readings_find_the_oxygen_flow_inside_a_pulse_oximetry_observation() -> None:
    oximetry = observation(
        "59408-5",
        95,
        "%",
        component=[{"code": coded("3151-8"), "valueQuantity": {"value": 2, "unit": "L/min"}}],
    )
    assert [r.quantity for r in readings(sources(oximetry), [FLOW])] == [Quantity(2.0, "L/min")]


def test_readings_need_the_code_system_to_match() -> None:
    wrong_system = {"resourceType": "Observation", "status": "final", "code": coded("8867-4", "urn:local")}
    assert readings(sources(wrong_system), [HEART_RATE]) == []


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_readings_skip_withdrawn_observations(status: str) -> None:
    assert readings(sources(observation("8867-4", 70, status=status)), [HEART_RATE]) == []


def test_reading_value_shapes() -> None:
    absent = readings(sources(observation("8867-4", dataAbsentReason={"text": "x"})), [HEART_RATE])[0]
    assert absent.value_absent and absent.quantity is None and not absent.has_value
    answered = observation("67775-7", valueCodeableConcept=coded("248234008", SNOMED))
    reading = readings(sources(answered), [f"{LOINC}|67775-7"])[0]
    assert reading.concept == coded("248234008", SNOMED)
    assert reading.has_value and reading.string is None and reading.boolean is None
    flagged = readings(sources(observation("67775-7", valueBoolean=False)), [f"{LOINC}|67775-7"])[0]
    assert flagged.boolean is False
    text = readings(sources(observation("67775-7", valueString="Alert")), [f"{LOINC}|67775-7"])[0]
    assert text.string == "Alert"


def test_latest_reading_wins() -> None:
    found = readings(
        sources(
            observation("8867-4", 120, when="2026-11-20T09:00:00Z"),
            observation("8867-4", 70, when="2026-11-20T08:00:00Z"),
            observation("8867-4", 200, when=None),
        ),
        [HEART_RATE],
    )
    latest = latest_reading(found)
    assert latest is not None and latest.quantity == Quantity(120.0)


def test_latest_reading_breaks_ties_by_input_order_and_ignores_undated() -> None:
    same = "2026-11-20T08:00:00Z"
    found = readings(
        sources(observation("8867-4", 70, when=same), observation("8867-4", 72, when=same)), [HEART_RATE]
    )
    latest = latest_reading(found)
    assert latest is not None and latest.ref == "row-1"
    assert latest_reading(readings(sources(observation("8867-4", 70, when=None)), [HEART_RATE])) is None
    assert latest_reading([]) is None


# --- units ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "celsius"),
    [
        (Quantity(101.3, "degF", "[degF]"), 38.5),
        (Quantity(101.3, "°F"), 38.5),
        (Quantity(98.6, None, "[degF]"), 37.0),
        (Quantity(32.0, "F"), 0.0),
        (Quantity(37.2, "Cel"), 37.2),
        (Quantity(37.2, "°C"), 37.2),
        (Quantity(37.2, None, "Cel"), 37.2),
        (Quantity(310.15, "K"), 37.0),
    ],
)
def test_to_celsius(quantity: Quantity, celsius: float) -> None:
    converted = to_celsius(quantity)
    assert converted is not None
    assert converted == pytest.approx(celsius, abs=1e-9)


@pytest.mark.parametrize("quantity", [Quantity(37.0), Quantity(37.0, "mmHg"), Quantity(37.0, "degrees")])
def test_to_celsius_never_guesses_a_unit(quantity: Quantity) -> None:
    assert to_celsius(quantity) is None


@pytest.mark.parametrize(
    ("quantity", "percent"),
    [
        (Quantity(93.0, "%"), 93.0),
        (Quantity(0.93), 93.0),
        (Quantity(0.93, "1"), 93.0),
        (Quantity(0.21, None, "1"), 21.0),
        (Quantity(1.0), 100.0),
        (Quantity(95.0), 95.0),
    ],
)
def test_to_percent(quantity: Quantity, percent: float) -> None:
    assert to_percent(quantity) == percent


def test_to_percent_refuses_unknown_units() -> None:
    assert to_percent(Quantity(93.0, "mmHg")) is None


def test_other_conversions() -> None:
    assert to_mmhg(Quantity(98.0, "mmHg", "mm[Hg]")) == 98.0
    assert to_mmhg(Quantity(13.3, "kPa")) == pytest.approx(99.76, abs=0.01)
    assert to_mmhg(Quantity(98.0)) == 98.0
    assert to_mmhg(Quantity(98.0, "cmH2O")) is None
    assert to_litres_per_minute(Quantity(2.0, "L/min")) == 2.0
    assert to_litres_per_minute(Quantity(500.0, "mL/min")) == 0.5
    assert to_litres_per_minute(Quantity(2.0)) == 2.0
    assert to_litres_per_minute(Quantity(2.0, "%")) is None
    for unit in ("/min", "{breaths}/min", "{beats}/min", "beats/minute", "breaths/minute", "bpm", None):
        assert to_per_minute(Quantity(16.0, unit)) == 16.0
    assert to_per_minute(Quantity(16.0, "mmHg")) is None


def test_convert_dispatches_by_ucum_unit() -> None:
    assert convert(Quantity(101.3, "degF"), "Cel") == pytest.approx(38.5)
    assert convert(Quantity(0.93), "%") == 93.0
    with pytest.raises(ValueError, match="no conversion"):
        convert(Quantity(1.0), "[furlong_i]")


@pytest.mark.parametrize(
    ("value", "decimals", "rounded"),
    [
        (38.05, 1, "38.1"),
        (36.04, 1, "36.0"),
        (20.5, 0, "21"),
        (20.49, 0, "20"),
        (38.499999999999996, 1, "38.5"),
    ],
)
def test_round_half_up(value: float, decimals: int, rounded: str) -> None:
    assert round_half_up(value, decimals) == Decimal(rounded)
