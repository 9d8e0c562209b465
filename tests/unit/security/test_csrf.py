"""CSRF: every form of the HTML UI refuses a POST without the token, and changes nothing; the only views
exempt from the check are the machine endpoints, which a browser session cannot use (they authenticate by a
bearer token or a CDS Hooks JWT in the Authorization header, which a cross-site form cannot send).

The URLconf is walked as in test_url_matrix: a new view is checked without being listed here, and a new
csrf_exempt view fails until it is added to ``MACHINE_ENDPOINTS`` (and shown not to honour a session) or to
``SELF_CHECKED`` (and shown to refuse a POST without the token).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from clinical_ai.accounts.models import LoginThrottle
from clinical_ai.audit.models import AuditEvent
from clinical_ai.inference.models import ModelDeployment
from clinical_ai.review.models import Decision, Suggestion
from tests.unit.security.conftest import PASSWORD, World
from tests.unit.security.test_url_matrix import Pattern, admin_path, url_patterns

pytestmark = pytest.mark.django_db

# The csrf_exempt views: each authenticates by the Authorization header only (or, for the two "unknown"
# ones, answers a static 404 for everyone, changing nothing).
MACHINE_ENDPOINTS = {
    "smart:token": 400,  # client authentication is the signed assertion in the body; a session is nothing
    "fhir_audit:auditevent-type": 401,
    "fhir_outputs:type": 401,
    "fhir_outputs:instance": 405,  # read only: the method is refused before the token is looked at
    "cds_hooks:discovery": 405,  # GET only
    "cds_hooks:service": 401,
    "cds_hooks:feedback": 401,
    "cds_hooks:unknown": 404,
    "fhir:system": 401,
    "fhir:type": 401,
    "fhir:unknown": 404,
}
# Also exempt: public, read-only views that take GET/HEAD only, so that a POST gets their 405 rather than
# the CSRF check's HTML 403. They read no session and change nothing.
READ_ONLY_PUBLIC = {
    "healthz": "/healthz",
    "readyz": "/readyz",
    "fhir:metadata": "/fhir/metadata",
    "smart:smart-configuration": "/fhir/.well-known/smart-configuration",
    "smart:smart-configuration-root": "/.well-known/smart-configuration",
    # An EHR source's public JWK Set (the gateway's public key, for the EHR to check its assertions).
    "bulk:source_jwks": "/bulk/sources/3f2b8c1e-9a4d-4e7b-8c2a-1d5e6f7a8b9c/jwks.json",
}
# Exempt from the middleware's check but checking the token themselves, before reading what matters: the
# NDJSON upload's handler checks it when the file part begins (the middleware would check it only after the
# whole body, file included, had been read).
SELF_CHECKED = {"bulk:upload": "/bulk/upload"}
_MACHINE_PATHS = {
    "smart:token": "/auth/token",
    "fhir_audit:auditevent-type": "/fhir/AuditEvent",
    "fhir_outputs:type": "/fhir/RiskAssessment",
    "fhir_outputs:instance": "/fhir/RiskAssessment/x",
    "cds_hooks:discovery": "/cds-services",
    "cds_hooks:service": "/cds-services/clinical-ai-patient-view",
    "cds_hooks:feedback": "/cds-services/clinical-ai-patient-view/feedback",
    "cds_hooks:unknown": "/cds-services/x/y",
    "fhir:system": "/fhir",
    "fhir:type": "/fhir/Observation",
    "fhir:unknown": "/fhir/Patient/1",
}


def csrf_exempt_patterns() -> dict[str, Pattern]:
    return {p.key: p for p in url_patterns() if getattr(p.callback, "csrf_exempt", False)}


def test_csrf_exempt_views_are_exactly_the_machine_endpoints() -> None:
    assert set(csrf_exempt_patterns()) == set(MACHINE_ENDPOINTS) | set(READ_ONLY_PUBLIC) | set(SELF_CHECKED)


def test_self_checked_views_refuse_a_post_without_the_token(superuser: Any) -> None:
    """Signed in as a superuser, a multipart POST with a file but no CSRF token is refused (403) and stores
    nothing but its refusal's audit row."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from clinical_ai.intake.models import BulkBatch

    http = Client(enforce_csrf_checks=True)
    http.force_login(superuser)
    for key, path in SELF_CHECKED.items():
        line = b'{"resourceType":"Patient","id":"p1"}\n'
        response = http.post(path, {"file": SimpleUploadedFile("p.ndjson", line)})
        assert response.status_code == 403, (key, response.status_code)
    assert not BulkBatch.objects.exists()


def test_exempt_public_views_take_no_post(clinician: Any) -> None:
    http = Client(enforce_csrf_checks=True)
    http.force_login(clinician)
    for key, path in READ_ONLY_PUBLIC.items():
        assert http.post(path, {"x": "1"}).status_code == 405, key


def test_machine_endpoints_do_not_honour_a_browser_session(clinician: Any, superuser: Any) -> None:
    """A signed-in browser POSTing (no token, no CSRF token) to each exempt view gets no further than a
    request with no credentials at all: the exemption opens nothing to a forged cross-site form."""
    for user in (clinician, superuser):
        http = Client(enforce_csrf_checks=True)
        http.force_login(user)
        before = AuditEvent.objects.filter(outcome="success").count()
        for key, status in MACHINE_ENDPOINTS.items():
            response = http.post(_MACHINE_PATHS[key], data=b"{}", content_type="application/json")
            assert response.status_code == status, (key, response.status_code)
        assert AuditEvent.objects.filter(outcome="success").count() == before


# --- every other view: a POST without the token is refused before the view runs -------------------------


def _concrete_path(pattern: Pattern, world: World) -> str:
    """A URL for a non-exempt pattern (the matrix's rows give the project's; the admin rule the admin's)."""
    from tests.unit.security.test_url_matrix import ROWS

    if pattern.route.startswith("admin/"):
        return admin_path(pattern, 1)
    row = next(row for row in ROWS if row.pattern == pattern.key)
    return row.path(world)


def _state() -> tuple[int, ...]:
    return (
        AuditEvent.objects.count(),
        Decision.objects.count(),
        Suggestion.objects.filter(status=Suggestion.Status.PENDING).count(),
        ModelDeployment.objects.count(),
        LoginThrottle.objects.count(),
    )


def test_every_other_view_refuses_a_post_without_the_csrf_token(world: World, superuser: Any) -> None:
    """Signed in as a superuser (so nothing but the missing token stands in the way), every non-exempt URL
    of the project and of the admin site answers a POST without the token with Django's CSRF 403, and the
    database is as it was."""
    http = Client(enforce_csrf_checks=True)
    http.force_login(superuser)
    before = _state()
    exempt = set(MACHINE_ENDPOINTS) | set(READ_ONLY_PUBLIC) | set(SELF_CHECKED)
    checked = 0
    for pattern in url_patterns():
        if pattern.key in exempt:
            continue
        path = _concrete_path(pattern, world)
        response = http.post(path, {"password": PASSWORD, "outcome": "accepted", "reason": "csrf"})
        assert response.status_code == 403, (pattern.key, path, response.status_code)
        assert b"CSRF verification failed" in response.content, (pattern.key, path)
        checked += 1
    assert checked > 60
    assert _state() == before


# --- the forms people use, each by the person who could use it: refused without the token, and accepted
# with it (so the refusal is the token's doing, not a wrong form).


@dataclass(frozen=True)
class Form:
    name: str
    user: str  # the fixture signed in ("" for nobody)
    path: Callable[[World], str]
    data: dict[str, str]
    done: Callable[[World, Any], bool]  # whether the POST took effect


def _signed_in(world: World, response: Any) -> bool:
    return "_auth_user_id" in response.client.session


def _decided(world: World, response: Any) -> bool:
    return Decision.objects.filter(suggestion=world.suggestion).exists()


def _switched_off(world: World, response: Any) -> bool:
    return ModelDeployment.objects.filter(model_id=world.model_id, enabled=False).exists()


def _verified(world: World, response: Any) -> bool:
    return AuditEvent.objects.filter(action="audit.verify").exists()


def _signed_out(world: World, response: Any) -> bool:
    return "_auth_user_id" not in response.client.session


FORMS = (
    Form(
        "login", "", lambda w: "/accounts/login/", {"username": "dr-ward", "password": PASSWORD}, _signed_in
    ),
    Form(
        "admin login",
        "",
        lambda w: "/admin/login/",
        {"username": "dr-ward", "password": PASSWORD},
        _signed_in,
    ),
    Form("logout", "clinician", lambda w: "/accounts/logout/", {}, _signed_out),
    Form("admin logout", "admin", lambda w: "/admin/logout/", {}, _signed_out),
    Form(
        "sign-off",
        "clinician",
        lambda w: f"/review/suggestions/{w.suggestion.external_id}/sign/",
        {"outcome": "accepted", "password": PASSWORD},
        _decided,
    ),
    Form(
        "model switch",
        "admin",
        lambda w: f"/models/{w.model_id}/configure",
        {"enabled": "off", "reason": "stop it", "pinned_version": ""},
        _switched_off,
    ),
    Form("audit verify", "auditor", lambda w: "/audit/verify/", {}, _verified),
)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.name)
def test_a_form_without_the_token_is_refused_and_with_it_accepted(
    form: Form, world: World, request: pytest.FixtureRequest
) -> None:
    user = request.getfixturevalue(form.user) if form.user else None
    http = Client(enforce_csrf_checks=True)
    if user is not None:
        http.force_login(user)
    else:
        request.getfixturevalue("clinician")
    http.get("/accounts/login/")  # the page that sets the CSRF cookie, as a browser would have it
    token = http.cookies["csrftoken"].value
    before = _state()
    refused = http.post(form.path(world), form.data)
    assert refused.status_code == 403 and b"CSRF verification failed" in refused.content
    assert not form.done(world, refused)
    assert _state() == before
    accepted = http.post(form.path(world), {**form.data, "csrfmiddlewaretoken": token})
    assert accepted.status_code in (200, 302), accepted.status_code
    assert form.done(world, accepted)
