"""De-identification configuration in the Microsoft FHIR anonymizer's format (FHIR R4), plus ``scrub``.

A configuration is JSON with ``fhirVersion``, ``processingErrors``, ``fhirPathRules`` (evaluated in order;
a node handled by an earlier rule is not handled again) and ``parameters``. :func:`parse_config` checks it
completely (methods, FHIRPath syntax, each method's options, key sizes) and raises :class:`ConfigError`
naming the rule index, so a bad configuration fails at start-up rather than on the first resource.

Our additions, ignored by the reference tool: the method ``scrub`` (free text handed to the text
scrubber) and the parameter ``dateShiftKeepTime`` (shift dateTimes by whole days but keep the time of
day, so intervals within a day survive for models).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from clinical_ai.deid.engine.fhirpath import FhirPathSyntaxError, compile_expression

_E = TypeVar("_E", bound=StrEnum)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the rule index or parameter at fault."""


class Method(StrEnum):
    KEEP = "keep"
    REDACT = "redact"
    DATE_SHIFT = "dateshift"
    CRYPTO_HASH = "cryptohash"
    ENCRYPT = "encrypt"
    SUBSTITUTE = "substitute"
    PERTURB = "perturb"
    GENERALIZE = "generalize"
    SCRUB = "scrub"


class ProcessingErrors(StrEnum):
    RAISE = "raise"  # the error propagates
    SKIP = "skip"  # the whole input becomes an empty resource labelled REDACTED
    KEEP = "keep"  # the failing node is left as it was and processing goes on (fails open; avoid)


class DateShiftScope(StrEnum):
    RESOURCE = "resource"
    FILE = "file"
    FOLDER = "folder"


class RangeType(StrEnum):
    FIXED = "fixed"
    PROPORTIONAL = "proportional"


class OtherValues(StrEnum):
    REDACT = "redact"
    KEEP = "keep"


@dataclass(frozen=True, slots=True)
class GeneralizeCase:
    condition: str  # FHIRPath boolean on $this
    replacement: str  # FHIRPath giving the new value


@dataclass(frozen=True, slots=True)
class Rule:
    index: int
    path: str
    method: Method
    replace_with: Any = None  # substitute: a JSON primitive or object
    span: float = 0.0  # perturb
    range_type: RangeType = RangeType.FIXED
    round_to: int | None = None  # perturb; None: 2 for decimals, 0 for integers
    cases: tuple[GeneralizeCase, ...] = ()  # generalize
    other_values: OtherValues = OtherValues.REDACT


@dataclass(frozen=True, slots=True)
class Parameters:
    # Keys stay out of repr(), so a logged configuration does not leak them.
    date_shift_key: str = field(default="", repr=False)
    date_shift_scope: DateShiftScope = DateShiftScope.RESOURCE
    date_shift_fixed_offset_days: int | None = None
    date_shift_keep_time: bool = False
    crypto_hash_key: str = field(default="", repr=False)
    encrypt_key: str = field(default="", repr=False)
    enable_partial_ages_for_redact: bool = False
    enable_partial_dates_for_redact: bool = False
    enable_partial_zip_codes_for_redact: bool = False
    restricted_zip_code_tabulation_areas: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AnonymizerConfig:
    rules: tuple[Rule, ...]
    parameters: Parameters = field(default_factory=Parameters)
    processing_errors: ProcessingErrors = ProcessingErrors.RAISE
    fhir_version: str = ""

    def with_secrets(self, secrets: Mapping[str, str] | None) -> AnonymizerConfig:
        """A copy with keys replaced (``dateShiftKey``, ``cryptoHashKey``, ``encryptKey``), so secrets can
        come from the environment instead of the shipped JSON."""
        if not secrets:
            return self
        changes: dict[str, Any] = {}
        for name, value in secrets.items():
            attribute = _SECRET_PARAMETERS.get(name)
            if attribute is None:
                raise ConfigError(
                    f"secrets_override: unknown key {name!r}; expected one of {sorted(_SECRET_PARAMETERS)}"
                )
            if not isinstance(value, str):
                raise ConfigError(f"secrets_override: {name} must be a string")
            changes[attribute] = value
        parameters = replace(self.parameters, **changes)
        _check_encrypt_key(parameters.encrypt_key, "secrets_override.encryptKey")
        return replace(self, parameters=parameters)


_SECRET_PARAMETERS = {
    "dateShiftKey": "date_shift_key",
    "cryptoHashKey": "crypto_hash_key",
    "encryptKey": "encrypt_key",
}

_RULE_OPTIONS: dict[Method, frozenset[str]] = {
    Method.SUBSTITUTE: frozenset({"replaceWith"}),
    Method.PERTURB: frozenset({"span", "rangeType", "roundTo"}),
    Method.GENERALIZE: frozenset({"cases", "otherValues"}),
}


def load_config(path: str | Path) -> AnonymizerConfig:
    """Read and validate a configuration file (a UTF-8 BOM is allowed)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ConfigError(f"cannot read configuration {path}: {error}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"configuration {path} is not valid JSON: {error}") from error
    return parse_config(data)


def shipped_config(name: str) -> AnonymizerConfig:
    """One of the configurations shipped in ``clinical_ai/deid/configs``.

    ``safe-harbor``: HIPAA Safe Harbor's identifiers removed (names, contacts, address below state level
    with a 3-digit ZIP unless restricted, every date to its year, ages over 89, identifier values, device
    and image ids, URLs, IP addresses, photos); ids and references keyed-hashed; all free text scrubbed.

    ``inference``: what models read. Identifier values, ids and references keyed-hashed (references keep
    resolving); names, contacts, addresses (but state and country) removed; every date shifted by one
    offset per patient (the pipeline's :class:`PatientContext`) with the time of day kept, so ages and
    intervals survive; codes, values, units, statuses and categories kept; free text scrubbed.

    Neither ships keys: pass ``cryptoHashKey`` and ``dateShiftKey`` through ``secrets_override``.
    """
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"no shipped configuration named {name!r}")
    return load_config(path)


def parse_config(data: Any) -> AnonymizerConfig:
    if not isinstance(data, Mapping):
        raise ConfigError("the configuration must be a JSON object")
    unknown = set(data) - {"fhirVersion", "processingErrors", "fhirPathRules", "parameters"}
    if unknown:
        raise ConfigError(f"unknown top-level key(s): {sorted(unknown)}")
    fhir_version = data.get("fhirVersion") or ""
    if not isinstance(fhir_version, str) or fhir_version.upper() not in ("", "R4"):
        raise ConfigError(f"fhirVersion {fhir_version!r} is not supported; use 'R4' or leave it empty")
    processing_errors = _enum(ProcessingErrors, data.get("processingErrors", "raise"), "processingErrors")
    raw_rules = data.get("fhirPathRules")
    if not isinstance(raw_rules, list):
        raise ConfigError("fhirPathRules must be a list of rules")
    rules = tuple(_parse_rule(index, raw) for index, raw in enumerate(raw_rules))
    parameters = _parse_parameters(data.get("parameters") or {})
    return AnonymizerConfig(
        rules=rules,
        parameters=parameters,
        processing_errors=processing_errors,
        fhir_version=fhir_version,
    )


def _enum(kind: type[_E], value: Any, where: str) -> _E:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, one of {[m.value for m in kind]}")
    try:
        return kind(value.lower())
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not one of {[m.value for m in kind]}") from None


def _parse_rule(index: int, raw: Any) -> Rule:
    where = f"fhirPathRules[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be an object with 'path' and 'method'")
    path = raw.get("path")
    method_name = raw.get("method")
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{where}: missing or empty 'path'")
    if not isinstance(method_name, str):
        raise ConfigError(f"{where} ({path}): missing 'method'")
    try:
        method = Method(method_name.lower())
    except ValueError:
        known = ", ".join(m.value for m in Method)
        raise ConfigError(f"{where} ({path}): unknown method {method_name!r}; known: {known}") from None
    try:
        compile_expression(path)
    except FhirPathSyntaxError as error:
        raise ConfigError(f"{where}: {error}") from error
    allowed = {"path", "method"} | _RULE_OPTIONS.get(method, frozenset())
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(
            f"{where} ({path}): option(s) {sorted(unknown)} do not apply to method {method.value}"
        )
    rule = Rule(index=index, path=path, method=method)
    if method is Method.SUBSTITUTE:
        if "replaceWith" not in raw:
            raise ConfigError(f"{where} ({path}): substitute needs 'replaceWith'")
        replace_with = raw["replaceWith"]
        if isinstance(replace_with, list):
            raise ConfigError(f"{where} ({path}): 'replaceWith' must be a primitive or an object, not a list")
        rule = replace(rule, replace_with=replace_with)
    elif method is Method.PERTURB:
        rule = _parse_perturb(rule, raw, where)
    elif method is Method.GENERALIZE:
        rule = _parse_generalize(rule, raw, where)
    return rule


def _parse_perturb(rule: Rule, raw: Mapping[str, Any], where: str) -> Rule:
    if "span" not in raw:
        raise ConfigError(f"{where} ({rule.path}): perturb needs 'span'")
    span = raw["span"]
    if isinstance(span, bool) or not isinstance(span, int | float) or span < 0 or not math.isfinite(span):
        raise ConfigError(f"{where} ({rule.path}): 'span' must be a non-negative number")
    range_type = _enum(RangeType, raw.get("rangeType", "fixed"), f"{where}.rangeType")
    round_to = raw.get("roundTo")
    if round_to is not None and (
        isinstance(round_to, bool) or not isinstance(round_to, int) or not 0 <= round_to <= 28
    ):
        raise ConfigError(f"{where} ({rule.path}): 'roundTo' must be an integer from 0 to 28")
    return replace(rule, span=float(span), range_type=range_type, round_to=round_to)


def _parse_generalize(rule: Rule, raw: Mapping[str, Any], where: str) -> Rule:
    cases = raw.get("cases")
    if not isinstance(cases, Mapping) or not cases:
        raise ConfigError(
            f"{where} ({rule.path}): generalize needs 'cases', an object of condition: replacement"
        )
    parsed: list[GeneralizeCase] = []
    for condition, replacement in cases.items():
        if not isinstance(replacement, str):
            raise ConfigError(
                f"{where} ({rule.path}): the replacement of case {condition!r} must be a FHIRPath string"
            )
        for expression in (condition, replacement):
            try:
                compile_expression(expression)
            except FhirPathSyntaxError as error:
                raise ConfigError(f"{where} ({rule.path}): case {condition!r}: {error}") from error
        parsed.append(GeneralizeCase(condition, replacement))
    other_values = _enum(OtherValues, raw.get("otherValues", "redact"), f"{where}.otherValues")
    return replace(rule, cases=tuple(parsed), other_values=other_values)


_BOOLEAN_PARAMETERS = {
    "enablePartialAgesForRedact": "enable_partial_ages_for_redact",
    "enablePartialDatesForRedact": "enable_partial_dates_for_redact",
    "enablePartialZipCodesForRedact": "enable_partial_zip_codes_for_redact",
    "dateShiftKeepTime": "date_shift_keep_time",
}
_STRING_PARAMETERS = {
    "dateShiftKey": "date_shift_key",
    "cryptoHashKey": "crypto_hash_key",
    "encryptKey": "encrypt_key",
}


def _parse_parameters(raw: Any) -> Parameters:
    if not isinstance(raw, Mapping):
        raise ConfigError("parameters must be an object")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        where = f"parameters.{name}"
        if name in _BOOLEAN_PARAMETERS:
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false")
            values[_BOOLEAN_PARAMETERS[name]] = value
        elif name in _STRING_PARAMETERS:
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{where} must be a string")
            values[_STRING_PARAMETERS[name]] = value or ""
        elif name == "dateShiftScope":
            values["date_shift_scope"] = _enum(DateShiftScope, value, where)
        elif name == "dateShiftFixedOffsetInDays":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{where} must be an integer number of days")
            values["date_shift_fixed_offset_days"] = value
        elif name == "restrictedZipCodeTabulationAreas":
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise ConfigError(f"{where} must be a list of strings")
            values["restricted_zip_code_tabulation_areas"] = tuple(value)
        elif name == "customSettings":
            continue  # the reference tool's custom processors; nothing here uses them
        else:
            raise ConfigError(f"unknown parameter {name!r}")
    parameters = Parameters(**values)
    _check_encrypt_key(parameters.encrypt_key, "parameters.encryptKey")
    return parameters


def _check_encrypt_key(key: str, where: str) -> None:
    if key and len(key.encode("utf-8")) not in (16, 24, 32):
        bits = len(key.encode("utf-8")) * 8
        raise ConfigError(
            f"{where}: an AES key must be 128, 192 or 256 bits (16, 24 or 32 UTF-8 bytes), not {bits} bits"
        )
