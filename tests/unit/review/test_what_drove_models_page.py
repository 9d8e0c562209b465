"""Bring your own model, on the models page (issue 17): a manifest that parses but whose files refuse to
load (a changed model file) is listed for admins beside the malformed ones, each with its reason in the
loader's words and the file or model it concerns; its row says it cannot run, to everyone, while the
reasons (which name files on the server) stay for admins."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from clinical_ai.inference.registry import catalogue
from clinical_ai.inference.selectors import refusal_shown
from tests.unit.audit import personas
from tests.unit.inference.test_model_pages import _manifest

pytestmark = pytest.mark.django_db

clinician = personas.clinician
admin = personas.admin

LIST = "/models/"


@pytest.fixture
def models_dir(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """One model that loads, one malformed manifest, and one whose artifact is not the file it names."""
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "manifest.json").write_text(json.dumps(_manifest("1.0.0")), encoding="utf-8")
    changed = _manifest("1.0.0") | {"id": "changed-model", "name": "Changed model"}
    changed["artifacts"] = [{"name": "weights", "path": "weights.bin", "sha256": "0" * 64}]
    (tmp_path / "changed").mkdir()
    (tmp_path / "changed" / "weights.bin").write_bytes(b"not the file that was validated")
    (tmp_path / "changed" / "manifest.json").write_text(json.dumps(changed), encoding="utf-8")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text('{"id": "broken"', encoding="utf-8")
    settings.INFERENCE_MODEL_DIRS = [tmp_path]
    catalogue.cache_clear()
    yield tmp_path
    catalogue.cache_clear()


def _page(user: Any) -> str:
    http = Client()
    http.force_login(user)
    response = http.get(LIST)
    assert response.status_code == 200
    return response.content.decode()


def test_an_admin_reads_each_refused_manifest_and_why(admin: Any, models_dir: Path) -> None:
    page = _page(admin)
    refused = page[page.index('id="errors-heading"') :]
    refused = refused[: refused.index("</section>")]
    items = refused.split("<li>")[1:]
    assert len(items) == 2
    broken = next(item for item in items if "broken" in item)
    assert f"<code>{models_dir / 'broken' / 'manifest.json'}</code><br>not valid JSON" in broken
    changed = next(item for item in items if "changed-model" in item)
    assert "<strong>changed-model 1.0.0</strong><br>artifact weights has sha256" in changed
    assert "refusing to load" in changed
    assert "The other models are not affected." in refused
    # The changed model's row says it cannot run, though its manifest switches it on.
    row = page[page.index("Changed model") :]
    assert "Cannot run" in row[: row.index("</tr>")] and "see below" in row[: row.index("</tr>")]
    good = page[page.index("Sepsis watch") :]
    assert "Cannot run" not in good[: good.index("</tr>")]


def test_a_clinician_sees_which_model_cannot_run_but_not_the_servers_files(
    clinician: Any, models_dir: Path
) -> None:
    page = _page(clinician)
    row = page[page.index("Changed model") :]
    assert "Cannot run" in row[: row.index("</tr>")]
    assert "failed to load" not in page and "sha256" not in page and str(models_dir) not in page


@pytest.mark.parametrize(
    ("message", "subject", "is_file", "reason"),
    [
        (
            "/srv/models/x/manifest.json: features[2] (sbp): unknown unit",
            "/srv/models/x/manifest.json",
            True,
            "features[2] (sbp): unknown unit",
        ),
        (
            "ed-visit 1.0.0: model.onnx: the graph takes 5 features",
            "ed-visit 1.0.0",
            False,
            "model.onnx: the graph takes 5 features",
        ),
        ("no subject here", "", False, "no subject here"),
        ("trailing: ", "", False, "trailing: "),
    ],
)
def test_a_refusal_is_split_into_what_and_why(message: str, subject: str, is_file: bool, reason: str) -> None:
    shown = refusal_shown(message)
    assert (shown.subject, shown.is_file, shown.reason) == (subject, is_file, reason)
