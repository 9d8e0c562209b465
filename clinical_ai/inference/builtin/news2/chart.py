"""The NEWS2 chart as data: the parameters, their bands or answers, and the response for each risk band.

``chart.json`` is a hash-verified artifact of the manifest; it is validated here, once, when the model is
built, so that a malformed chart refuses the model rather than scoring wrongly.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from clinical_ai.inference.engine.manifest import ManifestError
from clinical_ai.inference.engine.observations import Quantity, convert

BANDS = ("low", "low-medium", "medium", "high")
EN_DASH = "\u2013"


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


def answer_text_normalise(text: str) -> str:
    """The form an ACVPU answer's text is compared in, for the chart's texts and the recorded ones alike."""
    text = re.sub(r"\(finding\)|[.\s]+$", "", text.strip().lower())
    return re.sub(r"\s+", " ", text).strip()


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
            texts=frozenset(answer_text_normalise(text) for text in _field(answer, "texts", list, name)),
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
