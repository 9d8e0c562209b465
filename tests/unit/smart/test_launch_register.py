"""Registering the EHRs that may open clinical-ai (SMART App Launch), and the launches refused before
anything is fetched: an iss nobody registered, a disabled one."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from integrations.smart.launch_services import (
    LaunchRegistrationError,
    launch_issuer_register,
    launch_issuer_secret,
)
from integrations.smart.models import SmartLaunchIssuer

pytestmark = pytest.mark.django_db

ISS = "https://ehr.example.org/fhir"


@pytest.fixture(autouse=True)
def _project_urls(settings: Any) -> None:
    settings.ROOT_URLCONF = "clinical_ai.urls"  # the launch lands on the review pages


class _Counting(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Counting.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def listening_ehr() -> Iterator[str]:
    """A real HTTP server on this machine that only counts what is asked of it: a launch from an iss that
    is not registered (or disabled) must ask it nothing."""
    _Counting.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    server.shutdown()
    server.server_close()


def test_command_registers_lists_and_disables(organization: Organization) -> None:
    out = io.StringIO()
    call_command(
        "smart_launch_register",
        "--site",
        organization.slug,
        "--iss",
        ISS + "/",
        "--client-id",
        "cai",
        stdout=out,
    )
    issuer = SmartLaunchIssuer.objects.get()
    assert issuer.iss == ISS  # the trailing slash is not part of it
    assert (issuer.client_id, issuer.staff_claim, issuer.enabled) == ("cai", "fhirUser", True)
    assert issuer.secret_key_id == "" and launch_issuer_secret(issuer) == ""  # public client, PKCE
    text = out.getvalue()
    assert "/launch" in text and "/launch/callback" in text and "launch openid fhirUser" in text
    assert f"staff_link <username> --issuer {ISS}" in text

    out = io.StringIO()
    call_command("smart_launch_register", "--list", stdout=out)
    assert ISS in out.getvalue() and "public" in out.getvalue() and "enabled" in out.getvalue()

    call_command("smart_launch_register", "--iss", ISS, "--disable", stdout=io.StringIO())
    issuer.refresh_from_db()
    assert issuer.enabled is False
    events = list(AuditEvent.objects.filter(action__startswith="smart.launch_issuer").order_by("seq"))
    assert [e.action for e in events] == ["smart.launch_issuer.register", "smart.launch_issuer.disable"]
    assert all(e.actor_id == "manage.py smart_launch_register" for e in events)
    assert events[0].organization == organization.slug and events[0].detail["iss"] == ISS


def test_confidential_client_secret_is_sealed(organization: Organization, monkeypatch: Any) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-value\n"))
    call_command(
        "smart_launch_register",
        *("--site", organization.slug, "--iss", ISS, "--client-id", "cai", "--client-secret-stdin"),
        stdout=io.StringIO(),
    )
    issuer = SmartLaunchIssuer.objects.get()
    assert issuer.secret_key_id and b"s3cret-value" not in bytes(issuer.secret_ciphertext)
    assert launch_issuer_secret(issuer) == "s3cret-value"
    event = AuditEvent.objects.get(action="smart.launch_issuer.register")
    assert event.detail["confidential"] is True and "s3cret" not in str(event.detail)
    # Registering again without a secret makes it a public client again (and says so in the audit).
    launch_issuer_register(organization=organization, iss=ISS, client_id="cai", actor=Actor.system("t"))
    issuer.refresh_from_db()
    assert issuer.secret_key_id == "" and launch_issuer_secret(issuer) == ""


@pytest.mark.parametrize(
    ("iss", "message"),
    [
        ("ftp://ehr.example.org/fhir", "FHIR base URL"),
        ("http://ehr.example.org/fhir", "https"),
        ("https://ehr.example.org/fhir?x=1", "FHIR base URL"),
    ],
)
def test_bad_registrations_store_nothing(organization: Organization, iss: str, message: str) -> None:
    with pytest.raises(LaunchRegistrationError, match=message):
        launch_issuer_register(organization=organization, iss=iss, client_id="cai", actor=Actor.system("t"))
    assert not SmartLaunchIssuer.objects.exists()
    assert not AuditEvent.objects.filter(action="smart.launch_issuer.register").exists()


def test_command_refuses_unknown_site_and_missing_arguments(organization: Organization) -> None:
    with pytest.raises(CommandError, match="no site"):
        call_command("smart_launch_register", "--site", "nowhere", "--iss", ISS, "--client-id", "c")
    with pytest.raises(CommandError, match="--site and --client-id"):
        call_command("smart_launch_register", "--iss", ISS)
    with pytest.raises(CommandError, match="no EHR is registered"):
        call_command("smart_launch_register", "--iss", ISS, "--disable")
    assert not SmartLaunchIssuer.objects.exists()


def test_unregistered_iss_is_refused_without_fetching_anything(client: Client, listening_ehr: str) -> None:
    response = client.get("/launch", {"iss": listening_ehr, "launch": "abc"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "This EHR cannot open clinical-ai" in body and "not registered" in body
    assert _Counting.hits == []  # not even its smart-configuration
    event = AuditEvent.objects.get(action="auth.launch_failed")
    assert event.detail == {"reason": "unknown-issuer", "iss_host": "127.0.0.1"}
    assert event.actor_type == "anonymous" and "_auth_user_id" not in client.session


def test_disabled_issuer_is_refused_without_fetching_anything(
    client: Client, organization: Organization, listening_ehr: str
) -> None:
    issuer, _ = launch_issuer_register(
        organization=organization, iss=listening_ehr, client_id="cai", actor=Actor.system("t")
    )
    SmartLaunchIssuer.objects.filter(pk=issuer.pk).update(enabled=False)
    response = client.get("/launch", {"iss": listening_ehr, "launch": "abc"})
    assert response.status_code == 400
    assert "switched off" in response.content.decode()
    assert _Counting.hits == []
    event = AuditEvent.objects.get(action="auth.launch_failed")
    assert event.detail["reason"] == "issuer-disabled" and event.organization == organization.slug


def test_launch_without_iss_or_launch_is_refused(client: Client, organization: Organization) -> None:
    launch_issuer_register(organization=organization, iss=ISS, client_id="cai", actor=Actor.system("t"))
    assert client.get("/launch").status_code == 400
    response = client.get("/launch", {"iss": ISS})
    assert response.status_code == 400 and "incomplete" in response.content.decode()
    assert [
        e.detail["reason"] for e in AuditEvent.objects.filter(action="auth.launch_failed").order_by("seq")
    ] == [
        "unknown-issuer",
        "no-launch",
    ]


def test_unreachable_ehr_is_a_clear_page(
    client: Client, organization: Organization, listening_ehr: str
) -> None:
    """A registered EHR whose SMART configuration cannot be read (here: it answers 404)."""
    launch_issuer_register(
        organization=organization, iss=listening_ehr, client_id="cai", actor=Actor.system("t")
    )
    response = client.get("/launch", {"iss": listening_ehr, "launch": "abc"})
    assert response.status_code == 502
    assert "cannot be reached" in response.content.decode()
    assert _Counting.hits == ["/fhir/.well-known/smart-configuration"]
    assert AuditEvent.objects.get(action="auth.launch_failed").detail["reason"] == "metadata"


def test_callback_without_a_launch_under_way_is_refused(client: Client) -> None:
    response = client.get("/launch/callback", {"state": "made-up", "code": "x"})
    assert response.status_code == 400
    assert "already been used or has expired" in response.content.decode()
    assert AuditEvent.objects.get(action="auth.launch_failed").detail == {"reason": "state"}
