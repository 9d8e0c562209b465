"""The Microsoft FHIR anonymizer's functional tests (R4), run through our engine.

Each case of ``ms_fhir_anonymizer_r4_tests/pairs.csv`` is (input, configuration, expected output). The
comparison is semantic (parsed JSON). A case is *exact* when the output equals the expected output,
*structural* when it differs only where the reference's output cannot be reproduced (hash and
ciphertext values, shifted dates of the same precision), and a failure otherwise. Every case is
expected exact: cryptoHash (HMAC-SHA256, key "123") and dateShift (the reference's key+prefix hash)
are reproduced.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.deid.engine.rules import ProcessingError, StructuredAnonymizer

pytestmark = pytest.mark.shared_data

# The expected outputs were produced around 2020; the "age over 89" rule depends on today's date.
REFERENCE_TODAY = date(2024, 6, 1)
_CASES_DIR = "ms_fhir_anonymizer_r4_tests"
_PAIRS = Path(__file__).resolve().parents[4].parent / "shared" / "data" / _CASES_DIR / "pairs.csv"
_ORPHAN_CONFIG = "Configurations/common-config.json"  # pairs.csv: "presumably common-config.json"


def _cases() -> list[Any]:
    if not _PAIRS.is_file():
        return [pytest.param(None, id="shared-data-absent")]
    with _PAIRS.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    params = []
    for number, row in enumerate(rows):
        config = row["config"] if row["config"].startswith("Configurations/") else _ORPHAN_CONFIG
        name = Path(row["input"]).stem + "--" + Path(config).stem
        params.append(pytest.param((row["input"], config, row["expected_output"]), id=f"{number:02d}-{name}"))
    return params


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8-sig"))


_HASH = re.compile(r"^(.*?)([0-9a-f]{64})$")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T[\d:.]+)?)?)?(Z|[+-]\d{2}:\d{2})?$")


def _shape(value: Any) -> Any:
    """The output with reproducibility-dependent values replaced by their form."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    if isinstance(value, str):
        hashed = _HASH.match(value)
        if hashed:
            return f"{hashed.group(1)}<sha256>"
        if _DATE.match(value):
            return re.sub(r"\d", "9", value)
    return value


def classify(actual: Any, expected: Any) -> str:
    if actual == expected:
        return "exact"
    if _shape(actual) == _shape(expected):
        return "structural"
    return "fail"


@pytest.mark.parametrize("case", _cases())
def test_reference_case(case: tuple[str, str, str] | None, shared_data: Path) -> None:
    assert case is not None
    input_path, config_path, expected_path = case
    base = shared_data / _CASES_DIR
    anonymizer = StructuredAnonymizer(base / config_path, today=lambda: REFERENCE_TODAY)
    resource = _load(base / input_path)
    if expected_path.startswith("("):  # "(exception expected)"
        with pytest.raises(ProcessingError):
            anonymizer.anonymize(resource)
        return
    actual = anonymizer.anonymize(resource)
    expected = _load(base / expected_path)
    outcome = classify(actual, expected)
    assert outcome == "exact", (
        f"{outcome}: {json.dumps(actual, sort_keys=True)} != {json.dumps(expected, sort_keys=True)}"
    )


def test_classification_tells_structural_from_failure() -> None:
    expected = {"id": "a" * 64, "birthDate": "2000-02-11", "reference": "Patient/" + "b" * 64}
    assert classify(dict(expected), expected) == "exact"
    shifted = {"id": "c" * 64, "birthDate": "2000-03-01", "reference": "Patient/" + "d" * 64}
    assert classify(shifted, expected) == "structural"
    assert classify({**shifted, "birthDate": "2000"}, expected) == "fail"
