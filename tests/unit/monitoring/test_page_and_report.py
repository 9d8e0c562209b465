"""The stored monitoring on the model page (read, never recomputed), the report command, the beat entry."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.monitoring import stats
from clinical_ai.monitoring.selectors import model_monitoring_stats
from clinical_ai.monitoring.services import monitoring_compute
from tests.unit.audit import personas
from tests.unit.monitoring.conftest import MODEL, NOW, decide, make_runs

pytestmark = pytest.mark.django_db
admin = personas.admin
clinician = personas.clinician
DETAIL = f"/models/{MODEL}/"


def _vitals(n: int, *, seed: int, rr_mean: float) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"respiratory_rate": round(rng.gauss(rr_mean, 3)), "spo2": round(rng.gauss(96, 1.5))}
        for _ in range(n)
    ]


@pytest.fixture
def monitored(organization: Any, other_organization: Any, clinician: Any) -> None:
    """A drifted respiratory rate, and one site overriding far more often than the other; computed."""
    make_runs(organization, _vitals(200, seed=1, rr_mean=18), at=NOW - timedelta(days=40))
    make_runs(organization, _vitals(200, seed=2, rr_mean=26), at=NOW - timedelta(days=3))
    for org, n, rejected in ((organization, 60, 6), (other_organization, 40, 28)):
        for i, run in enumerate(make_runs(org, [{} for _ in range(n)], at=NOW - timedelta(days=20))):
            outcome = "rejected" if i < rejected else "accepted"
            decide(run, outcome, clinician=clinician, signed_at=NOW - timedelta(days=1 + i % 14))
    monitoring_compute(actor=Actor.system("tests"), now=NOW)


def _signed_in(user: Any) -> Client:
    http = Client()
    http.force_login(user)
    return http


def _no_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the page recomputed a statistic")

    for name in ("psi", "wilson_interval", "two_proportion_p_value", "numeric_counts", "quantile_edges"):
        monkeypatch.setattr(stats, name, refuse)
    monkeypatch.setattr("clinical_ai.monitoring.services.monitoring_compute", refuse)


def test_the_model_page_shows_stored_drift_and_flags_without_recomputing(
    monitored: None, models_dir: Path, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_statistics(monkeypatch)
    response = _signed_in(admin).get(DETAIL)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="drift-heading"' in page
    assert "Drift alert: <strong>respiratory_rate</strong>" in page
    assert "Subgroup flag: <strong>Organization county-hospital</strong>" in page
    assert 'id="drift-1_0_0"' in page and 'id="outcomes-1_0_0"' in page  # the two SVG charts


def test_the_panel_tag_renders_stored_rows_only(monitored: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.template import Context, Template

    _no_statistics(monkeypatch)
    page = Template("{% load monitoring %}{% monitoring_panel model_id %}").render(
        Context({"model_id": MODEL})
    )
    assert "Drift alert: <strong>respiratory_rate</strong>" in page
    assert "<td>Flagged</td>" not in page and '<strong class="failure">Flagged</strong>' in page
    assert Template("{% load monitoring %}{% monitoring_panel 'other' %}").render(Context()) == ""


def test_the_panel_reads_a_fixed_number_of_queries(monitored: None) -> None:
    with CaptureQueriesContext(connection) as queries:
        stats_ = model_monitoring_stats(model_id=MODEL)
    assert len(queries) == 6
    [version] = stats_.versions
    assert [row.input_name for row in version.drift_alerts] == ["respiratory_rate"]
    assert [row.subgroup_value for row in version.subgroup_flags] == ["county-hospital", "st-elsewhere"]


def test_no_panel_without_stored_rows(organization: Any, models_dir: Path, admin: Any) -> None:
    response = _signed_in(admin).get(DETAIL)
    assert response.status_code == 200
    assert 'id="drift-heading"' not in response.content.decode()


def test_a_clinician_does_not_see_the_panel(monitored: None, models_dir: Path, clinician: Any) -> None:
    response = _signed_in(clinician).get(DETAIL)
    assert response.status_code == 200
    assert 'id="drift-heading"' not in response.content.decode()


def test_model_report_writes_a_self_contained_escaped_file(
    monitored: None, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_statistics(monkeypatch)
    output = tmp_path / "report.html"
    call_command("model_report", MODEL, "--output", str(output))
    html = output.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "Flags adults whose vital signs suggest sepsis." in html  # the card
    assert "<td>Boundary cases</td><td>12 of 12 pass</td>" in html  # validation figures
    assert "Sepsis &lt;watch&gt;" in html and "Sepsis <watch>" not in html
    assert "&lt;script&gt;must&lt;/script&gt;" in html and "<script" not in html
    assert "Drift alert: <strong>respiratory_rate</strong>" in html
    assert "Subgroup flag: <strong>Organization county-hospital</strong>" in html
    assert "<svg" in html and 'id="drift-1_0_0"' in html
    assert "Not clinically relevant" in html  # overrides by reason
    for external in ("src=", "href=", "<link", "@import"):
        assert external not in html
    [event] = AuditEvent.objects.filter(action="monitoring.report")
    assert event.object_id == MODEL and event.detail["model_version"] == "1.0.0"


def test_model_report_of_an_unknown_model_fails(db: None, models_dir: Path) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("model_report", "no-such-model")
    assert not AuditEvent.objects.filter(action="monitoring.report").exists()


def test_the_periodic_task_is_scheduled_and_runs_as_a_worker(organization: Any) -> None:
    from clinical_ai.monitoring.tasks import compute

    entry = settings.CELERY_BEAT_SCHEDULE["monitoring-compute"]
    assert entry["task"] == compute.name == "clinical_ai.monitoring.compute"
    compute.apply().get()
    [event] = AuditEvent.objects.filter(action="monitoring.compute")
    assert event.actor_type == "worker" and event.detail["versions"] == 0


def test_the_command_computes_and_resets_a_reference(monitored: None) -> None:
    from io import StringIO

    out = StringIO()
    call_command("monitoring_compute", "--reset-reference", MODEL, "1.0.0", stdout=out)
    assert "versions 1" in out.getvalue()
    assert AuditEvent.objects.filter(action="monitoring.drift.reset").count() == 1
