"""``manage.py deidentify``'s options (those of the Microsoft anonymizer's CLI and ours) and its errors.

Small configurations in the Microsoft format are written per test; nothing here needs ../shared/data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from clinical_ai.deid.engine.config import parse_config
from clinical_ai.deid.offline import Mode, resolve_mode

DATES_TO_YEAR = {
    "fhirVersion": "R4",
    "processingErrors": "raise",
    "fhirPathRules": [
        {"path": "nodesByType('date')", "method": "redact"},
        {"path": "nodesByType('HumanName')", "method": "redact"},
    ],
    "parameters": {"enablePartialDatesForRedact": True},
}
# A generalize case that compares a name with a number: a processing error on every named resource.
FAILS_ON_NAMES = {
    "fhirPathRules": [
        {"path": "nodesByType('HumanName').family", "method": "generalize", "cases": {"$this>=0": "'x'"}},
    ],
}
PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Rossi"}], "birthDate": "1935-03-01"}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"text": "heart rate"},
    "subject": {"reference": "Patient/p1"},
}


def run(*args: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("deidentify", *[str(a) for a in args], stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write(tmp_path / "config.json", DATES_TO_YEAR)


def test_reference_date_decides_the_age_over_89_rule(tmp_path: Path, config: Path) -> None:
    source = write(tmp_path / "patient.json", PATIENT)
    out = tmp_path / "out.json"
    run("--config", config, "--reference-date", "2020-01-01", source, out)
    assert json.loads(out.read_text())["birthDate"] == "1935"  # 84 on that day: the year stays
    run("--config", config, "--reference-date", "2030-01-01", source, out)
    assert "birthDate" not in json.loads(out.read_text())  # 94: over 89, removed
    run("--config", config, source, out)  # today: 89 or more years after 1935 from 2025 on
    assert "birthDate" not in json.loads(out.read_text())


def test_bad_reference_date_is_a_clear_error(tmp_path: Path, config: Path) -> None:
    source = write(tmp_path / "patient.json", PATIENT)
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        run("--config", config, "--reference-date", "01/06/2024", source, tmp_path / "out.json")


def test_microsoft_option_names_and_folders(tmp_path: Path, config: Path) -> None:
    source = tmp_path / "in"
    write(source / "a.json", PATIENT)
    write(source / "nested" / "b.json", PATIENT)
    (source / "notes.txt").write_text("not FHIR")
    stdout, _ = run("-c", config, "-i", source, "-o", tmp_path / "out")
    assert "1 file(s)" in stdout and "reference mode" in stdout
    assert (tmp_path / "out" / "a.json").is_file() and not (tmp_path / "out" / "nested").exists()
    stdout, _ = run("--configFile", config, "--inputFolder", source, "--outputFolder", tmp_path / "all", "-r")
    assert "2 file(s)" in stdout
    assert "name" not in json.loads((tmp_path / "all" / "nested" / "b.json").read_text())


def test_bulk_reads_ndjson_only_and_writes_one_line_per_resource(tmp_path: Path, config: Path) -> None:
    source = tmp_path / "in"
    write(source / "ignored.json", PATIENT)
    (source / "patients.ndjson").write_text(json.dumps(PATIENT) + "\n\n" + json.dumps(OBSERVATION) + "\n")
    stdout, _ = run("--config", config, "--bulk", source, tmp_path / "out")
    assert "2 resource(s) in 1 file(s)" in stdout
    assert not (tmp_path / "out" / "ignored.json").exists()
    lines = (tmp_path / "out" / "patients.ndjson").read_text().splitlines()
    assert [json.loads(line)["resourceType"] for line in lines] == ["Patient", "Observation"]
    assert "name" not in json.loads(lines[0])


def test_skip_existing_leaves_files_already_written(tmp_path: Path, config: Path) -> None:
    source = tmp_path / "in"
    write(source / "a.json", PATIENT)
    write(source / "b.json", PATIENT)
    write(tmp_path / "out" / "a.json", {"resourceType": "Patient", "id": "done-before"})
    stdout, _ = run("--config", config, "--skip-existing", source, tmp_path / "out")
    assert "1 file(s)" in stdout and "1 already there" in stdout
    assert json.loads((tmp_path / "out" / "a.json").read_text())["id"] == "done-before"
    assert "name" not in json.loads((tmp_path / "out" / "b.json").read_text())
    run("--config", config, source, tmp_path / "out")  # without it, everything is written again
    assert json.loads((tmp_path / "out" / "a.json").read_text())["id"] == "p1"


def test_validate_input_stops_at_invalid_fhir_and_writes_nothing(tmp_path: Path, config: Path) -> None:
    source = write(tmp_path / "bad.json", {**PATIENT, "birthDate": "first of March"})
    out = tmp_path / "out.json"
    run("--config", config, source, out)  # not asked: de-identified as it is
    out.unlink()
    with pytest.raises(CommandError, match=r"invalid FHIR R4 input: .*birthDate"):
        run("--config", config, "--validate-input", source, out)
    assert not out.exists()


def test_validate_output_refuses_output_that_is_not_fhir(tmp_path: Path) -> None:
    redact_status = write(
        tmp_path / "c.json", {"fhirPathRules": [{"path": "Observation.status", "method": "redact"}]}
    )
    source = write(tmp_path / "obs.json", OBSERVATION)
    out = tmp_path / "out.json"
    run("--config", redact_status, "--validate-input", source, out)
    out.unlink()
    with pytest.raises(CommandError, match=r"output is not valid FHIR R4: .*status"):
        run("--config", redact_status, "--validate-output", source, out)
    assert not out.exists()


def test_processing_error_raise_is_a_command_error_and_skip_is_reported(tmp_path: Path) -> None:
    source = write(tmp_path / "patient.json", PATIENT)
    out = tmp_path / "out.json"
    raising = write(tmp_path / "raise.json", FAILS_ON_NAMES)
    with pytest.raises(CommandError, match=r"patient.json: ProcessingError: .*processingErrors is raise"):
        run("--config", raising, source, out)
    assert not out.exists()
    skipping = write(tmp_path / "skip.json", {**FAILS_ON_NAMES, "processingErrors": "skip"})
    _, stderr = run("--config", skipping, source, out)
    assert "processingErrors skip: emptied Patient" in stderr
    assert json.loads(out.read_text())["meta"]["security"][0]["code"] == "REDACTED"


def test_pipeline_mode_skip_empties_only_the_failing_resource(tmp_path: Path) -> None:
    """The per-patient pipeline used to crash here (zip() over a collection the skip had emptied)."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": PATIENT}, {"resource": OBSERVATION}, {"resource": {"resourceType": "Device"}}],
    }
    source = write(tmp_path / "bundle.json", bundle)
    skipping = write(tmp_path / "skip.json", {**FAILS_ON_NAMES, "processingErrors": "skip"})
    out = tmp_path / "out.json"
    stdout, stderr = run("--config", skipping, "--mode", "pipeline", source, out)
    assert "pipeline mode" in stdout and "emptied entry 0: Patient" in stderr
    resources = [e["resource"] for e in json.loads(out.read_text())["entry"]]
    assert resources[0] == {
        "resourceType": "Patient",
        "meta": {
            "security": [
                {
                    "system": resources[0]["meta"]["security"][0]["system"],
                    "code": "REDACTED",
                    "display": "redacted",
                }
            ]
        },
    }
    assert resources[1]["status"] == "final" and resources[2]["resourceType"] == "Device"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"bad.json: not JSON"),
        ("[1, 2]", r"bad.json: not a FHIR resource"),
        ('{"id": "x"}', r"bad.json: not a FHIR resource"),
    ],
)
def test_bad_input_files_are_clear_errors(tmp_path: Path, config: Path, content: str, message: str) -> None:
    source = tmp_path / "bad.json"
    source.write_text(content)
    with pytest.raises(CommandError, match=message):
        run("--config", config, source, tmp_path / "out.json")


def test_bad_ndjson_line_is_named(tmp_path: Path, config: Path) -> None:
    source = tmp_path / "in.ndjson"
    source.write_text(json.dumps(PATIENT) + "\n{oops\n")
    with pytest.raises(CommandError, match=r"in.ndjson: line 2: not JSON"):
        run("--config", config, source, tmp_path / "out.ndjson")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-input.json", "out.json"], "does not exist"),
        (["patient.json"], "missing the output"),
        ([], "missing the input"),
        (["patient.json", "out.json", "-i", "patient.json"], "not both"),
        (["patient.json", "patient.json"], "would be overwritten"),
        (["in", "in"], "would be overwritten"),
        (["in", "patient.json"], "output must be a folder"),
        (["-r", "in", "in/out"], "must not be inside"),
        (["--bulk", "in", "out"], r"no \*.ndjson file"),
    ],
)
def test_bad_arguments_are_clear_errors(
    tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "patient.json", PATIENT)
    write(tmp_path / "in" / "a.json", PATIENT)
    with pytest.raises(CommandError, match=message):
        run("--config", config, *args)


def test_bad_configuration_is_a_clear_error(tmp_path: Path) -> None:
    source = write(tmp_path / "patient.json", PATIENT)
    broken = write(tmp_path / "broken.json", {"fhirPathRules": [{"path": "Patient.name", "method": "hide"}]})
    with pytest.raises(CommandError, match=r"unknown method 'hide'"):
        run("--config", broken, source, tmp_path / "out.json")
    with pytest.raises(CommandError, match="cannot read configuration"):
        run("--config", tmp_path / "nowhere.json", source, tmp_path / "out.json")


def test_auto_mode_runs_microsoft_configurations_as_that_tool_and_ours_through_the_pipeline() -> None:
    plain = parse_config(DATES_TO_YEAR)
    scrubbing = parse_config({"fhirPathRules": [{"path": "nodesByType('Narrative')", "method": "scrub"}]})
    assert resolve_mode("their-config.json", plain, Mode.AUTO) is Mode.REFERENCE
    assert resolve_mode("ours.json", scrubbing, Mode.AUTO) is Mode.PIPELINE
    assert resolve_mode("inference", plain, Mode.AUTO) is Mode.PIPELINE
    assert resolve_mode("inference", plain, Mode.REFERENCE) is Mode.REFERENCE


def test_manage_py_reports_an_error_in_one_line_without_a_traceback(tmp_path: Path, config: Path) -> None:
    """What a script calling the command sees: exit status 1 and one line on stderr."""
    source = tmp_path / "in.ndjson"
    source.write_text("{oops\n")
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    completed = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "deidentify",
            "--config",
            str(config),
            str(source),
            str(tmp_path / "o"),
        ],
        cwd=Path(__file__).resolve().parents[3],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert "CommandError:" in completed.stderr and "line 1: not JSON" in completed.stderr


def test_reference_date_in_pipeline_mode(tmp_path: Path) -> None:
    """A configuration with our additions runs through the per-patient pipeline; the date still applies."""
    ours = write(
        tmp_path / "ours.json",
        {**DATES_TO_YEAR, "parameters": {"enablePartialDatesForRedact": True, "dateShiftKeepTime": True}},
    )
    source = write(tmp_path / "patient.json", PATIENT)
    out = tmp_path / "out.json"
    stdout, _ = run("--config", ours, "--reference-date", "2020-01-01", source, out)
    assert "pipeline mode" in stdout and json.loads(out.read_text())["birthDate"] == "1935"
    run("--config", ours, "--reference-date", "2030-01-01", source, out)
    assert "birthDate" not in json.loads(out.read_text())
