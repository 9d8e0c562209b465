"""Reading one NEWS2 parameter from FHIR Observations: units converted, answers recognised, the latest chosen.

A reading that cannot be scored (no value, an unknown unit, an unrecognised answer, an implausible number)
is kept with the reason, never guessed: the parameter is then missing, not normal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from clinical_ai.inference.builtin.news2.chart import (
    AcvpuParameter,
    Answer,
    NumericParameter,
    OxygenParameter,
    Parameter,
    answer_text_normalise,
)
from clinical_ai.inference.engine.observations import (
    Quantity,
    Reading,
    concept_codes,
    concept_texts,
    convert,
    readings,
    round_half_up,
    to_litres_per_minute,
    to_percent,
)
from clinical_ai.inference.engine.types import SourceResource


@dataclass(frozen=True)
class Observed:
    """One reading interpreted for one parameter: a scored value, or the reason it cannot be scored."""

    reading: Reading
    score: int | None = None
    value: float | int | str | None = None
    unit: str | None = None
    feature: float | int | None = None
    original_value: float | str | None = None
    original_unit: str | None = None
    range: str | None = None
    reason: str | None = None


def _short(text: str | None) -> str:
    return (text or "")[:24]


def _unusable(reading: Reading, reason: str, quantity: Quantity | None = None) -> Observed:
    return Observed(
        reading=reading,
        reason=reason,
        original_value=quantity.value if quantity else None,
        original_unit=quantity.unit_label if quantity else None,
    )


def _read_numeric(parameter: NumericParameter, reading: Reading) -> Observed:
    quantity = None if reading.value_absent else reading.quantity
    if quantity is None:
        return _unusable(reading, "no numeric value recorded")
    converted = convert(quantity, parameter.unit)
    if converted is None:
        return _unusable(reading, f"unit {_short(quantity.unit_label)!r} not recognised", quantity)
    low, high = parameter.plausible
    if not low <= converted <= high:
        return _unusable(
            reading, f"value outside the plausible range {low:g} to {high:g} {parameter.unit}", quantity
        )
    rounded = round_half_up(converted, parameter.decimals)
    band = next(band for band in parameter.bands if band.contains(rounded))
    value: float | int = int(rounded) if parameter.decimals == 0 else float(rounded)
    return Observed(
        reading=reading,
        score=band.score,
        value=value,
        unit=parameter.unit,
        feature=value,
        original_value=quantity.value,
        original_unit=quantity.unit_label,
        range=band.label,
    )


def _oxygen_observed(parameter: OxygenParameter, reading: Reading, on_oxygen: bool) -> Observed:
    quantity = reading.quantity
    original: float | str | None
    if quantity is not None:
        original = quantity.value
    elif reading.concept is not None:
        original = next(iter(concept_texts(reading.concept) or concept_codes(reading.concept)), None)
    elif reading.boolean is not None:
        original = str(reading.boolean).lower()
    else:
        original = reading.code  # a code-only observation: the code is the statement
    state = "oxygen" if on_oxygen else "air"
    return Observed(
        reading=reading,
        score=parameter.scores[state],
        value=state,
        feature=1 if on_oxygen else 0,
        original_value=original,
        original_unit=quantity.unit_label if quantity else None,
    )


def _above_room_air(parameter: OxygenParameter, percent: float) -> bool:
    return round_half_up(percent, 1) > parameter.room_air_percent


def _read_oxygen(parameter: OxygenParameter, reading: Reading) -> Observed:
    if reading.value_absent:
        return _unusable(reading, "value absent")
    quantity = reading.quantity
    answers = set(concept_codes(reading.concept))
    if answers & parameter.oxygen_answers:
        return _oxygen_observed(parameter, reading, True)
    if answers & parameter.air_answers:
        return _oxygen_observed(parameter, reading, False)
    if reading.code in parameter.flow_codes:
        flow = to_litres_per_minute(quantity) if quantity else None
        if quantity is None or flow is None or flow < 0:
            return _unusable(reading, "oxygen flow rate not readable in L/min", quantity)
        return _oxygen_observed(parameter, reading, flow > 0)
    if reading.code in parameter.concentration_codes:
        percent = to_percent(quantity) if quantity else None
        if quantity is None or percent is None or not 0 <= percent <= 100:
            return _unusable(reading, "inspired oxygen not readable as a percentage", quantity)
        return _oxygen_observed(parameter, reading, _above_room_air(parameter, percent))
    # A code that itself says "breathing room air" or "patient on oxygen", perhaps answered yes or no.
    says_oxygen = reading.code in parameter.oxygen_codes
    if reading.boolean is not None:
        return _oxygen_observed(parameter, reading, says_oxygen == reading.boolean)
    if answers & parameter.yes_answers:
        return _oxygen_observed(parameter, reading, says_oxygen)
    if answers & parameter.no_answers:
        return _oxygen_observed(parameter, reading, not says_oxygen)
    if quantity is not None:
        percent = to_percent(quantity) if quantity.unit_label else None
        if percent is not None:  # "on oxygen" with its concentration
            return _oxygen_observed(parameter, reading, _above_room_air(parameter, percent))
        # "on oxygen" with its flow (any unit): 0 means none is given
        return _oxygen_observed(parameter, reading, (quantity.value > 0) == says_oxygen)
    if reading.concept is not None or reading.string is not None:
        return _unusable(reading, "answer not recognised as air or oxygen")
    return _oxygen_observed(parameter, reading, says_oxygen)


def _answer_for_text(parameter: AcvpuParameter, text: str) -> Answer | None:
    key = answer_text_normalise(text)
    candidates = [key]
    letter = re.match(r"^[acvpu]\s*[-\u2013\u2014:=)]\s*(.+)$", key)  # "V - responds to voice"
    if letter:
        candidates.append(letter.group(1).strip())
    return next((a for c in candidates for a in parameter.answers if c in a.texts), None)


def _read_acvpu(parameter: AcvpuParameter, reading: Reading) -> Observed:
    if reading.value_absent:
        return _unusable(reading, "value absent")
    concept = reading.concept
    answer: Answer | None = None
    codes = concept_codes(concept)
    for code in codes:
        answer = next((a for a in parameter.answers if code in a.codes), None)
        if answer is not None:
            break
    texts = [*concept_texts(concept), *([reading.string] if reading.string else [])]
    for text in texts if answer is None else ():
        answer = _answer_for_text(parameter, text)
        if answer is not None:
            break
    if answer is None:
        reason = "answer not recognised as ACVPU" if (codes or texts) else "no answer recorded"
        return _unusable(reading, reason)
    original = next(iter(texts or codes), None)
    return Observed(
        reading=reading,
        score=answer.score,
        value=answer.value,
        feature=answer.ordinal,
        original_value=original[:80] if original else None,
    )


def _read(parameter: Parameter, reading: Reading) -> Observed:
    if isinstance(parameter, NumericParameter):
        return _read_numeric(parameter, reading)
    if isinstance(parameter, OxygenParameter):
        return _read_oxygen(parameter, reading)
    return _read_acvpu(parameter, reading)


def latest_observed(
    parameter: Parameter, sources: Sequence[SourceResource]
) -> tuple[Observed | None, str | None]:
    """The parameter's latest reading, or why there is none to score.

    The latest dated reading wins even when it cannot be scored (then the parameter is missing, with the
    reason): an older, readable value must not stand in for a newer one we could not read. At the same
    time, a readable reading beats an unreadable one and the higher score wins, erring towards escalation.
    """
    observed = [_read(parameter, reading) for reading in readings(sources, parameter.codes)]
    if not observed:
        return None, "not recorded"
    dated = [item for item in observed if item.reading.effective is not None]
    if not dated:
        return None, "recorded without an effective time"
    latest = max(
        dated,
        key=lambda item: (item.reading.effective, item.score is not None, item.score or 0),
    )
    return (latest, None) if latest.score is not None else (None, latest.reason)
