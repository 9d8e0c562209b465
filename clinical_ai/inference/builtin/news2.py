"""NEWS2, the Royal College of Physicians' National Early Warning Score 2 (2017), from FHIR vital signs.

The scoring chart is data (``chart.json``, a hash-verified artifact of the manifest); this module reads it,
finds each parameter's latest observation, scores it and sums. Only SpO2 scale 1 is applied: scale 2 is for
patients a clinician has prescribed a lower target saturation for, which the record we see does not say.

A parameter that is not recorded, or whose latest value cannot be read (unknown unit, unrecognised answer,
implausible number), is *missing*; one older than ``stale_after_hours`` before the newest vital sign used is
*stale*. Neither is scored, never as normal: the aggregate is then a partial score (a lower bound), and the
finding says so. Pure Python: no Django, no database, no logging of inputs.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, cast

from clinical_ai.inference.engine.manifest import ManifestError, ModelSpec
from clinical_ai.inference.engine.observations import (
    LOINC,
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
from clinical_ai.inference.engine.types import Finding, ModelResult, PatientContext, SourceResource, Urgency

FINDING_KEY = "news2"
OUTCOME = "Clinical deterioration (NEWS2 escalation)"
NO_VITALS = "no NEWS2 vital signs recorded"
BANDS = ("low", "low-medium", "medium", "high")
DEFAULT_THRESHOLDS: dict[str, float] = {
    "medium": 5,
    "high": 7,
    "red_single_parameter": 3,
    "stale_after_hours": 24,
}
DEFAULT_URGENCY: dict[str, Urgency] = {
    "low": "info",
    "low-medium": "warning",
    "medium": "warning",
    "high": "critical",
}
# A red score calls for an urgent ward-based review, as a medium score does: both read "moderate".
DEFAULT_QUALITATIVE_RISK = {"low": "low", "low-medium": "moderate", "medium": "moderate", "high": "high"}
_URGENCIES = ("info", "warning", "critical")
_QUALITATIVE = ("low", "moderate", "high")
_MAX_SUMMARY = 139
EN_DASH = "\u2013"

Status = Literal["scored", "missing", "stale"]


# --- the chart --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """One column of the chart: ``minimum``..``maximum`` inclusive (open-ended when ``None``)."""

    minimum: Decimal | None
    maximum: Decimal | None
    score: int

    def contains(self, value: Decimal) -> bool:
        return (self.minimum is None or value >= self.minimum) and (
            self.maximum is None or value <= self.maximum
        )

    @property
    def label(self) -> str:
        if self.minimum is None:
            return f"≤{self.maximum}"
        if self.maximum is None:
            return f"≥{self.minimum}"
        return f"{self.minimum}{EN_DASH}{self.maximum}"


@dataclass(frozen=True)
class NumericParameter:
    name: str
    label: str
    codes: tuple[str, ...]
    unit: str
    decimals: int
    plausible: tuple[float, float]
    bands: tuple[Band, ...]


@dataclass(frozen=True)
class OxygenParameter:
    """Air or supplemental oxygen, from a flow rate, an inspired concentration, or a code that says which."""

    name: str
    label: str
    scores: Mapping[str, int]  # "air", "oxygen"
    flow_codes: frozenset[str]
    concentration_codes: frozenset[str]
    room_air_percent: Decimal
    air_codes: frozenset[str]
    oxygen_codes: frozenset[str]
    air_answers: frozenset[str]
    oxygen_answers: frozenset[str]
    yes_answers: frozenset[str]
    no_answers: frozenset[str]
    codes: tuple[str, ...]  # every observable read, in chart order


@dataclass(frozen=True)
class Answer:
    value: str
    score: int
    ordinal: int  # A=0, C=1, V=2, P=3, U=4: the feature drift monitoring sees
    codes: frozenset[str]
    texts: frozenset[str]


@dataclass(frozen=True)
class AcvpuParameter:
    name: str
    label: str
    codes: tuple[str, ...]
    answers: tuple[Answer, ...]


Parameter = NumericParameter | OxygenParameter | AcvpuParameter


@dataclass(frozen=True)
class Chart:
    parameters: tuple[Parameter, ...]
    clinical_responses: Mapping[str, str]  # by risk band
    scale: str


def _field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ManifestError(f"NEWS2 chart: {where}: '{key}' is missing or of the wrong type")
    return value


def _code_list(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    codes = _field(data, key, list, where)
    if not all(isinstance(code, str) and "|" in code for code in codes):
        raise ManifestError(f"NEWS2 chart: {where}: '{key}' must hold 'system|code' strings")
    return tuple(dict.fromkeys(codes))


def _code_set(data: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    return frozenset(_code_list(data, key, where))


def _bound(value: Any, where: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ManifestError(f"NEWS2 chart: {where}: band limits must be numbers")
    return Decimal(str(value))


def _numeric(data: Mapping[str, Any], name: str, label: str) -> NumericParameter:
    decimals = _field(data, "decimals", int, name)
    step = Decimal(1).scaleb(-decimals)
    bands = tuple(
        Band(_bound(band.get("min"), name), _bound(band.get("max"), name), _field(band, "score", int, name))
        for band in _field(data, "bands", list, name)
    )
    # The bands must tile the number line at the chart's precision: no gap, no overlap, both ends open.
    if not bands or bands[0].minimum is not None or bands[-1].maximum is not None:
        raise ManifestError(f"NEWS2 chart: {name}: the first band needs no 'min' and the last no 'max'")
    for before, after in itertools.pairwise(bands):
        if before.maximum is None or after.minimum is None or after.minimum != before.maximum + step:
            raise ManifestError(
                f"NEWS2 chart: {name}: bands {before.label} and {after.label} are not contiguous"
            )
    low, high = _field(data, "plausible", list, name)
    unit = _field(data, "unit", str, name)
    try:
        convert(Quantity(value=0.0, unit=unit), unit)
    except ValueError as exc:
        raise ManifestError(f"NEWS2 chart: {name}: no conversion to {unit!r}") from exc
    return NumericParameter(
        name=name,
        label=label,
        codes=_code_list(data, "codes", name),
        unit=unit,
        decimals=decimals,
        plausible=(float(low), float(high)),
        bands=bands,
    )


def _oxygen(data: Mapping[str, Any], name: str, label: str) -> OxygenParameter:
    scores = _field(data, "scores", dict, name)
    if set(scores) != {"air", "oxygen"} or not all(isinstance(s, int) for s in scores.values()):
        raise ManifestError(f"NEWS2 chart: {name}: 'scores' must give 'air' and 'oxygen' an integer")
    return OxygenParameter(
        name=name,
        label=label,
        scores=dict(scores),
        flow_codes=_code_set(data, "flow_codes", name),
        concentration_codes=_code_set(data, "concentration_codes", name),
        room_air_percent=Decimal(str(_field(data, "room_air_percent", (int, float), name))),
        air_codes=_code_set(data, "air_codes", name),
        oxygen_codes=_code_set(data, "oxygen_codes", name),
        air_answers=_code_set(data, "air_answers", name),
        oxygen_answers=_code_set(data, "oxygen_answers", name),
        yes_answers=_code_set(data, "yes_answers", name),
        no_answers=_code_set(data, "no_answers", name),
        codes=tuple(
            dict.fromkeys(
                code
                for key in ("flow_codes", "concentration_codes", "air_codes", "oxygen_codes")
                for code in _code_list(data, key, name)
            )
        ),
    )


def _acvpu(data: Mapping[str, Any], name: str, label: str) -> AcvpuParameter:
    answers = tuple(
        Answer(
            value=_field(answer, "value", str, name),
            score=_field(answer, "score", int, name),
            ordinal=_field(answer, "ordinal", int, name),
            codes=_code_set(answer, "codes", name),
            texts=frozenset(_normalise(text) for text in _field(answer, "texts", list, name)),
        )
        for answer in _field(data, "answers", list, name)
    )
    if "alert" not in {answer.value for answer in answers}:
        raise ManifestError(f"NEWS2 chart: {name}: no 'alert' answer")
    return AcvpuParameter(name=name, label=label, codes=_code_list(data, "codes", name), answers=answers)


_PARSERS: dict[str, Callable[[Mapping[str, Any], str, str], Parameter]] = {
    "numeric": _numeric,
    "oxygen": _oxygen,
    "acvpu": _acvpu,
}


def chart_parse(data: Any) -> Chart:
    """Validate the chart document; a malformed chart refuses the model rather than scoring wrongly."""
    if not isinstance(data, dict):
        raise ManifestError("NEWS2 chart: not a JSON object")
    parameters: list[Parameter] = []
    for item in _field(data, "parameters", list, "chart"):
        name = _field(item, "name", str, "parameter")
        parser = _PARSERS.get(_field(item, "kind", str, name))
        if parser is None:
            raise ManifestError(f"NEWS2 chart: {name}: unknown kind {item.get('kind')!r}")
        parameters.append(parser(item, name, _field(item, "label", str, name)))
    if len({p.name for p in parameters}) != len(parameters):
        raise ManifestError("NEWS2 chart: parameter names must be unique")
    bands = _field(data, "risk_bands", dict, "chart")
    responses = {
        band: _field(_field(bands, band, dict, "risk_bands"), "clinical_response", str, band)
        for band in BANDS
    }
    return Chart(
        parameters=tuple(parameters), clinical_responses=responses, scale=_field(data, "scale", str, "chart")
    )


def chart_load(path: Path) -> Chart:
    try:
        return chart_parse(json.loads(path.read_bytes()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"NEWS2 chart: cannot read {path.name} ({exc})") from exc


# --- reading one parameter --------------------------------------------------------------------------


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


def _normalise(text: str) -> str:
    text = re.sub(r"\(finding\)|[.\s]+$", "", text.strip().lower())
    return re.sub(r"\s+", " ", text).strip()


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
    key = _normalise(text)
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


# --- the model --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterResult:
    parameter: Parameter
    status: Status
    observed: Observed | None
    reason: str | None = None
    age_hours: float | None = None

    def evidence(self) -> dict[str, Any]:
        parameter, observed = self.parameter, self.observed
        reading = observed.reading if observed else None
        primary_loinc = next(
            (c.partition("|")[2] for c in parameter.codes if c.startswith(f"{LOINC}|")), None
        )
        matched = reading.code if reading else None
        item: dict[str, Any] = {
            "name": parameter.name,
            "label": parameter.label,
            "loinc": matched.partition("|")[2]
            if matched and matched.startswith(f"{LOINC}|")
            else primary_loinc,
            "code": matched,
            "value": observed.value if observed else None,
            "unit": observed.unit if observed else None,
            "original_value": observed.original_value if observed else None,
            "original_unit": observed.original_unit if observed else None,
            "effective": _iso(reading.effective) if reading else None,
            "ref": reading.ref if reading else None,
            "resourceType": "Observation" if reading else None,
            "score": observed.score if observed and self.status == "scored" else None,
            "range": observed.range if observed else None,
            "status": self.status,
            "age_hours": self.age_hours,
        }
        if self.reason:
            item["reason"] = self.reason
        return item


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when else None


class News2Model:
    """NEWS2 on the latest de-identified vital signs of each patient (see the module docstring)."""

    def __init__(
        self,
        *,
        chart: Chart,
        thresholds: Mapping[str, float],
        urgency_by_band: Mapping[str, Urgency],
        qualitative_risk_by_band: Mapping[str, str],
    ) -> None:
        self.chart = chart
        self.thresholds = dict(thresholds)
        self.urgency_by_band = dict(urgency_by_band)
        self.qualitative_risk_by_band = dict(qualitative_risk_by_band)

    def predict(self, contexts: Sequence[PatientContext]) -> list[ModelResult]:
        return [self.assess(context) for context in contexts]

    def assess(self, context: PatientContext) -> ModelResult:
        """One patient: a finding with the (possibly partial) score, or none when no vital sign is usable."""
        observations = context.of_type("Observation")
        selected = [(p, *latest_observed(p, observations)) for p in self.chart.parameters]
        used = [observed for _, observed, _ in selected if observed is not None]
        if not used:
            reasons = [f"{p.name}: {reason}" for p, _, reason in selected if reason != "not recorded"]
            message = f"{NO_VITALS} (none usable: {'; '.join(reasons)})" if reasons else NO_VITALS
            features: dict[str, Any] = {p.name: None for p in self.chart.parameters}
            return ModelResult(
                context.patient_pseudonym, (), {**features, "news2_aggregate": None}, (message,)
            )
        reference = max(cast(datetime, observed.reading.effective) for observed in used)
        stale_after = timedelta(hours=float(self.thresholds["stale_after_hours"]))
        results: list[ParameterResult] = []
        for parameter, observed, reason in selected:
            if observed is None:
                results.append(ParameterResult(parameter, "missing", None, reason))
                continue
            age = reference - cast(datetime, observed.reading.effective)
            status: Status = "stale" if age > stale_after else "scored"
            reason = (
                f"older than {self.thresholds['stale_after_hours']:g} h before the latest vital sign"
                if status == "stale"
                else None
            )
            results.append(
                ParameterResult(parameter, status, observed, reason, round(age.total_seconds() / 3600, 2))
            )
        return self._result(context.patient_pseudonym, results, reference)

    def _band(self, aggregate: int, red: list[Parameter]) -> str:
        if aggregate >= self.thresholds["high"]:
            return "high"
        if aggregate >= self.thresholds["medium"]:
            return "medium"
        return "low-medium" if red else "low"

    def _result(self, pseudonym: str, results: list[ParameterResult], reference: datetime) -> ModelResult:
        scores = {
            r.parameter.name: r.observed.score
            for r in results
            if r.status == "scored" and r.observed is not None and r.observed.score is not None
        }
        aggregate = sum(scores.values())
        red = [
            r.parameter
            for r in results
            if r.parameter.name in scores
            and scores[r.parameter.name] >= self.thresholds["red_single_parameter"]
        ]
        missing = [r.parameter.name for r in results if r.status == "missing"]
        stale = [r.parameter.name for r in results if r.status == "stale"]
        complete = not missing and not stale
        band = self._band(aggregate, red)
        evidence: dict[str, Any] = {
            "parameters": [r.evidence() for r in results],
            "aggregate": aggregate,
            "complete": complete,
            "missing": missing,
            "stale": stale,
            "band": band,
            "red_score_parameters": [p.name for p in red],
            "thresholds": dict(self.thresholds),
            "clinical_response": self.chart.clinical_responses[band],
            "reference_time": _iso(reference),
            "scale": self.chart.scale,
        }
        if not complete:
            evidence["note"] = (
                "Partial score: missing and stale parameters are not scored, so the full NEWS2 may be higher."
            )
        finding = Finding(
            key=FINDING_KEY,
            kind="risk",
            urgency=self.urgency_by_band[band],
            summary=self._summary(aggregate, band, red, len(results), len(missing), len(stale)),
            evidence=evidence,
            score=float(aggregate),
            risk={
                "band": band,
                "score": float(aggregate),
                "qualitative_risk": self.qualitative_risk_by_band[band],
                "outcome": OUTCOME,
            },
        )
        features: dict[str, Any] = {
            r.parameter.name: r.observed.feature if r.status == "scored" and r.observed else None
            for r in results
        }
        features["news2_aggregate"] = aggregate
        messages: tuple[str, ...] = ()
        if not complete:
            parts = [
                f"missing {', '.join(missing)}" if missing else "",
                f"stale {', '.join(stale)}" if stale else "",
            ]
            messages = (f"NEWS2 incomplete: {'; '.join(p for p in parts if p)}",)
        return ModelResult(pseudonym, (finding,), features, messages)

    @staticmethod
    def _summary(
        aggregate: int, band: str, red: list[Parameter], total: int, missing: int, stale: int
    ) -> str:
        score = f"NEWS2 {aggregate}" if not (missing or stale) else f"NEWS2 ≥{aggregate}"
        gaps = []
        if missing:
            gaps.append(f"{missing} of {total} parameters missing")
        if stale:
            gaps.append(f"{stale} stale" if missing else f"{stale} of {total} parameters stale")
        incomplete = f" (incomplete: {', '.join(gaps)})" if gaps else ""
        why = f", red score in {red[0].label.lower()}" if band == "low-medium" and red else ""
        summary = f"{score}{why}{incomplete} — {band} risk"
        return summary if len(summary) <= _MAX_SUMMARY else f"{score}{incomplete} — {band} risk"


def _thresholds(raw: Mapping[str, Any]) -> dict[str, float]:
    thresholds = dict(DEFAULT_THRESHOLDS)
    for key, value in raw.items():
        if key in thresholds:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ManifestError(f"news2: threshold {key!r} must be a non-negative number")
            thresholds[key] = value
    if thresholds["medium"] > thresholds["high"]:
        raise ManifestError("news2: the 'medium' threshold is above the 'high' one")
    return thresholds


def _by_band(raw: Any, default: Mapping[str, str], allowed: Sequence[str], what: str) -> dict[str, str]:
    chosen = {**default, **(raw if isinstance(raw, Mapping) else {})}
    if not all(chosen.get(band) in allowed for band in BANDS):
        raise ManifestError(
            f"news2: {what} must map each of {', '.join(BANDS)} to one of {', '.join(allowed)}"
        )
    return {band: str(chosen[band]) for band in BANDS}


def build(spec: ModelSpec) -> News2Model:
    """The manifest's entrypoint: the chart artifact, the thresholds and the band mappings."""
    try:
        chart_path = spec.artifacts["chart"]
    except KeyError:
        raise ManifestError("news2: the manifest has no 'chart' artifact") from None
    outputs = spec.manifest.outputs
    urgency = _by_band(outputs.get("urgency_by_band"), DEFAULT_URGENCY, _URGENCIES, "urgency_by_band")
    return News2Model(
        chart=chart_load(chart_path),
        thresholds=_thresholds(spec.manifest.thresholds),
        urgency_by_band=cast(dict[str, Urgency], urgency),
        qualitative_risk_by_band=_by_band(
            outputs.get("qualitative_risk_by_band"),
            DEFAULT_QUALITATIVE_RISK,
            _QUALITATIVE,
            "qualitative_risk_by_band",
        ),
    )
