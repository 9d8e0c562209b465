from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clinical_ai.deid.engine.config import (
    CONFIG_DIR,
    ConfigError,
    DateShiftScope,
    Method,
    OtherValues,
    ProcessingErrors,
    RangeType,
    load_config,
    parse_config,
    shipped_config,
)


def _config(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"fhirPathRules": list(rules), **top}


def test_a_full_configuration_is_typed() -> None:
    config = parse_config(
        {
            "fhirVersion": "R4",
            "processingErrors": "skip",
            "fhirPathRules": [
                {"path": "Patient.name", "method": "substitute", "replaceWith": {"family": "x"}},
                {
                    "path": "nodesByType('Age')",
                    "method": "perturb",
                    "span": 4,
                    "rangeType": "Proportional",
                    "roundTo": 0,
                },
                {
                    "path": "Patient.gender",
                    "method": "generalize",
                    "cases": {"$this = 'male'": "'m'"},
                    "otherValues": "keep",
                },
                {"path": "nodesByType('date')", "method": "DateShift"},
                {"path": "nodesByType('Narrative')", "method": "scrub"},
            ],
            "parameters": {
                "dateShiftKey": "k",
                "dateShiftScope": "file",
                "dateShiftFixedOffsetInDays": 7,
                "dateShiftKeepTime": True,
                "cryptoHashKey": "h",
                "encryptKey": "0123456789abcdef",
                "enablePartialAgesForRedact": True,
                "enablePartialDatesForRedact": True,
                "enablePartialZipCodesForRedact": True,
                "restrictedZipCodeTabulationAreas": ["036"],
            },
        }
    )
    assert config.processing_errors is ProcessingErrors.SKIP
    assert [rule.method for rule in config.rules] == [
        Method.SUBSTITUTE,
        Method.PERTURB,
        Method.GENERALIZE,
        Method.DATE_SHIFT,
        Method.SCRUB,
    ]
    assert [rule.index for rule in config.rules] == [0, 1, 2, 3, 4]
    assert config.rules[0].replace_with == {"family": "x"}
    assert config.rules[1].range_type is RangeType.PROPORTIONAL and config.rules[1].round_to == 0
    assert config.rules[2].other_values is OtherValues.KEEP
    assert config.rules[2].cases[0].replacement == "'m'"
    parameters = config.parameters
    assert parameters.date_shift_scope is DateShiftScope.FILE
    assert parameters.date_shift_fixed_offset_days == 7 and parameters.date_shift_keep_time
    assert parameters.restricted_zip_code_tabulation_areas == ("036",)


def test_defaults_match_the_reference_tool() -> None:
    config = parse_config(_config({"path": "Resource", "method": "redact"}))
    assert config.processing_errors is ProcessingErrors.RAISE
    assert config.parameters.date_shift_scope is DateShiftScope.RESOURCE
    assert not config.parameters.enable_partial_dates_for_redact


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"path": "Patient.name", "method": "obliterate"}, "unknown method 'obliterate'"),
        ({"path": "Patient.name.", "method": "redact"}, "invalid FHIRPath"),
        ({"path": "Patient.name.resolve()", "method": "redact"}, "unsupported FHIRPath function resolve()"),
        ({"path": "", "method": "redact"}, "missing or empty 'path'"),
        ({"method": "redact"}, "missing or empty 'path'"),
        ({"path": "Patient.name"}, "missing 'method'"),
        ({"path": "Patient.name", "method": "substitute"}, "needs 'replaceWith'"),
        ({"path": "Patient.name", "method": "perturb"}, "needs 'span'"),
        ({"path": "Patient.name", "method": "perturb", "span": -1}, "non-negative"),
        ({"path": "Patient.name", "method": "perturb", "span": 1, "roundTo": 29}, "roundTo"),
        ({"path": "Patient.name", "method": "perturb", "span": 1, "rangeType": "wide"}, "rangeType"),
        ({"path": "Patient.name", "method": "generalize"}, "needs 'cases'"),
        ({"path": "Patient.name", "method": "generalize", "cases": {"$this >": "1"}}, "case '$this >'"),
        (
            {"path": "Patient.name", "method": "generalize", "cases": {"true": "'x'"}, "otherValues": "drop"},
            "otherValues",
        ),
        ({"path": "Patient.name", "method": "redact", "replaceWith": "x"}, "do not apply to method redact"),
    ],
)
def test_invalid_rules_name_their_index(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(_config({"path": "Patient.id", "method": "keep"}, rule))
    assert "fhirPathRules[1]" in str(raised.value)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a JSON object"),
        ({"fhirPathRules": {}}, "fhirPathRules must be a list"),
        ({"fhirVersion": "Stu3", "fhirPathRules": []}, "fhirVersion"),
        ({"processingErrors": "ignore", "fhirPathRules": []}, "processingErrors"),
        ({"fhirPathRules": [], "parameters": {"encryptKey": "short"}}, "128, 192 or 256 bits"),
        ({"fhirPathRules": [], "parameters": {"dateShiftScope": "ward"}}, "dateShiftScope"),
        ({"fhirPathRules": [], "parameters": {"enablePartialDatesForRedact": "yes"}}, "true or false"),
        ({"fhirPathRules": [], "parameters": {"restrictedZipCodeTabulationAreas": [36]}}, "list of strings"),
        ({"fhirPathRules": [], "parameters": {"dateShiftFixedOffsetInDays": 1.5}}, "integer"),
        ({"fhirPathRules": [], "parameters": {"dateshiftkey": "x"}}, "unknown parameter"),
        ({"fhirPathRules": [], "rules": []}, "unknown top-level"),
    ],
)
def test_invalid_configurations(data: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_secrets_override_replaces_keys_and_is_checked() -> None:
    config = parse_config(
        _config({"path": "Resource.id", "method": "cryptoHash"}, parameters={"cryptoHashKey": "a"})
    )
    overridden = config.with_secrets({"cryptoHashKey": "b", "encryptKey": "k" * 32})
    assert overridden.parameters.crypto_hash_key == "b" and overridden.parameters.encrypt_key == "k" * 32
    assert config.parameters.crypto_hash_key == "a"
    with pytest.raises(ConfigError, match="unknown key"):
        config.with_secrets({"hashKey": "x"})
    with pytest.raises(ConfigError, match="bits"):
        config.with_secrets({"encryptKey": "tiny"})


def test_every_reference_configuration_loads(shared_data: Path) -> None:
    paths = sorted((shared_data / "ms_fhir_anonymizer_r4_tests" / "Configurations").glob("*.json"))
    assert len(paths) >= 15
    for path in paths:
        assert load_config(path).rules, path.name


@pytest.mark.parametrize("name", ["safe-harbor", "inference"])
def test_shipped_configurations_load(name: str) -> None:
    config = shipped_config(name)
    assert config.fhir_version == "R4"
    assert config.processing_errors is ProcessingErrors.RAISE
    assert any(rule.method is Method.SCRUB for rule in config.rules)
    # Keys never ship in the JSON: they come from the environment through secrets_override.
    assert not config.parameters.crypto_hash_key and not config.parameters.date_shift_key
    assert (CONFIG_DIR / f"{name}.json").is_file()


def test_unknown_shipped_configuration() -> None:
    with pytest.raises(ConfigError, match="no shipped configuration"):
        shipped_config("lenient")


def test_unreadable_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(broken)
    with_bom = tmp_path / "bom.json"
    with_bom.write_text(
        '\ufeff{"fhirPathRules": [{"path": "Resource", "method": "redact"}]}', encoding="utf-8"
    )
    assert load_config(with_bom).rules[0].method is Method.REDACT
