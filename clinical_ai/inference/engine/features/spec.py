"""Reading a manifest's ``features`` list into a ``FeatureSet``, checking everything at load. No Django.

A hospital writes these by hand, so every mistake must stop the model from loading with a message that names
the feature ("features[3] (sbp_mean_1y): unit 'furlong' cannot be converted") rather than surface later as
a silently wrong number for a patient. Unknown keys are refused for the same reason: a misspelt ``"windw"``
would otherwise widen the window to all history without a word.

The format is described in docs/models.md; ``extract.py`` computes the features for one patient.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from clinical_ai.inference.engine.features.types import (
    AGGREGATES,
    NUMERIC_AGGREGATES,
    Aggregate,
    FeatureSet,
    FeatureSpec,
    MissingRule,
    Source,
)
from clinical_ai.inference.engine.observations import CONVERTERS

# Code systems a manifest may name without declaring them in its top-level "code_systems".
KNOWN_CODE_SYSTEMS: frozenset[str] = frozenset(
    {
        "http://loinc.org",
        "http://snomed.info/sct",
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "http://hl7.org/fhir/sid/icd-10",
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://hl7.org/fhir/sid/cvx",
        "http://hl7.org/fhir/sid/ndc",
        "http://www.ama-assn.org/go/cpt",
        "http://www.whocc.no/atc",
    }
)

# The coded elements a feature may match, per resource type; the first is the default. extract.py reads each
# element and the type's event time (see its _EVENT_TIMES).
RESOURCE_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Observation": ("code",),
    "Condition": ("code",),
    "Encounter": ("class", "type", "reasonCode"),
    "MedicationRequest": ("medicationCodeableConcept",),
    "MedicationStatement": ("medicationCodeableConcept",),
    "MedicationAdministration": ("medicationCodeableConcept",),
    "Procedure": ("code",),
    "Immunization": ("vaccineCode",),
    "DiagnosticReport": ("code",),
    "AllergyIntolerance": ("code",),
}

SOURCES: tuple[Source, ...] = ("resource", "age", "sex")
TIME_UNITS = ("d", "h")
# FHIR administrative-gender: what a "sex" feature may compare with.
GENDERS = ("male", "female", "other", "unknown")

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")
_SYSTEM = re.compile(r"^\S+$")
# Words for a clinician: no markup, no template braces, no internal snake_case names.
_LABEL_FORBIDDEN = re.compile(r"[<>{}_\x00-\x1f\x7f]")
LABEL_MAX = 120

_COMMON_KEYS = frozenset({"name", "label", "source", "missing"})
_KEYS_BY_SOURCE: dict[str, frozenset[str]] = {
    "resource": _COMMON_KEYS
    | {"resourceType", "element", "codes", "valueSet", "window", "aggregate", "unit", "time_unit"},
    "age": _COMMON_KEYS | {"unit"},
    "sex": _COMMON_KEYS | {"equals"},
}
# Aggregates that always have a value (zero events is a count of 0, "not present"): a missing rule is wrong.
NEVER_MISSING = frozenset({"count", "present"})


class FeatureSpecError(ValueError):
    """A feature of a manifest is malformed; the message starts with ``features[i] (name):``. manifest.py
    prefixes the manifest's path and raises it as a ``ManifestError``."""


def window_parse(text: Any) -> timedelta:
    """An ISO 8601 duration as a manifest writes a window: PnY (n x 365 days), PnW, PnD, PTnH, PTnM, or a
    combination in that order. Raises ``FeatureSpecError`` on anything else, and on a zero duration (an
    empty window would make every feature missing). manifest.py reads the notes window with it too."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise FeatureSpecError(f"window {text!r} is not an ISO 8601 duration such as P90D or PT24H")
    years, weeks, days, hours, minutes = (int(g or 0) for g in match.groups())
    duration = timedelta(days=years * 365 + weeks * 7 + days, hours=hours, minutes=minutes)
    if duration <= timedelta(0):
        raise FeatureSpecError(f"window {text!r} is empty")
    return duration


def feature_set_parse(
    data: Any, *, base: Path, where: str, extra_code_systems: Collection[str] = ()
) -> FeatureSet:
    """The manifest's ``features`` list (already parsed from JSON) as a ``FeatureSet``, in model column order.

    ``base`` is the manifest's folder: ``valueSet`` files are read relative to it and may not lie outside it.
    ``where`` (the manifest's path) is not repeated in the messages: the caller prefixes it once.
    ``None`` (no "features" key) gives an empty set; the caller decides whether that is allowed.
    Raises ``FeatureSpecError`` naming the first feature that is wrong and what is wrong with it.
    """
    del where  # the caller prefixes the path to every message; kept so a call names what it parses
    if data is None:
        return FeatureSet(features=())
    if not isinstance(data, list):
        raise FeatureSpecError("'features' must be a list of feature objects, in the model's column order")
    systems = KNOWN_CODE_SYSTEMS | frozenset(extra_code_systems)
    root = base.resolve()
    features: list[FeatureSpec] = []
    seen: set[str] = set()
    for index, item in enumerate(data):
        name = item.get("name") if isinstance(item, dict) else None
        at = f"features[{index}]" + (f" ({name})" if isinstance(name, str) and name else "")
        try:
            spec = _feature_parse(item, root=root, systems=systems)
        except ValueError as exc:
            raise FeatureSpecError(f"{at}: {exc}") from None
        if spec.name in seen:
            raise FeatureSpecError(f"{at}: the name '{spec.name}' is used by an earlier feature")
        seen.add(spec.name)
        features.append(spec)
    return FeatureSet(features=tuple(features))


def _feature_parse(item: Any, *, root: Path, systems: frozenset[str]) -> FeatureSpec:
    if not isinstance(item, dict):
        raise ValueError("each feature must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError("'name' must start with a letter and hold only letters, digits and '_' (64 at most)")
    label = _label(item.get("label"))
    source = item.get("source", "resource")
    if source not in SOURCES:
        raise ValueError(f"'source' must be one of {', '.join(SOURCES)}, not {source!r}")
    unknown = sorted(set(item) - _KEYS_BY_SOURCE[source])
    if unknown:
        raise ValueError(f"unknown key(s) for a {source!r} feature: {', '.join(map(repr, unknown))}")
    if source == "age":
        unit = item.get("unit", "a")
        if unit != "a":
            raise ValueError(f"an age is in whole years (unit 'a'), not {unit!r}")
        return FeatureSpec(name=name, label=label, source="age", missing=_missing(item))
    if source == "sex":
        equals = item.get("equals")
        if equals not in GENDERS:
            raise ValueError(f"'equals' must be one of {', '.join(GENDERS)} (FHIR administrative gender)")
        return FeatureSpec(name=name, label=label, source="sex", equals=str(equals), missing=_missing(item))
    return _resource_feature(item, name=name, label=label, root=root, systems=systems)


def _resource_feature(
    item: Mapping[str, Any], *, name: str, label: str, root: Path, systems: frozenset[str]
) -> FeatureSpec:
    resource_type = item.get("resourceType")
    if resource_type not in RESOURCE_ELEMENTS:
        raise ValueError(
            f"'resourceType' must be one of {', '.join(RESOURCE_ELEMENTS)}, not {resource_type!r}"
        )
    elements = RESOURCE_ELEMENTS[resource_type]
    element = item.get("element", elements[0])
    if element not in elements:
        raise ValueError(
            f"element {element!r} is not one of the coded elements read on {resource_type}: "
            + ", ".join(elements)
        )
    aggregate = item.get("aggregate")
    if aggregate not in AGGREGATES:
        raise ValueError(f"'aggregate' must be one of {', '.join(AGGREGATES)}, not {aggregate!r}")
    aggregate = cast(Aggregate, aggregate)
    if "codes" in item and "valueSet" in item:
        raise ValueError("give 'codes' or 'valueSet', not both")
    codes: frozenset[str] = frozenset()
    if "codes" in item:
        codes = _codes(item["codes"], systems)
    elif "valueSet" in item:
        codes = _value_set_codes(item["valueSet"], root=root, systems=systems)
    numeric = aggregate in NUMERIC_AGGREGATES
    if numeric and resource_type != "Observation":
        raise ValueError(f"the aggregate {aggregate!r} reads a value: only Observation has one")
    if numeric and not codes:
        raise ValueError(f"the aggregate {aggregate!r} needs 'codes' or 'valueSet': values of every code mix")
    unit = item.get("unit", "")
    if unit != "" and not numeric:
        raise ValueError(
            f"'unit' applies to the numeric aggregates ({', '.join(sorted(NUMERIC_AGGREGATES))})"
        )
    if not isinstance(unit, str) or (unit and unit not in CONVERTERS):
        raise ValueError(f"unit {unit!r} cannot be converted (known: {', '.join(CONVERTERS)})")
    time_unit = item.get("time_unit", "d")
    if "time_unit" in item and aggregate not in ("time_since", "slope"):
        raise ValueError("'time_unit' applies to the aggregates time_since and slope")
    if time_unit not in TIME_UNITS:
        raise ValueError(f"'time_unit' must be one of {', '.join(TIME_UNITS)}, not {time_unit!r}")
    if aggregate in NEVER_MISSING and "missing" in item:
        raise ValueError(f"'missing' does not apply: a {aggregate} is never missing (no event gives 0)")
    lookback = window_parse(item["window"]) if "window" in item else None
    return FeatureSpec(
        name=name,
        label=label,
        source="resource",
        aggregate=aggregate,
        resource_type=resource_type,
        element=element,
        codes=codes,
        lookback=lookback,
        unit=unit,
        time_unit=time_unit,
        missing=_missing(item),
    )


def _label(label: Any) -> str:
    if not isinstance(label, str) or not label.strip():
        raise ValueError(
            "'label' is required: the clinician's words for this input, shown on the review page"
        )
    text = label.strip()
    if len(text) > LABEL_MAX or _LABEL_FORBIDDEN.search(text):
        raise ValueError(
            f"'label' must be plain words of at most {LABEL_MAX} characters, without markup, braces or '_'"
        )
    return text


def _missing(item: Mapping[str, Any]) -> MissingRule:
    rule = item.get("missing", "refuse")
    if rule == "refuse":
        return MissingRule("refuse")
    if isinstance(rule, dict) and set(rule) == {"impute"}:
        value = rule["impute"]
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return MissingRule("impute", float(value))
    raise ValueError('\'missing\' must be "refuse" or {"impute": <number>}')


def _code_check(key: Any, systems: frozenset[str]) -> str:
    if not isinstance(key, str):
        raise ValueError(f"code {key!r} must be a 'system|code' string")
    system, bar, code = key.partition("|")
    if not bar or not _SYSTEM.match(system) or not code or code != code.strip() or "|" in code:
        raise ValueError(f"code {key!r} is not 'system|code' (e.g. 'http://loinc.org|8480-6')")
    if system not in systems:
        raise ValueError(
            f"unknown code system {system!r} in {key!r}: use a known one or declare it in 'code_systems'"
        )
    return key


def _codes(values: Any, systems: frozenset[str]) -> frozenset[str]:
    if not isinstance(values, list) or not values:
        raise ValueError("'codes' must be a non-empty list of 'system|code' strings")
    return frozenset(_code_check(value, systems) for value in values)


def _value_set_codes(path_text: Any, *, root: Path, systems: frozenset[str]) -> frozenset[str]:
    """The codes a FHIR ValueSet file lists: ``compose.include[].concept[]`` (with the include's system) less
    ``compose.exclude[].concept[]``, and ``expansion.contains[]`` (nested ones too). An include that selects
    by filter or by another value set cannot be expanded here without a terminology server, so unless the
    file carries an expansion it is refused rather than read as a narrower list."""
    if not isinstance(path_text, str) or not path_text or Path(path_text).is_absolute():
        raise ValueError("'valueSet' must be a path relative to the manifest's folder")
    path = (root / path_text).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"valueSet {path_text!r} lies outside the manifest's folder")
    if not path.is_file():
        raise ValueError(f"valueSet file {path_text!r} not found")
    try:
        document = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"valueSet {path_text!r} is not valid JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("resourceType") != "ValueSet":
        raise ValueError(f"valueSet {path_text!r} is not a FHIR ValueSet")
    expansion = document.get("expansion")
    expanded = _expansion_codes(expansion, path_text) if isinstance(expansion, dict) else []
    compose = document.get("compose") or {}
    if not isinstance(compose, dict):
        raise ValueError(f"valueSet {path_text!r}: 'compose' must be an object")
    included = _compose_codes(compose.get("include"), path_text, allow_rules=bool(expanded))
    excluded = _compose_codes(compose.get("exclude"), path_text, allow_rules=bool(expanded))
    codes = (set(included) - set(excluded)) | set(expanded)
    if not codes:
        raise ValueError(f"valueSet {path_text!r} lists no codes (compose.include[].concept or expansion)")
    return frozenset(_code_check(key, systems) for key in codes)


def _compose_codes(parts: Any, path_text: str, *, allow_rules: bool) -> list[str]:
    if parts is None:
        return []
    if not isinstance(parts, list):
        raise ValueError(f"valueSet {path_text!r}: compose.include and exclude must be lists")
    keys: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            raise ValueError(f"valueSet {path_text!r}: each compose.include/exclude must be an object")
        if (part.get("filter") or part.get("valueSet") or not part.get("concept")) and not allow_rules:
            raise ValueError(
                f"valueSet {path_text!r}: an include by filter, by value set or of a whole code system "
                "cannot be expanded here; list the concepts or add an expansion"
            )
        system = part.get("system")
        for concept in part.get("concept") or ():
            code = concept.get("code") if isinstance(concept, dict) else None
            if not isinstance(system, str) or not isinstance(code, str):
                raise ValueError(
                    f"valueSet {path_text!r}: each concept needs its include's system and a code"
                )
            keys.append(f"{system}|{code}")
    return keys


def _expansion_codes(expansion: Mapping[str, Any], path_text: str) -> list[str]:
    def walk(contains: Any) -> Iterator[str]:
        for entry in contains or ():
            if not isinstance(entry, dict):
                raise ValueError(f"valueSet {path_text!r}: expansion.contains entries must be objects")
            if isinstance(entry.get("code"), str) and not entry.get("abstract"):
                if not isinstance(entry.get("system"), str):
                    raise ValueError(
                        f"valueSet {path_text!r}: expansion code {entry['code']!r} has no system"
                    )
                yield f"{entry['system']}|{entry['code']}"
            yield from walk(entry.get("contains"))

    return list(walk(expansion.get("contains")))
