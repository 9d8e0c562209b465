"""The models pages by persona: the catalogue and model cards for anyone with a role, the switch and the
monitoring for admins; every page and every refused change on record; counts that add up; a constant
number of queries whatever the volume."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clinical_ai.audit.models import AuditEvent
from clinical_ai.core.sealing import seal_json
from clinical_ai.inference.models import InferenceRun, ModelDeployment
from clinical_ai.inference.registry import catalogue
from clinical_ai.inference.selectors import model_monitoring
from clinical_ai.review.models import Suggestion
from tests.unit.audit import personas
from tests.unit.audit.personas import make_user

pytestmark = pytest.mark.django_db

# The personas of the audit and accounts tests, as fixtures of this module.
clinician = personas.clinician
auditor = personas.auditor
admin = personas.admin
superuser = personas.superuser

MODEL = "sepsis-watch"
LIST = "/models/"
DETAIL = f"/models/{MODEL}/"
CONFIGURE = f"/models/{MODEL}/configure"
PATIENT = "0123456789abcdef0123456789abcdef"
S = Suggestion.Status


def _manifest(version: str, **card: Any) -> dict[str, Any]:
    return {
        "id": MODEL,
        "version": version,
        "name": "Sepsis watch",
        "kind": "rules",
        "entrypoint": "tests.nowhere:build",
        "default_enabled": True,
        "artifacts": [],
        "inputs": [
            {
                "name": "lactate",
                "resourceType": "Observation",
                "codes": ["http://loinc.org|2524-7"],
                "required": True,
                "description": "Serum lactate.",
            }
        ],
        "card": {
            "clinical_summary": "Flags adults whose lactate suggests sepsis. Adults only.",
            "intended_use": "Flags adults whose lactate suggests sepsis.",
            "intended_users": "Ward nurses and doctors.",
            "inputs": "The latest lactate.",
            "development": "Rules from a guideline.",
            "validation": {
                "summary": "Checked against the guideline's table.",
                "figures": [{"name": "Boundary cases", "value": "12 of 12 pass", "source": "tests/x.py"}],
            },
            "limitations": ["Adults only.", "Lactate <b>must</b> be recent."],
            "references": ["A guideline, 2024."],
            **card,
        },
    }


@pytest.fixture
def models_dir(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """A catalogue of our own: two versions of one model and one manifest that fails to load."""
    for version in ("1.0.0", "1.1.0"):
        (tmp_path / MODEL).mkdir(exist_ok=True)
        path = tmp_path / MODEL / f"manifest-{version}.json"
        path.write_text(json.dumps(_manifest(version)), encoding="utf-8")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text('{"id": "broken"', encoding="utf-8")
    settings.INFERENCE_MODEL_DIRS = [tmp_path]
    catalogue.cache_clear()
    yield tmp_path
    catalogue.cache_clear()


@pytest.fixture
def member_without_role(db: None) -> Any:
    return make_user("no-role", None, None)


def _signed_in(user: Any) -> Client:
    http = Client()
    http.force_login(user)
    return http


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def _run(organization: Any, version: str, status: str = InferenceRun.Status.SUCCEEDED) -> InferenceRun:
    return InferenceRun.objects.create(
        organization=organization,
        patient_pseudonym=PATIENT,
        model_id=MODEL,
        model_version=version,
        status=status,
    )


def _suggestion(run: InferenceRun, status: str, key: str) -> Suggestion:
    suggestion = Suggestion(
        run=run,
        organization=run.organization,
        patient_pseudonym=run.patient_pseudonym,
        model_id=run.model_id,
        model_version=run.model_version,
        finding_key=key,
        kind="risk",
        urgency=Suggestion.Urgency.WARNING,
        urgency_rank=1,
        status=status,
    )
    sealed = seal_json({}, associated_data=suggestion.associated_data)
    suggestion.key_id, suggestion.nonce, suggestion.ciphertext = (
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext,
    )
    return suggestion


def _suggestions(run: InferenceRun, statuses: list[str], *, prefix: str = "f") -> list[Suggestion]:
    return Suggestion.objects.bulk_create(
        [_suggestion(run, status, f"{prefix}-{i}") for i, status in enumerate(statuses)]
    )


def _reject(suggestion: Suggestion, reason: str, clinician: Any) -> None:
    from django.apps import apps

    decision_model: Any = apps.get_model("review", "Decision")
    decision = decision_model(
        suggestion=suggestion,
        organization=suggestion.organization,
        clinician=clinician,
        clinician_display="Dr Ward",
        outcome="rejected",
        reason_code=reason,
        signed_at=timezone.now(),
        signature_sha256="0" * 64,
    )
    sealed = seal_json({}, associated_data=decision.associated_data)
    decision.key_id, decision.nonce, decision.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
    decision.save()


def _has_decisions() -> bool:
    from django.apps import apps

    try:
        apps.get_model("review", "Decision")
    except LookupError:
        return False
    return True


# Personas ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [LIST, DETAIL])
def test_anonymous_is_sent_to_login(client: Client, models_dir: Path, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_anonymous_post_changes_nothing(client: Client, models_dir: Path) -> None:
    response = client.post(CONFIGURE, {"enabled": "off", "pinned_version": "", "reason": "x"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not ModelDeployment.objects.exists()


@pytest.mark.parametrize("url", [LIST, DETAIL])
def test_signed_in_without_a_role_is_refused_on_record(
    member_without_role: Any, models_dir: Path, url: str
) -> None:
    response = _signed_in(member_without_role).get(url)
    assert response.status_code == 403
    [event] = _events("inference.model.view")
    assert event.outcome == "failure" and event.detail["status"] == 403
    assert event.actor_id == str(member_without_role.pk)


def test_clinician_sees_the_list_without_load_errors(clinician: Any, models_dir: Path) -> None:
    response = _signed_in(clinician).get(LIST)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Sepsis watch" in body and f'href="{DETAIL}"' in body
    assert "1.1.0" in body
    assert "failed to load" not in body and "broken" not in body
    [event] = _events("inference.model.view")
    assert event.outcome == "success" and event.detail == {"page": "list", "shown": 1}


def test_admin_sees_manifests_that_failed_to_load(admin: Any, models_dir: Path) -> None:
    body = _signed_in(admin).get(LIST).content.decode()
    assert "Manifests that failed to load" in body
    assert "broken" in body and "not valid JSON" in body


def test_clinician_sees_the_card_and_versions_but_no_switch_or_monitoring(
    clinician: Any, models_dir: Path
) -> None:
    response = _signed_in(clinician).get(DETAIL)
    assert response.status_code == 200
    body = response.content.decode()
    for text in (
        "Flags adults whose lactate suggests sepsis.",
        "Ward nurses and doctors.",
        "The latest lactate.",
        "Rules from a guideline.",
        "Checked against the guideline&#x27;s table.",
        "Boundary cases",
        "12 of 12 pass",
        "Lactate &lt;b&gt;must&lt;/b&gt; be recent.",  # card text is escaped, never markup
        "A guideline, 2024.",
    ):
        assert text in body, text
    for version in ("1.0.0", "1.1.0"):
        manifest = models_dir / MODEL / f"manifest-{version}.json"
        assert hashlib.sha256(manifest.read_bytes()).hexdigest() in body
    assert "http://loinc.org|2524-7" in body
    assert CONFIGURE not in body and "<form" not in body.split("</header>")[1]
    assert "Monitoring" not in body
    [event] = _events("inference.model.view")
    assert event.object_type == "Model" and event.object_id == MODEL
    assert event.detail == {"page": "detail", "monitoring": False}


def test_clinician_post_is_refused_on_record_and_changes_nothing(clinician: Any, models_dir: Path) -> None:
    response = _signed_in(clinician).post(CONFIGURE, {"enabled": "off", "pinned_version": "", "reason": "no"})
    assert response.status_code == 403
    assert not ModelDeployment.objects.exists()
    [event] = _events("inference.model.configure")
    assert event.outcome == "failure" and event.object_id == MODEL
    assert event.detail == {"page": "configure", "status": 403}


def test_auditor_is_not_an_admin_here(auditor: Any, models_dir: Path) -> None:
    http = _signed_in(auditor)
    assert http.get(DETAIL).status_code == 200
    assert http.post(CONFIGURE, {"enabled": "off", "reason": "x"}).status_code == 403
    assert not ModelDeployment.objects.exists()


def test_unknown_model_is_404(clinician: Any, admin: Any, models_dir: Path) -> None:
    assert _signed_in(clinician).get("/models/no-such-model/").status_code == 404
    assert (
        _signed_in(admin)
        .post("/models/no-such-model/configure", {"enabled": "off", "reason": "x"})
        .status_code
        == 404
    )
    assert _signed_in(clinician).get("/models/Bad_Id/").status_code == 404


def test_detail_only_takes_get(clinician: Any, models_dir: Path) -> None:
    assert _signed_in(clinician).post(DETAIL).status_code == 405
    assert _signed_in(clinician).get(CONFIGURE).status_code == 405


# The switch --------------------------------------------------------------------------------------------


def test_admin_sees_the_stop_switch_and_the_form(admin: Any, models_dir: Path) -> None:
    body = _signed_in(admin).get(DETAIL).content.decode()
    assert f'action="{CONFIGURE}"' in body
    assert "Switch Sepsis watch off now" in body
    assert 'name="csrfmiddlewaretoken"' in body
    assert '<option value="1.0.0">1.0.0</option>' in body
    assert "Newest (follows new manifests)" in body
    assert "Monitoring" in body


def test_admin_stop_switch_turns_the_model_off_with_one_audit_row(admin: Any, models_dir: Path) -> None:
    http = _signed_in(admin)
    response = http.post(
        CONFIGURE, {"enabled": "off", "pinned_version": "", "reason": "Alert fatigue on ward 4"}
    )
    assert response.status_code == 302 and response["Location"] == DETAIL
    row = ModelDeployment.objects.get(model_id=MODEL)
    assert row.enabled is False and row.pinned_version == "" and row.reason == "Alert fatigue on ward 4"
    assert row.updated_by_id == admin.pk
    [event] = _events("inference.model.configure")
    assert event.outcome == "success" and event.actor_id == str(admin.pk)
    assert event.detail["enabled"] is False and event.detail["previous_enabled"] is True
    page = http.get(DETAIL).content.decode()
    assert "Sepsis watch is switched off: it runs nothing more." in page
    assert "Switch Sepsis watch off now" not in page  # already off: no stop button, the form turns it on
    listing = http.get(LIST).content.decode()
    assert "Alert fatigue on ward 4" in listing and admin.get_username() in listing


def test_admin_pins_a_version(superuser: Any, models_dir: Path) -> None:
    http = _signed_in(superuser)
    response = http.post(CONFIGURE, {"enabled": "on", "pinned_version": "1.0.0", "reason": "Back to 1.0"})
    assert response.status_code == 302
    row = ModelDeployment.objects.get(model_id=MODEL)
    assert row.enabled is True and row.pinned_version == "1.0.0"
    page = http.get(DETAIL).content.decode()
    assert "Sepsis watch is on, running version 1.0.0 (pinned)." in page
    assert "1.0.0 <strong>(running)</strong>" in page


@pytest.mark.parametrize(
    "data",
    [
        {"enabled": "on", "pinned_version": "9.9.9", "reason": "try"},  # a version the catalogue lacks
        {"enabled": "off", "pinned_version": "", "reason": "   "},  # a change needs a reason
        {"enabled": "maybe", "pinned_version": "", "reason": "x"},
    ],
)
def test_a_refused_change_is_shown_and_changes_nothing(
    admin: Any, models_dir: Path, data: dict[str, str]
) -> None:
    response = _signed_in(admin).post(CONFIGURE, data)
    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was changed." in body and 'role="alert"' in body
    if data["pinned_version"] == "9.9.9":
        assert "9.9.9 is not one of the available choices" in body
    assert not ModelDeployment.objects.exists()
    assert [e.outcome for e in _events("inference.model.configure")] == ["failure"]
    assert "try" not in json.dumps(_events("inference.model.configure")[0].detail)


def test_post_without_csrf_token_is_refused(admin: Any, models_dir: Path) -> None:
    http = Client(enforce_csrf_checks=True)
    http.force_login(admin)
    response = http.post(CONFIGURE, {"enabled": "off", "pinned_version": "", "reason": "x"})
    assert response.status_code == 403
    assert not ModelDeployment.objects.exists()


def test_builtin_catalogue_lists_news2(clinician: Any) -> None:
    catalogue.cache_clear()
    try:
        body = _signed_in(clinician).get(LIST).content.decode()
        detail = _signed_in(clinician).get("/models/news2/")
    finally:
        catalogue.cache_clear()
    assert 'href="/models/news2/"' in body
    assert detail.status_code == 200 and "NEWS2" in detail.content.decode()


# Monitoring --------------------------------------------------------------------------------------------


def _seed(organization: Any, clinician: Any) -> None:
    """Version 1.0.0: 3 runs (2 succeeded, 1 failed), 6 suggestions; 1.1.0: 2 runs (1 skipped), 4
    suggestions; one queued run with no version yet; a retired 0.9.0 still has history."""
    old = _run(organization, "1.0.0")
    _run(organization, "1.0.0")
    _run(organization, "1.0.0", InferenceRun.Status.FAILED)
    made = _suggestions(old, [S.ACCEPTED, S.ACCEPTED, S.MODIFIED, S.REJECTED, S.REJECTED, S.PENDING])
    new = _run(organization, "1.1.0")
    _run(organization, "1.1.0", InferenceRun.Status.SKIPPED)
    made += _suggestions(new, [S.REJECTED, S.ACCEPTED, S.SUPERSEDED, S.WITHDRAWN])
    _run(organization, "", InferenceRun.Status.QUEUED)
    retired = _run(organization, "0.9.0")
    _suggestions(retired, [S.ACCEPTED])
    if _has_decisions():
        rejected = [s for s in made if s.status == S.REJECTED]
        _reject(rejected[0], "not-clinically-relevant", clinician)
        _reject(rejected[1], "not-clinically-relevant", clinician)
        _reject(rejected[2], "data-wrong-or-stale", clinician)


def test_monitoring_counts_per_version(organization: Any, clinician: Any, models_dir: Path) -> None:
    _seed(organization, clinician)
    monitoring = model_monitoring(model_id=MODEL, running_version="1.1.0")
    by_version = {v.version: v for v in monitoring.versions}
    assert [v.version for v in monitoring.versions] == ["1.1.0", "1.0.0", "0.9.0", ""]
    old, new, retired = by_version["1.0.0"], by_version["1.1.0"], by_version["0.9.0"]
    assert (old.runs_succeeded, old.runs_failed, old.runs_skipped) == (2, 1, 0)
    assert (old.made, old.pending, old.accepted, old.modified, old.rejected) == (6, 1, 2, 1, 2)
    assert old.override_rate == pytest.approx(2 / 5)
    assert (new.runs_succeeded, new.runs_skipped, new.made, new.superseded, new.withdrawn) == (1, 1, 4, 1, 1)
    assert new.override_rate == pytest.approx(1 / 2)
    assert new.running and not old.running and old.in_catalogue
    assert not retired.in_catalogue and retired.override_rate == 0
    assert by_version[""].runs_in_progress == 1 and by_version[""].made == 0
    totals = monitoring.totals
    assert (totals.made, totals.decided, totals.rejected, totals.runs_total) == (11, 8, 3, 7)
    assert sum(b.made for b in monitoring.buckets) == 11
    assert monitoring.unit == "day" and monitoring.buckets[-1].made == 11
    if _has_decisions():
        assert monitoring.reasons_recorded
        assert [(r.code, r.count) for r in old.reasons_ranked] == [("not-clinically-relevant", 2)]
        assert [(r.code, r.count) for r in new.reasons_ranked] == [("data-wrong-or-stale", 1)]
        assert new.reasons_ranked[0].label != "data-wrong-or-stale"


def test_no_decided_suggestion_means_no_override_rate(organization: Any, models_dir: Path) -> None:
    _suggestions(_run(organization, "1.1.0"), [S.PENDING, S.PENDING])
    monitoring = model_monitoring(model_id=MODEL)
    assert monitoring.totals.override_rate is None
    assert monitoring.totals.pending == 2


def test_long_spans_are_counted_per_iso_week(organization: Any, models_dir: Path) -> None:
    run = _run(organization, "1.1.0")
    made = _suggestions(run, [S.ACCEPTED, S.REJECTED, S.REJECTED, S.PENDING])
    now = timezone.now()
    for suggestion, days_ago in zip(made, (70, 70, 0, 0), strict=True):
        Suggestion.objects.filter(pk=suggestion.pk).update(created_at=now - timedelta(days=days_ago))
    Suggestion.objects.bulk_create([_suggestion(run, S.ACCEPTED, "too-old")])
    Suggestion.objects.filter(finding_key="too-old").update(created_at=now - timedelta(days=400))
    monitoring = model_monitoring(model_id=MODEL, now=now)
    assert monitoring.unit == "week"
    assert all("-W" in b.label for b in monitoring.buckets)
    assert 10 <= len(monitoring.buckets) <= 12
    first, last = monitoring.buckets[0], monitoring.buckets[-1]
    assert (first.made, first.accepted, first.rejected, first.override_rate) == (2, 1, 1, 0.5)
    assert (last.made, last.rejected, last.pending) == (2, 1, 1)
    assert sum(b.made for b in monitoring.buckets) == 4  # the one from 400 days ago is outside the window
    assert monitoring.totals.made == 5  # but the per-version table counts it


def test_monitoring_page_shows_counts_chart_and_table(
    admin: Any, organization: Any, clinician: Any, models_dir: Path
) -> None:
    _seed(organization, clinician)
    body = _signed_in(admin).get(DETAIL).content.decode()
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="chart-outcomes" role="img"' in body
    assert 'id="chart-override"' in body
    assert "Suggestions made per day, by outcome" in body
    assert "Runs and suggestions per version" in body
    assert "(no longer installed)" in body and "not started yet" in body
    assert "40 %" in body  # 1.0.0: 2 rejected of 5 decided
    if _has_decisions():
        assert "not-clinically-relevant" in body
    [event] = _events("inference.model.view")
    assert event.detail == {"page": "detail", "monitoring": True}


def test_page_queries_do_not_grow_with_the_data(
    admin: Any, organization: Any, clinician: Any, models_dir: Path
) -> None:
    http = _signed_in(admin)
    http.get(DETAIL)  # the first audit row creates the chain head: measure after it
    _suggestions(_run(organization, "1.0.0"), [S.ACCEPTED])
    with CaptureQueriesContext(connection) as small:
        assert http.get(DETAIL).status_code == 200
    with CaptureQueriesContext(connection) as small_list:
        assert http.get(LIST).status_code == 200

    _seed(organization, clinician)
    now = timezone.now()
    for version in ("1.0.0", "1.1.0", "0.8.0", "0.7.0"):
        run = _run(organization, version)
        made = _suggestions(
            run, [S.ACCEPTED, S.MODIFIED, S.REJECTED, S.PENDING] * 10, prefix=f"bulk-{version}"
        )
        for i, suggestion in enumerate(made):
            Suggestion.objects.filter(pk=suggestion.pk).update(created_at=now - timedelta(days=i))
    with CaptureQueriesContext(connection) as large:
        body = http.get(DETAIL).content.decode()
    with CaptureQueriesContext(connection) as large_list:
        assert http.get(LIST).status_code == 200
    assert "0.7.0" in body
    assert len(large.captured_queries) == len(small.captured_queries), [
        q["sql"] for q in large.captured_queries
    ]
    assert len(large_list.captured_queries) == len(small_list.captured_queries)
    assert len(large.captured_queries) <= 25
