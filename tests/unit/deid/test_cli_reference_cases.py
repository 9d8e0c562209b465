"""The Microsoft FHIR anonymizer's functional tests (R4) through ``manage.py deidentify`` itself.

The engine's own test (``engine/test_ms_conformance.py``) runs the same 33 cases on the engine; here each
case is the command run as someone moving from that tool would run it: ``deidentify --config <their
configuration> INPUT OUTPUT``, with the reference date the expected outputs were made with. The comparison
is the engine test's (semantic, every case expected exact); a case that expects an exception must end in
a clear ``CommandError`` and write nothing.
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.unit.deid.engine.test_ms_conformance import _CASES_DIR, _cases, classify

pytestmark = pytest.mark.shared_data

REFERENCE_DATE = "2024-06-01"  # the engine test's REFERENCE_TODAY


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("deidentify", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8-sig"))


@pytest.mark.parametrize("case", _cases())
def test_reference_case_through_the_command(
    case: tuple[str, str, str] | None, shared_data: Path, tmp_path: Path
) -> None:
    assert case is not None
    input_path, config_path, expected_path = case
    base = shared_data / _CASES_DIR
    output = tmp_path / "out.json"
    args = ("--config", str(base / config_path), "--reference-date", REFERENCE_DATE)
    if expected_path.startswith("("):  # "(exception expected)": processingErrors raise
        with pytest.raises(CommandError, match="ProcessingError"):
            run(*args, str(base / input_path), str(output))
        assert not output.exists()
        return
    stdout, stderr = run(*args, str(base / input_path), str(output))
    assert "reference mode" in stdout
    actual = _load(output)
    expected = _load(base / expected_path)
    outcome = classify(actual, expected)
    assert outcome == "exact", f"{outcome}: {json.dumps(actual, sort_keys=True)}"
    if "skip-processing-error" in config_path:
        assert "processingErrors skip: emptied" in stderr
    else:
        assert stderr == ""


def test_skip_processing_error_in_bulk_empties_each_failing_line(shared_data: Path, tmp_path: Path) -> None:
    base = shared_data / _CASES_DIR
    patient = _load(base / "TestResources/patient-basic.json")
    organization = {"resourceType": "Organization", "id": "o1"}
    source = tmp_path / "in.ndjson"
    source.write_text(json.dumps(patient) + "\n" + json.dumps(organization) + "\n", encoding="utf-8")
    config = base / "Configurations/configuration-skip-processing-error.json"
    _, stderr = run("--config", str(config), "--bulk", str(source), str(tmp_path / "out.ndjson"))
    lines = [json.loads(line) for line in (tmp_path / "out.ndjson").read_text().splitlines()]
    assert lines[0] == _load(base / "TestResources/patient-empty.json")
    assert lines[1]["resourceType"] == "Organization" and lines[1]["id"] == "o1"
    assert "line 1: Patient" in stderr and "line 2" not in stderr


def test_skip_processing_error_in_pipeline_mode_empties_only_the_failing_resource(
    shared_data: Path, tmp_path: Path
) -> None:
    """The pipeline groups a patient's entries; a skip used to crash it (zip() of an emptied collection)."""
    base = shared_data / _CASES_DIR
    output = tmp_path / "out.json"
    config = base / "Configurations/configuration-skip-processing-error.json"
    for name in ("bundle-basic.json", "contained-basic.json", "patient-basic.json"):
        _, stderr = run(
            "--config", str(config), "--mode", "pipeline", str(base / "TestResources" / name), str(output)
        )
        assert "processingErrors skip: emptied" in stderr
        result = _load(output)
        resources = (
            [e["resource"] for e in result["entry"]] if result["resourceType"] == "Bundle" else [result]
        )
        emptied = [r for r in resources if set(r) == {"resourceType", "meta"}]
        assert emptied and all(r["meta"]["security"][0]["code"] == "REDACTED" for r in emptied)
