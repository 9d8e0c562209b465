"""Shadow versions: a second version of a hospital's TorchScript model runs beside the running one on the
same de-identified inputs and stores only its results; the agreement report; promotion and rollback, each
one audited change that the next batch obeys; the admin page and the shell command."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.inference.models import InferenceRun, ModelDeployment, ShadowRun
from clinical_ai.inference.registry import catalogue, deployment_state
from clinical_ai.inference.selectors import shadow_agreement
from clinical_ai.inference.switches import (
    SwitchRefused,
    model_configure,
    model_promote,
    model_rollback,
    model_shadow_set,
)
from clinical_ai.review.models import OutputResource, Suggestion
from tests.pipeline import bundle_process
from tests.unit.audit import personas
from tests.unit.inference.hospital_model import write_hospital_model

pytestmark = pytest.mark.django_db

clinician = personas.clinician
admin = personas.admin

MODEL = "ward-deterioration"
DETAIL = f"/models/{MODEL}/"
SYSTEM = Actor.system("tests")


def _write_version(folder: Path, version: str, **changes: Any) -> None:
    path = write_hospital_model(folder, version=version, default_enabled=True)
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest), encoding="utf-8")


@pytest.fixture
def two_versions(tmp_path: Path, settings: Any) -> Iterator[Path]:
    """1.0.0 and 1.1.0: the same weights, but 1.1.0 calls critical only from 0.9 (the sample bundle's
    HR 112 and RR 24 score about 0.77: critical for 1.0.0, warning for 1.1.0)."""
    folder = tmp_path / "models"
    _write_version(folder / "v1", "1.0.0")
    _write_version(folder / "v2", "1.1.0", thresholds={"warning": 0.3, "critical": 0.9})
    settings.INFERENCE_MODEL_DIRS = [folder]
    catalogue.cache_clear()
    yield folder
    catalogue.cache_clear()


@pytest.fixture
def shadowed(two_versions: Path) -> None:
    model_configure(actor=SYSTEM, model_id=MODEL, enabled=True, pinned_version="1.0.0", reason="live")
    model_shadow_set(actor=SYSTEM, model_id=MODEL, version="1.1.0", reason="compare")


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def _signed_in(user: Any) -> Client:
    http = Client()
    http.force_login(user)
    return http


# Running in shadow -------------------------------------------------------------------------------------


def test_shadow_runs_beside_the_active_run_and_creates_no_suggestions(
    client: Client, ehr_client: Any, shadowed: None
) -> None:
    suggestions = bundle_process(client, ehr_client)
    assert [(s.model_version, s.urgency) for s in suggestions] == [("1.0.0", "critical")]
    assert not Suggestion.objects.filter(model_version="1.1.0").exists()
    # The Device and GuidanceResponse of the active run only: the shadow writes no FHIR output.
    assert OutputResource.objects.filter(resource_type="Device").count() == 1
    assert set(OutputResource.objects.exclude(run=None).values_list("run_id", flat=True)) == {
        suggestions[0].run_id
    }
    [shadow] = ShadowRun.objects.all()
    active = InferenceRun.objects.get(model_id=MODEL)
    assert shadow.active_run == active and shadow.status == ShadowRun.Status.SUCCEEDED
    assert shadow.model_version == "1.1.0" and shadow.input_sha256 == active.input_sha256
    [finding] = shadow.result["findings"]
    assert finding["urgency"] == "warning" and finding["band"] == "medium"
    assert shadow.active_result["findings"][0]["urgency"] == "critical"
    assert shadow.result["features"] == active.features
    [event] = _events("inference.shadow.run")
    assert event.object_id == str(shadow.external_id) and event.patient_pseudonym == active.patient_pseudonym
    assert event.detail["active_run"] == str(active.external_id) and event.detail["status"] == "succeeded"
    assert "inference.shadow.run" not in [
        e.action for e in AuditEvent.objects.filter(object_id=str(active.external_id))
    ]


def test_the_agreement_report_counts_the_pairs(client: Client, ehr_client: Any, shadowed: None) -> None:
    bundle_process(client, ehr_client)
    report = shadow_agreement(MODEL, "1.1.0")
    assert report.pairs == 1
    assert report.same_top == 0 and report.same_top_rate == 0.0  # critical/high against warning/medium
    assert report.same_keys == 1 and report.jaccard_mean == 1.0  # the same finding proposed
    assert report.mean_abs_score_difference == 0.0  # the same weights
    assert report.failed == report.skipped == report.queued == 0
    [disagreement] = report.disagreements
    shadow = ShadowRun.objects.get()
    assert disagreement.shadow_run == str(shadow.external_id)
    assert disagreement.active_run == str(shadow.active_run.external_id)
    assert (disagreement.active_top, disagreement.shadow_top) == ("critical high", "warning medium")
    assert shadow_agreement(MODEL, "9.9.9").pairs == 0


def test_a_disabled_model_runs_neither_version(client: Client, ehr_client: Any, shadowed: None) -> None:
    model_configure(actor=SYSTEM, model_id=MODEL, enabled=False, pinned_version="1.0.0", reason="stop")
    bundle_process(client, ehr_client)
    assert not InferenceRun.objects.filter(model_id=MODEL).exists()
    assert not ShadowRun.objects.exists() and not Suggestion.objects.exists()


def test_a_shadow_stopped_before_the_batch_runs_is_skipped_at_once(
    client: Client, ehr_client: Any, shadowed: None, monkeypatch: Any
) -> None:
    from clinical_ai.pipeline import worker as pipeline

    original = pipeline.inference_runs_create  # type: ignore[attr-defined]

    def stop_after_create(**kwargs: Any) -> Any:
        created = original(**kwargs)
        assert ShadowRun.objects.filter(status=ShadowRun.Status.QUEUED).count() == 1
        model_shadow_set(actor=SYSTEM, model_id=MODEL, version="", reason="enough")
        return created

    monkeypatch.setattr(pipeline, "inference_runs_create", stop_after_create)
    suggestions = bundle_process(client, ehr_client)
    assert len(suggestions) == 1  # the active run is untouched
    shadow = ShadowRun.objects.get()
    assert shadow.status == ShadowRun.Status.SKIPPED and shadow.result == {}
    assert shadow_agreement(MODEL, "1.1.0").skipped == 1


def test_a_shadow_that_fails_to_load_never_fails_the_active_run(
    client: Client, ehr_client: Any, tmp_path: Path, settings: Any
) -> None:
    folder = tmp_path / "models"
    _write_version(folder / "v1", "1.0.0")
    # A name of its own: this manifest's sha256 is new, so no process has loaded it already.
    _write_version(folder / "v2", "1.1.0", name=f"Ward deterioration {uuid.uuid4().hex[:8]}")
    (folder / "v2" / "model.pt").write_bytes(b"tampered")
    settings.INFERENCE_MODEL_DIRS = [folder]
    catalogue.cache_clear()
    try:
        model_configure(actor=SYSTEM, model_id=MODEL, enabled=True, pinned_version="1.0.0", reason="x")
        model_shadow_set(actor=SYSTEM, model_id=MODEL, version="1.1.0", reason="x")
        suggestions = bundle_process(client, ehr_client)
    finally:
        catalogue.cache_clear()
    assert len(suggestions) == 1 and suggestions[0].run.status == InferenceRun.Status.SUCCEEDED
    shadow = ShadowRun.objects.get()
    assert shadow.status == ShadowRun.Status.FAILED and "sha256" in shadow.error.lower()
    [event] = _events("inference.shadow.run")
    assert event.outcome == "failure"


# Promotion and rollback --------------------------------------------------------------------------------


def test_promotion_pins_the_shadow_version_with_one_audit_row(shadowed: None) -> None:
    change = model_promote(actor=SYSTEM, model_id=MODEL, reason="agrees well")
    state = deployment_state(MODEL)
    assert state.manifest is not None and state.manifest.version == "1.1.0" and state.enabled
    row = ModelDeployment.objects.get(model_id=MODEL)
    assert (row.pinned_version, row.shadow_version, row.previous_version) == ("1.1.0", "", "1.0.0")
    assert (change.running_version, change.previous_running_version) == ("1.1.0", "1.0.0")
    [event] = _events("inference.model.promote")
    assert event.object_id == MODEL and event.outcome == "success"
    assert event.detail["previous_running_version"] == "1.0.0"
    assert event.detail["running_version"] == "1.1.0" and event.detail["reason"] == "agrees well"
    with pytest.raises(SwitchRefused, match="no shadow version"):
        model_promote(actor=SYSTEM, model_id=MODEL)
    assert len(_events("inference.model.promote")) == 1


def test_rollback_pins_the_previous_version_back_with_one_audit_row(shadowed: None) -> None:
    model_promote(actor=SYSTEM, model_id=MODEL, reason="go")
    model_rollback(actor=SYSTEM, model_id=MODEL, reason="alerts doubled")
    state = deployment_state(MODEL)
    assert state.manifest is not None and state.manifest.version == "1.0.0"
    [event] = _events("inference.model.rollback")
    assert event.detail["previous_running_version"] == "1.1.0"
    assert event.detail["running_version"] == "1.0.0"
    with pytest.raises(SwitchRefused, match="no earlier version"):
        model_rollback(actor=SYSTEM, model_id=MODEL)
    assert len(_events("inference.model.rollback")) == 1


def test_the_next_batch_runs_the_promoted_version(client: Client, ehr_client: Any, shadowed: None) -> None:
    model_promote(actor=SYSTEM, model_id=MODEL, reason="go")
    suggestions = bundle_process(client, ehr_client)
    assert [(s.model_version, s.urgency) for s in suggestions] == [("1.1.0", "warning")]
    assert not ShadowRun.objects.exists()  # promotion stopped the shadow


def test_shadow_refusals(two_versions: Path) -> None:
    with pytest.raises(SwitchRefused, match="no version"):
        model_shadow_set(actor=SYSTEM, model_id=MODEL, version="9.9.9")
    with pytest.raises(SwitchRefused, match="running version"):
        model_shadow_set(actor=SYSTEM, model_id=MODEL, version="1.1.0")  # the newest runs unpinned
    with pytest.raises(SwitchRefused, match="no model"):
        model_shadow_set(actor=SYSTEM, model_id="nope", version="")
    assert not ModelDeployment.objects.exists() and not _events("inference.model.shadow")


def test_the_shell_command_sets_promotes_and_rolls_back(two_versions: Path) -> None:
    call_command("model_switch", MODEL, "--pin", "1.0.0", "--enable")
    call_command("model_switch", MODEL, "--shadow", "1.1.0", "--reason", "try")
    assert ModelDeployment.objects.get(model_id=MODEL).shadow_version == "1.1.0"
    call_command("model_switch", MODEL, "--promote")
    assert ModelDeployment.objects.get(model_id=MODEL).pinned_version == "1.1.0"
    call_command("model_switch", MODEL, "--rollback")
    assert ModelDeployment.objects.get(model_id=MODEL).pinned_version == "1.0.0"
    assert [len(_events(f"inference.model.{a}")) for a in ("shadow", "promote", "rollback")] == [1, 1, 1]
    assert all(e.actor_id == "manage.py model_switch" for e in _events("inference.model.promote"))


# The page ----------------------------------------------------------------------------------------------


def test_admin_sees_the_shadow_section_and_clinician_does_not(
    admin: Any, clinician: Any, shadowed: None
) -> None:
    body = _signed_in(admin).get(DETAIL).content.decode()
    assert "Shadow version and promotion" in body
    assert f'action="{DETAIL}shadow"' in body and f'action="{DETAIL}promote"' in body
    assert "Pairs compared" in body and "Promote version 1.1.0" in body
    assert f'action="{DETAIL}rollback"' not in body  # nothing promoted yet
    assert "Shadow version and promotion" not in _signed_in(clinician).get(DETAIL).content.decode()


@pytest.mark.parametrize("page", ["shadow", "promote", "rollback"])
def test_non_admin_post_is_403_on_record_and_changes_nothing(
    clinician: Any, shadowed: None, page: str
) -> None:
    before = ModelDeployment.objects.values().get(model_id=MODEL)
    response = _signed_in(clinician).post(f"{DETAIL}{page}", {"version": "", "reason": "x"})
    assert response.status_code == 403
    assert ModelDeployment.objects.values().get(model_id=MODEL) == before
    [event] = [e for e in _events(f"inference.model.{page}") if e.outcome == "failure"]
    assert event.detail == {"page": page, "status": 403} and event.actor_id == str(clinician.pk)


def test_admin_sets_promotes_and_rolls_back_from_the_page(admin: Any, two_versions: Path) -> None:
    http = _signed_in(admin)
    model_configure(actor=SYSTEM, model_id=MODEL, enabled=True, pinned_version="1.0.0", reason="live")
    response = http.post(f"{DETAIL}shadow", {"version": "1.1.0", "reason": "compare"})
    assert response.status_code == 302 and response["Location"] == DETAIL
    assert ModelDeployment.objects.get(model_id=MODEL).shadow_version == "1.1.0"
    assert http.post(f"{DETAIL}promote", {"reason": "good"}).status_code == 302
    page = http.get(DETAIL).content.decode()
    assert "now runs version 1.1.0 (was 1.0.0)" in page and "Roll back to version 1.0.0" in page
    assert http.post(f"{DETAIL}rollback", {"reason": "bad"}).status_code == 302
    assert deployment_state(MODEL).pinned_version == "1.0.0"
    for action in ("shadow", "promote", "rollback"):
        [event] = _events(f"inference.model.{action}")
        assert event.outcome == "success" and event.actor_id == str(admin.pk)


def test_a_refused_change_from_the_page_is_400_and_changes_nothing(admin: Any, shadowed: None) -> None:
    http = _signed_in(admin)
    response = http.post(f"{DETAIL}rollback", {"reason": "nothing promoted"})
    assert response.status_code == 400
    assert "Nothing was changed." in response.content.decode()
    assert "no earlier version" in response.content.decode()
    assert http.post(f"{DETAIL}promote", {"reason": "  "}).status_code == 400  # a reason is required
    assert ModelDeployment.objects.get(model_id=MODEL).pinned_version == "1.0.0"
    assert [e.outcome for e in _events("inference.model.rollback")] == ["failure"]


def test_post_without_csrf_token_is_refused(admin: Any, shadowed: None) -> None:
    http = Client(enforce_csrf_checks=True)
    http.force_login(admin)
    assert http.post(f"{DETAIL}promote", {"reason": "x"}).status_code == 403
    assert ModelDeployment.objects.get(model_id=MODEL).shadow_version == "1.1.0"
