"""What drove a risk score, as the suggestion page shows it: each input of a declarative model in words
("2 visits, last year"; "not recorded — the model used 125 mmHg") with how much it pushed this patient's
estimate up or down, or, for a text classifier, the note sentences that weighed most.

The evidence is whatever the model wrote (``builtin/declarative.py`` writes the shape docs/models.md
describes): every reader takes what it finds, leaves out what is missing or of the wrong type, and never
raises. A feature's internal name (``ed_visits_12m``) is never shown: its label is, or failing that a
plain "an input of the model".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clinical_ai.inference.engine.explain.types import METHOD_TEXT
from clinical_ai.review.selectors.evidence import mapping_of, mappings_of, strings_of, text_of
from clinical_ai.review.times import ShownTime, TimeLens

# The rows shown before "All N inputs" is opened.
TOP_SHOWN = 5

# Without a lens, times are read as the de-identified copy holds them, and shown as shifted.
_SHIFTED = TimeLens(zone=UTC, now=datetime.fromtimestamp(0, UTC))

# UCUM codes as a clinician reads them (the stored evidence keeps the codes).
UNIT_DISPLAY = {
    "Cel": "°C",
    "[degF]": "°F",
    "mm[Hg]": "mmHg",
    "/min": "/min",
    "%": "%",
    "L/min": "L/min",
    "kg/m2": "kg/m²",
    "a": "years",
    "mo": "months",
    "wk": "weeks",
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "umol/L": "µmol/L",
    "ug/L": "µg/L",
    "10*9/L": "\u00d710\u2079/L",
    "10*3/uL": "\u00d710\u00b3/µL",
}
# One event of each resource type, as a count says it ("2 visits"); (singular, plural).
_EVENT_NOUNS = {
    "Encounter": ("visit", "visits"),
    "Observation": ("result", "results"),
    "Condition": ("diagnosis", "diagnoses"),
    "MedicationRequest": ("prescription", "prescriptions"),
    "MedicationStatement": ("medication record", "medication records"),
    "MedicationAdministration": ("dose given", "doses given"),
    "Procedure": ("procedure", "procedures"),
    "Immunization": ("vaccination", "vaccinations"),
    "DiagnosticReport": ("report", "reports"),
    "AllergyIntolerance": ("allergy record", "allergy records"),
    "DocumentReference": ("note", "notes"),
}
_TIME_UNITS = {
    "d": ("day", "days"),
    "h": ("hour", "hours"),
    "wk": ("week", "weeks"),
    "min": ("minute", "minutes"),
}
_WINDOWS_SAID_IN_THE_VALUE_ALREADY = ("", "at prediction time")
# Aggregates whose value says "when" by itself: the time since the last event, the newest value (its time is
# shown beside it); a window there only matters when it is not the whole history.
_WINDOW_ONLY_WHEN_LIMITED = ("time_since", "latest")


def display_unit(unit: str) -> str:
    return UNIT_DISPLAY.get(unit, unit)


def number_of(value: Any) -> float | None:
    """A finite number from the evidence; ``None`` for anything else (a string, a bool, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def number_text(value: float) -> str:
    """A value as a chart says it: whole above 100, one decimal above 10, two below ("0.35", "12.5")."""
    if abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def percent_text(probability: float | None) -> str:
    """A probability as a percentage to one decimal ("23%", "6.8%", "10.5%", "under 0.1%"): a threshold of
    10.5% must not read as the 10% of an estimate below it. "" for none or one outside 0..1."""
    if probability is None or not 0 <= probability <= 1:
        return ""
    percent = probability * 100
    if 0 < percent < 0.1:
        return "under 0.1%"
    if 99.9 < percent < 100:
        return "over 99.9%"
    text = f"{percent:.1f}".removesuffix(".0")
    return f"{text}%"


def window_text(value: Any) -> str:
    """The model's window in words, as a clinician says it: "last 1 year" (365 days) "last 12 months",
    "last 1 day" "last day"."""
    window = text_of(value).strip()
    if window == "last 1 year":
        return "last 12 months"
    return re.sub(r"^last 1 (\w+)$", r"last \1", window)


def _plural(count: float, nouns: tuple[str, str]) -> str:
    return nouns[0] if count == 1 else nouns[1]


def _amount(value: float, item: Mapping[str, Any]) -> str:
    """One feature's value in words, without its window: "67 years", "2 visits", "yes", "132 mmHg"."""
    source = text_of(item.get("source"))
    aggregate = text_of(item.get("aggregate"))
    unit = text_of(item.get("unit"))
    if source == "sex" or aggregate == "present":
        return "yes" if value >= 0.5 else "no"
    if source == "age":
        return f"{number_text(value)} {'year' if value == 1 else 'years'}"
    if aggregate == "count":
        nouns = _EVENT_NOUNS.get(text_of(item.get("resourceType")), ("record", "records"))
        return f"{number_text(value)} {_plural(value, nouns)}"
    if aggregate == "time_since":
        nouns = _TIME_UNITS.get(text_of(item.get("time_unit")) or unit or "d", ("day", "days"))
        return f"{number_text(value)} {_plural(value, nouns)}"
    if aggregate == "slope":  # the unit is "<value unit>/<time unit>" ("mm[Hg]/d"), "1/d" for a count
        value_unit, _, time_unit = (
            unit.rpartition("/") if unit.rpartition("/")[2] in _TIME_UNITS else (unit, "", "")
        )
        per = _TIME_UNITS.get(time_unit or text_of(item.get("time_unit")) or "d", ("day", "days"))[0]
        shown = display_unit(value_unit) if value_unit != "1" else ""
        return f"change of {'+' if value > 0 else ''}{number_text(value)}{f' {shown}' if shown else ''} per {per}"
    shown = display_unit(unit)
    return f"{number_text(value)} {shown}" if shown else number_text(value)


@dataclass(frozen=True)
class FeatureValueText:
    text: str  # "2 visits, last year"; "not recorded — the model used 125 mmHg"; "not recorded"
    imputed: bool
    missing: bool


def feature_value_text(item: Mapping[str, Any]) -> FeatureValueText:
    """A declarative feature's value as a clinician reads it, with its unit and window; an imputed value
    marked as not recorded, with the stand-in the model was given."""
    status = text_of(item.get("status"))
    value = number_of(item.get("value"))
    if status == "missing":
        return FeatureValueText("not recorded", imputed=False, missing=True)
    if status == "imputed":
        used = number_of(item.get("imputed"))
        used = value if used is None else used
        said = f"not recorded — the model used {_amount(used, item)}" if used is not None else "not recorded"
        return FeatureValueText(said, imputed=True, missing=False)
    if value is None:
        return FeatureValueText(text_of(item.get("value")) or "—", imputed=False, missing=False)
    window = window_text(item.get("window"))
    amount = _amount(value, item)
    aggregate = text_of(item.get("aggregate"))
    if (
        window in _WINDOWS_SAID_IN_THE_VALUE_ALREADY
        or text_of(item.get("source")) in ("age", "sex")
        or (aggregate in _WINDOW_ONLY_WHEN_LIMITED and window == "all history")
    ):
        return FeatureValueText(amount, imputed=False, missing=False)
    return FeatureValueText(f"{amount}, {window}", imputed=False, missing=False)


def is_feature(item: Mapping[str, Any]) -> bool:
    """Evidence written by a declarative model (an aggregate, a source or a window per input), which reads
    in words; a NEWS2 parameter (a reading with its own band and score) does not."""
    return any(key in item for key in ("aggregate", "source", "window", "imputed"))


def records_of(item: Mapping[str, Any]) -> int:
    """How many source records a value came from: its refs, or a count's value where the refs were capped."""
    refs = strings_of(item.get("refs")) if not isinstance(item.get("refs"), str) else []
    if not refs and text_of(item.get("ref")):
        refs = [text_of(item.get("ref"))]
    records = len(refs)
    value = number_of(item.get("value"))
    if text_of(item.get("aggregate")) == "count" and value is not None and value > records:
        records = int(value)
    return records


def shown_time(text: str, times: TimeLens | None) -> ShownTime | None:
    return (times or _SHIFTED).show(text) if text else None


# --- tabular models: the contribution of each input ---------------------------------------------


@dataclass(frozen=True)
class DriverRow:
    rank: int
    label: str
    value: str
    imputed: bool
    direction: str  # "raised", "lowered", "none" or "unknown" (the model gave no number)
    direction_text: str  # "raised the risk"
    size: int  # the bar's length: |contribution| as a percentage of the largest one, 0 to 100
    newest: ShownTime | None  # the time of its newest source record
    records: int  # how many source records the value came from


@dataclass(frozen=True)
class Drivers:
    rows: list[DriverRow]
    probability: str  # this patient's estimate, "23%"
    base_probability: str  # the model's estimate for an average reference patient, "11%"
    method_text: str
    references: int
    real_times: bool

    @property
    def top(self) -> list[DriverRow]:
        return self.rows[:TOP_SHOWN]

    @property
    def rest(self) -> list[DriverRow]:
        return self.rows[TOP_SHOWN:]


_DIRECTION_TEXT = {
    "raised": "raised the risk",
    "lowered": "lowered the risk",
    "none": "made no difference",
    "unknown": "effect not given",
}


def _merged(contribution: Mapping[str, Any], parameter: Mapping[str, Any]) -> dict[str, Any]:
    """The contribution's own keys first, the parameter's (aggregate, source, imputed...) for the rest."""
    merged = dict(parameter)
    merged.update({key: value for key, value in contribution.items() if value not in (None, "")})
    return merged


def _label(item: Mapping[str, Any]) -> str:
    return text_of(item.get("label")) or "an input of the model (no label given)"


def method_text(explanation: Mapping[str, Any]) -> str:
    method = text_of(explanation.get("method"))
    return METHOD_TEXT.get(method) or text_of(explanation.get("method_text"))


def drivers_of(
    evidence: Mapping[str, Any], risk: Mapping[str, Any], times: TimeLens | None = None
) -> Drivers | None:
    """The "What drove this score" section of a tabular model's finding; ``None`` when its evidence
    carries no contributions (a not-scored finding, a model without explanations)."""
    explanation = mapping_of(evidence.get("explanation"))
    contributions = mappings_of(explanation.get("contributions"))
    if not contributions:
        return None
    parameters = {text_of(p.get("name")): p for p in mappings_of(evidence.get("parameters"))}
    items = [_merged(c, parameters.get(text_of(c.get("name")), {})) for c in contributions]
    sizes = [abs(number_of(item.get("contribution")) or 0.0) for item in items]
    largest = max(sizes, default=0.0)
    ordered = sorted(zip(items, sizes, strict=True), key=lambda pair: -pair[1])
    rows = []
    for rank, (item, size) in enumerate(ordered, start=1):
        contribution = number_of(item.get("contribution"))
        if contribution is None:
            direction = "unknown"
        elif contribution > 0:
            direction = "raised"
        elif contribution < 0:
            direction = "lowered"
        else:
            direction = "none"
        value = feature_value_text(item)
        rows.append(
            DriverRow(
                rank=rank,
                label=_label(item),
                value=value.text,
                imputed=value.imputed,
                direction=direction,
                direction_text=_DIRECTION_TEXT[direction],
                size=round(100 * size / largest) if largest > 0 else 0,
                newest=shown_time(text_of(item.get("effective")), times),
                records=records_of(item),
            )
        )
    probability = number_of(evidence.get("probability"))
    if probability is None:
        probability = number_of(risk.get("probability"))
    references = explanation.get("references")
    return Drivers(
        rows=rows,
        probability=percent_text(probability),
        base_probability=percent_text(number_of(explanation.get("base_probability"))),
        method_text=method_text(explanation),
        references=references if isinstance(references, int) and not isinstance(references, bool) else 0,
        real_times=times is not None and times.real,
    )


# --- text classifiers: the sentences that weighed most --------------------------------------------


@dataclass(frozen=True)
class SentenceRow:
    text: str
    weight_text: str  # "Leaving it out lowers the estimate by 8 percentage points."
    direction: str  # "raised", "lowered" or "none"
    size: int
    note_time: ShownTime | None


@dataclass(frozen=True)
class Sentences:
    rows: list[SentenceRow]
    probability: str
    method_text: str
    real_times: bool

    @property
    def top(self) -> list[SentenceRow]:
        return self.rows[:TOP_SHOWN]

    @property
    def rest(self) -> list[SentenceRow]:
        return self.rows[TOP_SHOWN:]


def _points(weight: float) -> str:
    points = abs(weight) * 100
    said = "under 0.1" if 0 < points < 0.1 else number_text(points if points < 10 else round(points))
    return f"{said} percentage point{'' if said == '1' else 's'}"


def _weight_text(weight: float | None) -> tuple[str, str]:
    if weight is None:
        return "unknown", "The model gave no weight for it."
    if weight > 0:
        return "raised", f"Raised the estimate: leaving it out lowers it by {_points(weight)}."
    if weight < 0:
        return "lowered", f"Lowered the estimate: leaving it out raises it by {_points(weight)}."
    return "none", "Made no difference to the estimate."


def sentences_of(
    evidence: Mapping[str, Any], risk: Mapping[str, Any], times: TimeLens | None = None
) -> Sentences | None:
    """The "Sentences that weigh most" section of a text classifier's finding; ``None`` without any."""
    explanation = mapping_of(evidence.get("explanation"))
    found = [s for s in mappings_of(explanation.get("sentences")) if isinstance(s.get("text"), str)]
    if not found:
        return None
    weights = [number_of(s.get("weight")) for s in found]
    largest = max((abs(w) for w in weights if w is not None), default=0.0)
    ordered = sorted(zip(found, weights, strict=True), key=lambda pair: -abs(pair[1] or 0.0))
    rows = []
    for item, weight in ordered:
        direction, said = _weight_text(weight)
        rows.append(
            SentenceRow(
                text=str(item.get("text")),
                weight_text=said,
                direction=direction,
                size=round(100 * abs(weight) / largest) if weight is not None and largest > 0 else 0,
                note_time=shown_time(text_of(item.get("effective")), times),
            )
        )
    probability = number_of(evidence.get("probability"))
    if probability is None:
        probability = number_of(risk.get("probability"))
    return Sentences(
        rows=rows,
        probability=percent_text(probability),
        method_text=method_text(explanation),
        real_times=times is not None and times.real,
    )


def notes_read(evidence: Mapping[str, Any], times: TimeLens | None = None) -> tuple[int, list[ShownTime]]:
    """How many notes a text classifier read, and the times of those that are dated, as the model listed
    them."""
    notes = mappings_of(evidence.get("notes"))
    shown = [shown_time(text_of(note.get("effective")), times) for note in notes]
    return len(notes), [time for time in shown if time is not None]
