"""``manage.py deid_eval`` on small subsets: both detectors' figures in one run, reports written."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError


def run(*args: str) -> str:
    out = StringIO()
    call_command("deid_eval", *args, stdout=out)
    return out.getvalue()


def test_clinical_notes_subset_prints_both_columns_and_writes_reports(
    ours: Any, bare: Any, tmp_path: Path
) -> None:
    json_path, markdown_path = tmp_path / "eval.json", tmp_path / "eval.md"
    output = run(
        "--only", "clinical", "--limit", "6", "--output", str(json_path), "--output", str(markdown_path)
    )
    assert "(b) generated clinical notes: 6 texts" in output
    for header in ("ours P", "ours R", "ours F2", "bare P", "bare R", "bare F2", "micro avg"):
        assert header in output
    assert "clinical terms redacted" in output
    report = json.loads(json_path.read_text(encoding="utf-8"))
    systems = report["spans"]["clinical"]["systems"]
    assert set(systems) == {"ours", "bare Presidio"}
    assert systems["ours"]["documents"] == 6 and systems["ours"]["micro"]["gold"] > 0
    assert report["synthea_leaks"] is None
    assert "| label | gold |" in markdown_path.read_text(encoding="utf-8")


@pytest.mark.shared_data
def test_research_subset(ours: Any, bare: Any, shared_data: Path) -> None:
    output = run("--only", "research", "--limit", "5", "--data-dir", str(shared_data))
    assert "(a) presidio-research synthetic sentences: 5 texts" in output
    assert "bare F2" in output and "ours F2" in output


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        run("--only", "synthea", "--data-dir", str(tmp_path))
