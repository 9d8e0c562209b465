"""``manage.py deid_eval`` reports the allow-list's effect beside the clinical notes' scores."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

from django.core.management import call_command


def test_clinical_run_reports_the_allow_list(ours: Any, bare: Any, tmp_path: Path) -> None:
    json_path = tmp_path / "eval.json"
    out = StringIO()
    call_command("deid_eval", "--only", "clinical", "--limit", "5", "--output", str(json_path), stdout=out)
    output = out.getvalue()
    assert "| texts | documents | listed terms |" in output
    effects = json.loads(json_path.read_text(encoding="utf-8"))["allow_list"]
    assert [effect["dataset"] for effect in effects] == ["generated clinical notes"]
    assert effects[0]["documents"] == 5


def test_general_run_has_no_allow_list(ours: Any, bare: Any, tmp_path: Path) -> None:
    json_path = tmp_path / "eval.json"
    call_command(
        "deid_eval", "--only", "general", "--limit", "3", "--output", str(json_path), stdout=StringIO()
    )
    assert json.loads(json_path.read_text(encoding="utf-8"))["allow_list"] is None
