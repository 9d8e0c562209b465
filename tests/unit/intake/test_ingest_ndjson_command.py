"""``manage.py ingest_ndjson`` as an operator runs it: arguments parsed from argv, exit status, the progress on
stderr and the summary on stdout."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from clinical_ai.accounts.models import Organization
from clinical_ai.intake.management.commands.ingest_ndjson import Command
from clinical_ai.intake.models import BulkBatch, IngestJob
from tests.bulk_data import ndjson_bytes, ndjson_files, patient_bundle_paths, shared_bundle_paths

pytestmark = pytest.mark.django_db


def _run(*args: str) -> int:
    """Run the command from an argv, as manage.py does; its exit status. ``run_from_argv`` closes every
    database connection on its way out, which on PostgreSQL would end the test's own transaction: that one
    step is left out."""
    try:
        with mock.patch("django.core.management.base.connections.close_all"):
            Command().run_from_argv(["manage.py", "ingest_ndjson", *args])
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


@pytest.fixture
def export_dir(tmp_path: Path) -> list[Path]:
    """One small Synthea patient and the hospital and practitioner bundles, as <Type>.ndjson files."""
    smallest = min(patient_bundle_paths(), key=lambda path: path.stat().st_size)
    return ndjson_files(tmp_path / "export", [smallest, *shared_bundle_paths()])


def _stored_line(out: str, label: str) -> int:
    match = re.search(rf"{re.escape(label)}: ([\d,]+)", out)
    assert match is not None, out
    return int(match.group(1).replace(",", ""))


def test_a_backfill_then_the_same_files_again(
    organization: Organization, export_dir: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(path) for path in export_dir]
    assert _run(*files, "--organization", organization.slug, "--label", "backfill 1") == 0
    out, err = capsys.readouterr()
    batch = BulkBatch.objects.get(label="backfill 1")
    assert batch.status == BulkBatch.Status.PROCESSING
    lines = sum(len(path.read_bytes().splitlines()) for path in export_dir)
    assert batch.lines_read == lines
    assert _stored_line(out, "resources stored for their patients") == batch.resources_staged > 0
    assert _stored_line(out, "practitioners, organizations and the like kept") == batch.references_held > 0
    assert _stored_line(out, "already stored (skipped)") == 0
    assert _stored_line(out, "refused") == 0
    assert _stored_line(out, "patients queued for de-identification") == 1
    assert IngestJob.objects.get(batch=batch).status == IngestJob.Status.QUEUED
    # stderr is not a terminal here: one line per 5%, the last at 100%, no carriage returns
    progress = err.strip().splitlines()
    assert progress and "\r" not in err
    assert progress[-1].startswith("100%") and f"{lines:,} lines" in progress[-1]
    assert all(re.match(r"\s*\d+% [\d,]+ lines, [\d,]+ resources/s, \d+ refused$", line) for line in progress)

    assert _run(*files, "--organization", organization.slug, "--label", "backfill 2") == 0
    out, _ = capsys.readouterr()
    again = BulkBatch.objects.get(label="backfill 2")
    assert _stored_line(out, "resources stored for their patients") == 0
    assert _stored_line(out, "already stored (skipped)") == batch.resources_staged + batch.references_held
    assert _stored_line(out, "patients queued for de-identification") == 0
    assert again.status == BulkBatch.Status.SUCCEEDED
    assert IngestJob.objects.filter(batch=again).count() == 0


def test_refused_lines_exit_1_with_their_line_numbers_and_the_rest_goes_in(
    organization: Organization, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    path = tmp_path / "Mixed.ndjson"
    path.write_bytes(
        ndjson_bytes([patient])
        + b"{oops\n"
        + b'{"resourceType": "Wizard", "id": "w"}\n'
        + ndjson_bytes([{"resourceType": "Patient", "id": "p2", "gender": "male"}])
        + b"{oops again\n"
    )
    assert _run(str(path), "--organization", organization.slug) == 1
    out, err = capsys.readouterr()
    assert "not_json: 2 (first: Mixed.ndjson:2, Mixed.ndjson:5)" in out
    assert "unknown_resource_type: 1 (first: Mixed.ndjson:3)" in out
    assert _stored_line(out, "patients queued for de-identification") == 2
    assert "CommandError: 3 line(s) refused (the other lines were processed)" in err
    assert "oops" not in out + err  # never a line's content
    batch = BulkBatch.objects.get()
    assert (batch.resources_staged, batch.lines_refused, batch.status) == (2, 3, BulkBatch.Status.PROCESSING)


def test_usage_errors_exit_2_and_open_no_batch(
    organization: Organization, export_dir: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(str(tmp_path / "absent.ndjson"), "--organization", organization.slug) == 2
    assert "no such file" in capsys.readouterr().err
    assert _run(str(export_dir[0]), "--organization", "nowhere") == 2
    assert "no organization 'nowhere'" in capsys.readouterr().err
    assert _run(str(export_dir[0])) == 2  # --organization is required: argparse's own usage error
    assert "--organization" in capsys.readouterr().err
    assert BulkBatch.objects.count() == 0


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_bar_is_redrawn_in_place(
    organization: Organization, export_dir: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert _run(*[str(path) for path in export_dir], "--organization", organization.slug) == 0
    drawn = terminal.getvalue()
    assert drawn.count("\r\033[K") >= len(export_dir)
    assert "[" + "#" * 30 + "] 100%" in drawn and drawn.endswith("\n")


def test_a_file_past_the_cap_stops_and_exits_1(
    organization: Organization, tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: Any
) -> None:
    patients = [{"resourceType": "Patient", "id": f"p{i}", "gender": "other"} for i in range(40)]
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(ndjson_bytes(patients))
    settings.BULK_MAX_FILE_BYTES = len(ndjson_bytes(patients[:10])) + 5
    assert _run(str(path), "--organization", organization.slug) == 1
    out, _ = capsys.readouterr()
    assert "stopped early: Patient.ndjson: file too large" in out
    assert _stored_line(out, "patients queued for de-identification") == 10
    batch = BulkBatch.objects.get()
    assert batch.errors == {"file_too_large": 1}
    assert json.loads(json.dumps(batch.error_lines)) == [
        {"file": "Patient.ndjson", "line": 11, "reason": "file_too_large"}
    ]
