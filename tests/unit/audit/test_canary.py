"""A canary patient: "Margaret Okafor" sent in a rejected intake bundle through the real HTTP intake, typed
as a username at the login page and into the console's search boxes. Her name must never appear in any
audit row, console page or export."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.selectors import audit_chain_verify
from tests.factories import obtain_token, post_fhir, sample_bundle

pytestmark = pytest.mark.django_db

NEEDLES = ("Margaret", "Okafor", "MARGARET", "OKAFOR", "margaret", "okafor")


def _assert_clean(text: str, where: str) -> None:
    for needle in NEEDLES:
        assert needle not in text, f"{needle!r} leaked into {where}"


def _every_row_as_text() -> str:
    return json.dumps(list(AuditEvent.objects.order_by("seq").values()), default=str)


def _rejected_bundle() -> dict[str, Any]:
    bundle = sample_bundle()
    patient = bundle["entry"][0]["resource"]
    patient["name"] = [{"family": "Okafor", "given": ["Margaret"], "text": "Margaret Okafor"}]
    patient["gender"] = "banana"  # invalid: the whole transaction is refused
    bundle["entry"][1]["resource"].setdefault("note", []).append(
        {"text": "Margaret Okafor reports chest pain"}
    )
    return bundle


def test_canary_never_reaches_the_audit_log_the_console_or_the_exports(
    client: Client, ehr_client: Any, ehr_token: str, auditor: Any
) -> None:
    refused = post_fhir(client, ehr_token, _rejected_bundle(), headers={"X-Request-Id": "canary-req-1"})
    assert refused.status_code == 422
    assert AuditEvent.objects.filter(action="fhir.intake.refuse", request_id="canary-req-1").exists()

    client.post("/accounts/login/", {"username": "Margaret Okafor", "password": "x"})

    console = Client()
    console.force_login(auditor)
    # The auditor searches for her by name: the searches are recorded, what was typed is not.
    assert console.get("/audit/?object_id=Margaret+Okafor").status_code == 200
    # Nobody is called Okafor here: the console says so (400) rather than showing an empty list.
    assert console.get("/audit/?object_id=Margaret+Okafor&actor_id=Okafor").status_code == 400
    assert console.get("/audit/?patient=MargaretOkafor").status_code == 200
    assert console.get("/audit/patients/MargaretOkafor/").status_code == 200
    assert console.get("/audit/export.ndjson?object_id=Okafor").status_code == 200

    _assert_clean(_every_row_as_text(), "the audit rows")

    pages = {"list": console.get("/audit/").content.decode()}
    for seq in AuditEvent.objects.values_list("seq", flat=True):
        pages[f"event {seq}"] = console.get(f"/audit/events/{seq}/").content.decode()
    pages["verify"] = console.post("/audit/verify/").content.decode()
    export: Any = console.get("/audit/export.ndjson")
    pages["ndjson export"] = b"".join(export.streaming_content).decode()
    read_token = obtain_token(client, ehr_client, scope="system/*.read")
    search = client.get("/fhir/AuditEvent?_count=200", headers={"Authorization": f"Bearer {read_token}"})
    assert search.status_code == 200
    pages["FHIR AuditEvent search"] = search.content.decode()
    for where, text in pages.items():
        _assert_clean(text, where)

    _assert_clean(_every_row_as_text(), "the audit rows, after browsing")
    assert audit_chain_verify().ok


def test_canary_as_an_element_name_of_a_rejected_body(client: Client, ehr_token: str) -> None:
    bundle = sample_bundle()
    bundle["entry"][0]["resource"]["Margaret Okafor"] = "x"
    assert post_fhir(client, ehr_token, bundle).status_code == 422
    _assert_clean(_every_row_as_text(), "the audit rows")
