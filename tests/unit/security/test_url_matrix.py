"""Every URL of the project, by persona: who gets in, who is sent to sign in, who gets a 401, 403 or 404.

The URLconf is walked (``get_resolver()``, through every include, the admin site's too) and the test fails
when a pattern has no entry here: a new URL cannot ship without its row. Each row builds a concrete URL
from the fixtures (a suggestion of our site and of another site, their FHIR output resources, a model of
the catalogue, an audit event, a patient's pseudonym) and gives the answer each persona must get:

- anonymous: HTML pages redirect to the sign-in page; API endpoints answer a bare 401;
- a clinician of our site: clinical pages; never the audit console or the model switches (403);
- a clinician of another site: 404 on every object of our site, as if it did not exist;
- an auditor: read-only: the audit console, the queue and suggestions, never a decision or a switch;
- an admin (staff) of our site: the switches (an empty form is a 400: the gate was passed), the admin site;
- our EHR's client: a SMART bearer token (a CDS Hooks JWT on CDS Hooks URLs) opens the machine endpoints
  and never an HTML page (it is anonymous there); a session never opens a machine endpoint.

Requests that would change something carry an empty (invalid) body: the answer proves the gate was passed
or not, and nothing is written.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django_otp.plugins.otp_totp.models import TOTPDevice

from integrations.bulk.keys import private_key_seal, signing_key_generate
from integrations.bulk.models import EhrSource
from integrations.cds_hooks.models import CdsIssuer
from tests.factories import EhrIdentity, obtain_token
from tests.unit.cds_hooks.conftest import KeyPair, hook_body, sign_jwt
from tests.unit.security.conftest import World

pytestmark = pytest.mark.django_db

PERSONAS = ("anonymous", "clinician", "other_site_clinician", "auditor", "admin", "ehr_client")
LOGIN = "login"  # 302 to /accounts/login/
ADMIN_LOGIN = "admin-login"  # 302 to /admin/login/
CDS_BASE = "http://testserver/cds-services"
CDS_SERVICE = "clinical-ai-patient-view"

ADMIN_INSIDE = "302 -> /admin/*"  # a redirect within the admin site (e.g. to the index, or to /change/)

Expected = int | str | frozenset[int | str]


@dataclass(frozen=True)
class Row:
    """One request to a URL pattern and what each persona gets. ``expect`` maps persona to answer;
    ``default`` covers the personas not named."""

    pattern: str  # the pattern's key (see ``pattern_key``)
    path: Callable[[World], str]
    expect: dict[str, Expected]
    method: str = "GET"
    body: Any = None  # JSON-encoded when a dict
    content_type: str = "application/json"
    cds: bool = False  # the EHR authenticates with a CDS Hooks JWT (aud = the URL) instead of a SMART token
    label: str = ""


def html(
    anonymous: Expected = LOGIN,
    clinician: Expected = 200,
    other_site_clinician: Expected = 200,
    auditor: Expected = 200,
    admin: Expected = 200,
    ehr_client: Expected = LOGIN,
) -> dict[str, Expected]:
    """An HTML page: anonymous and the EHR's token go to the sign-in page by default."""
    return {
        "anonymous": anonymous,
        "clinician": clinician,
        "other_site_clinician": other_site_clinician,
        "auditor": auditor,
        "admin": admin,
        "ehr_client": ehr_client,
    }


def api(ehr_client: Expected, others: Expected = 401) -> dict[str, Expected]:
    """A machine endpoint: only the EHR's token counts; a browser session is nobody (bare 401)."""
    return {**{persona: others for persona in PERSONAS}, "ehr_client": ehr_client}


def everyone(status: Expected) -> dict[str, Expected]:
    return {persona: status for persona in PERSONAS}


AUDIT_ONLY = html(clinician=403, other_site_clinician=403)
ADMIN_ONLY = html(clinician=403, other_site_clinician=403, auditor=403)
SWITCH = html(clinician=403, other_site_clinician=403, auditor=403, admin=400)


def _source_path(world: World, own: bool) -> str:
    """Our site's (or another site's) EHR source, made on first use without an audit row (callers compare
    the audit table before and after their requests)."""
    organization = (world.suggestion if own else world.other_suggestion).organization
    source = EhrSource.objects.filter(organization=organization).first()
    if source is None:
        key = signing_key_generate("ES384")
        source = EhrSource(
            organization=organization,
            name=f"ehr-{organization.slug}",
            fhir_base_url="https://ehr.example/fhir",
            client_id="gateway",
            key_id=key.key_id,
        )
        sealed = private_key_seal(key.private_pem, associated_data=source.private_key_associated_data)
        source.private_key_key_id, source.private_key_nonce = sealed.key_id, sealed.nonce
        source.private_key_ciphertext = sealed.ciphertext
        source.save()
    return f"/bulk/sources/{source.external_id}"


def _output_path(world: World, own: bool) -> str:
    output = world.output if own else world.other_output
    return f"/fhir/{output.resource_type}/{output.resource_id}"


ROWS: tuple[Row, ...] = (
    # Public: probes, the FHIR CapabilityStatement, SMART configuration; the sign-in page.
    Row("healthz", lambda w: "/healthz", everyone(200)),
    Row("readyz", lambda w: "/readyz", everyone(frozenset({200, 503}))),
    Row("fhir:metadata", lambda w: "/fhir/metadata", everyone(200)),
    Row("smart:smart-configuration", lambda w: "/fhir/.well-known/smart-configuration", everyone(200)),
    Row("smart:smart-configuration-root", lambda w: "/.well-known/smart-configuration", everyone(200)),
    Row("accounts:login", lambda w: "/accounts/login/", everyone(200)),
    # The token endpoint authenticates the client by its assertion, in the body: none here, so refused.
    Row("smart:token", lambda w: "/auth/token", everyone(400), method="POST", body={}),
    # Single sign-on and the EHR launch: answers from a provider that came without a state this session
    # sent (nothing is fetched, nothing changes); single sign-on is not configured in the tests' settings.
    Row("accounts:sso_login", lambda w: "/accounts/sso/login/", everyone(404)),
    Row("accounts:sso_callback", lambda w: "/accounts/sso/callback/?code=x&state=y", everyone(404)),
    Row(
        "smart:launch", lambda w: "/launch?iss=https%3A%2F%2Fehr.example%2Ffhir&launch=abc", everyone(400)
    ),  # not registered
    Row("smart:launch-callback", lambda w: "/launch/callback?code=x&state=y", everyone(400)),
    # No signature waiting in this session: back to the queue, nothing signed.
    Row(
        "review:signature_callback",
        lambda w: "/review/signature/callback/?code=x&state=y",
        html(
            clinician="302 -> /review/",
            other_site_clinician="302 -> /review/",
            auditor="302 -> /review/",
            admin="302 -> /review/",
        ),
    ),
    # Signed-in pages.
    Row("home", lambda w: "/", html()),
    Row("accounts:logout", lambda w: "/accounts/logout/", everyone(LOGIN), method="POST"),
    Row("accounts:otp", lambda w: "/accounts/otp/", html()),
    # Nothing to verify for a session without a device: back to the sign-in page, for everyone.
    # Nothing to verify: the anonymous go to sign in, the signed-in to their role's work (issue 15 point 7).
    Row(
        "accounts:otp_verify",
        lambda w: "/accounts/otp/verify/",
        {
            **everyone(LOGIN),
            "clinician": "302 -> /review/",
            "other_site_clinician": "302 -> /review/",
            "auditor": "302 -> /audit/",
            "admin": "302 -> /models/",
        },
    ),
    # The audit console: auditors and admins (of any site: the log is one, docs/audit.md), read-only.
    Row("audit:list", lambda w: "/audit/", AUDIT_ONLY),
    Row("audit:event", lambda w: f"/audit/events/{w.audit_seq}/", AUDIT_ONLY),
    Row("audit:verify", lambda w: "/audit/verify/", AUDIT_ONLY, method="POST"),
    Row("audit:patient", lambda w: f"/audit/patients/{w.pseudonym}/", AUDIT_ONLY),
    Row("audit:export", lambda w: "/audit/export.ndjson", AUDIT_ONLY),
    # Review: everyone with a role sees their own sites' queue; objects of another site are 404.
    Row("review:queue", lambda w: "/review/", html()),
    Row(
        "review:suggestion",
        lambda w: f"/review/suggestions/{w.suggestion.external_id}/",
        html(other_site_clinician=404),
        label="our site's",
    ),
    Row(
        "review:suggestion",
        lambda w: f"/review/suggestions/{w.other_suggestion.external_id}/",
        html(clinician=404, auditor=404, admin=404),
        label="another site's",
    ),
    # Signing: clinicians of the site only (an empty form is a 400: the gate was passed); auditors and
    # admins are read-only (403); another site's suggestion does not exist (404).
    Row(
        "review:sign_off",
        lambda w: f"/review/suggestions/{w.suggestion.external_id}/sign/",
        html(clinician=400, other_site_clinician=404, auditor=403, admin=403),
        method="POST",
        label="our site's",
    ),
    Row(
        "review:sign_off",
        lambda w: f"/review/suggestions/{w.other_suggestion.external_id}/sign/",
        html(clinician=404, other_site_clinician=400, auditor=404, admin=404),
        method="POST",
        label="another site's",
    ),
    # EHR sources (Bulk Data pulls): the page and Pull now for admins of the source's site (an empty form
    # is a 400: the gate was passed); another site's source does not exist for them; the JWK Set is public
    # (public keys only: the EHR fetches it to check our client assertions).
    Row("bulk:source_list", lambda w: "/bulk/sources/", ADMIN_ONLY),
    Row(
        "bulk:source_pull",
        lambda w: f"{_source_path(w, True)}/pull",
        html(clinician=403, other_site_clinician=403, auditor=403, admin=400),
        method="POST",
        label="our site's",
    ),
    Row(
        "bulk:source_pull",
        lambda w: f"{_source_path(w, False)}/pull",
        html(clinician=403, other_site_clinician=403, auditor=403, admin=404),
        method="POST",
        label="another site's",
    ),
    Row(
        "bulk:source_cancel",
        lambda w: f"{_source_path(w, True)}/cancel",
        html(clinician=403, other_site_clinician=403, auditor=403, admin=400),
        method="POST",
        label="our site's",
    ),
    Row(
        "bulk:source_cancel",
        lambda w: f"{_source_path(w, False)}/cancel",
        html(clinician=403, other_site_clinician=403, auditor=403, admin=404),
        method="POST",
        label="another site's",
    ),
    Row("bulk:source_jwks", lambda w: f"{_source_path(w, True)}/jwks.json", everyone(200)),
    # The NDJSON upload: admins only; a POST with no file part stores nothing and goes back to the page.
    Row(
        "bulk:upload",
        lambda w: "/bulk/upload",
        html(clinician=403, other_site_clinician=403, auditor=403, admin="302 -> /bulk/sources/"),
        method="POST",
    ),
    # Models: the catalogue and cards for everyone with a role; the switches for admins only.
    Row("inference:model_list", lambda w: "/models/", html()),
    Row("inference:model_detail", lambda w: f"/models/{w.model_id}/", html()),
    Row("inference:model_configure", lambda w: f"/models/{w.model_id}/configure", SWITCH, method="POST"),
    Row("inference:model_shadow", lambda w: f"/models/{w.model_id}/shadow", SWITCH, method="POST"),
    Row("inference:model_promote", lambda w: f"/models/{w.model_id}/promote", SWITCH, method="POST"),
    Row("inference:model_rollback", lambda w: f"/models/{w.model_id}/rollback", SWITCH, method="POST"),
    # FHIR REST: the EHR's token only. Intake with an empty body: 400 once authenticated.
    Row(
        "fhir:system",
        lambda w: "/fhir",
        api(frozenset({400, 422})),
        method="POST",
        body={},
        content_type="application/fhir+json",
    ),
    Row(
        "fhir:type",
        lambda w: "/fhir/Observation",
        api(frozenset({400, 422})),
        method="POST",
        body={},
        content_type="application/fhir+json",
    ),
    # The EHR's own organization's events only (docs/audit.md); system/*.read includes AuditEvent.read.
    Row("fhir_audit:auditevent-type", lambda w: "/fhir/AuditEvent", api(200)),
    Row("fhir_outputs:type", lambda w: "/fhir/RiskAssessment", api(200)),
    Row("fhir_outputs:instance", lambda w: _output_path(w, True), api(200), label="our site's"),
    Row("fhir_outputs:instance", lambda w: _output_path(w, False), api(404), label="another site's"),
    # CDS Hooks: the EHR's JWT (aud: the URL called) only; discovery too.
    Row("cds_hooks:discovery", lambda w: "/cds-services", api(200), cds=True),
    Row(
        "cds_hooks:service",
        lambda w: f"/cds-services/{CDS_SERVICE}",
        api(200),
        method="POST",
        body=hook_body(),
        cds=True,
    ),
    Row(
        "cds_hooks:feedback",
        lambda w: f"/cds-services/{CDS_SERVICE}/feedback",
        api(400),
        method="POST",
        body={"feedback": []},  # authenticated, then refused for its (empty) content
        cds=True,
    ),
    # Any other path under /cds-services/: a static JSON 404 for everyone, naming nothing.
    Row("cds_hooks:unknown", lambda w: "/cds-services/no/such/service", everyone(404)),
    # Any other path under the FHIR base: a static OperationOutcome 404 for everyone, naming nothing.
    Row("fhir:unknown", lambda w: "/fhir/Patient/123", everyone(404)),
)


# --- the URLconf ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    key: str  # "namespace:name", or the full route for an unnamed pattern
    route: str
    callback: Any = field(compare=False)


def url_patterns(
    patterns: list[URLPattern | URLResolver] | None = None, prefix: str = "", namespace: str = ""
) -> Iterator[Pattern]:
    """Every pattern of the URLconf, through every include."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            inner = namespace + (f"{entry.namespace}:" if entry.namespace else "")
            yield from url_patterns(entry.url_patterns, prefix + str(entry.pattern), inner)
        else:
            route = prefix + str(entry.pattern)
            key = f"{namespace}{entry.name}" if entry.name else route
            yield Pattern(key, route, entry.callback)


def is_admin(pattern: Pattern) -> bool:
    return pattern.route.startswith("admin/")


# --- the personas' clients --------------------------------------------------------------------------------


@dataclass
class Personas:
    users: dict[str, Any]
    ehr_token: str
    cds_key: KeyPair

    def request(self, persona: str, row: Row, path: str) -> Any:
        http = Client()
        headers: dict[str, str] = {}
        if persona == "ehr_client":
            token = (
                sign_jwt(self.cds_key, aud=CDS_BASE + path.removeprefix("/cds-services"))
                if row.cds
                else (self.ehr_token)
            )
            headers["Authorization"] = f"Bearer {token}"
        elif persona != "anonymous":
            http.force_login(self.users[persona])
        if row.method == "GET":
            return http.get(path, headers=headers)
        data = json.dumps(row.body).encode("utf-8") if isinstance(row.body, dict) else b""
        content_type = row.content_type if row.body is not None else "application/x-www-form-urlencoded"
        return http.post(path, data=data, content_type=content_type, headers=headers)


@pytest.fixture
def personas(
    clinician: Any,
    other_site_clinician: Any,
    auditor: Any,
    admin: Any,
    ehr_client: EhrIdentity,
    cds_issuer: CdsIssuer,
    cds_key: KeyPair,
) -> Personas:
    token = obtain_token(Client(), ehr_client, scope="system/*.write system/*.read")
    users = {
        "clinician": clinician,
        "other_site_clinician": other_site_clinician,
        "auditor": auditor,
        "admin": admin,
    }
    return Personas(users, token, cds_key)


def answer(response: Any) -> str:
    status = int(response.status_code)
    if status in (301, 302):
        location = str(response["Location"])
        if location.startswith("/accounts/login/"):
            return LOGIN
        if location.startswith("/admin/login/"):
            return ADMIN_LOGIN
        return f"{status} -> {location}"
    return str(status)


def matches(got: str, expected: Expected) -> bool:
    """``got`` is one of the answers expected; an expected answer ending in ``*`` is a prefix."""
    options = expected if isinstance(expected, frozenset) else frozenset({expected})
    return any(
        got.startswith(str(option)[:-1]) if str(option).endswith("*") else got == str(option)
        for option in options
    )


# --- the tests ------------------------------------------------------------------------------------------


def test_every_url_pattern_has_a_row() -> None:
    """A URL added without a row here (or an admin pattern the admin rule does not know) fails."""
    covered = {row.pattern for row in ROWS}
    missing = [
        p.key for p in url_patterns() if not (p.key in covered or (is_admin(p) and admin_kind(p) is not None))
    ]
    assert missing == [], f"URL patterns without a persona row: {missing}"
    known = {p.key for p in url_patterns()}
    stale = sorted(covered - known)
    assert stale == [], f"rows for URL patterns that no longer exist: {stale}"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.pattern} {r.label}".strip())
def test_persona_matrix(row: Row, world: World, personas: Personas) -> None:
    path = row.path(world)
    mismatches = []
    for persona in PERSONAS:
        got = answer(personas.request(persona, row, path))
        if not matches(got, row.expect[persona]):
            mismatches.append(f"{persona}: {row.method} {path} -> {got}, expected {row.expect[persona]}")
    assert not mismatches, "\n".join(mismatches)


# --- the admin site, by rule ----------------------------------------------------------------------------

# What kind of admin page a pattern is, from its route; None for one the rule does not know.
_ADMIN_KINDS = (
    ("login", re.compile(r"^admin/login/$")),
    ("logout", re.compile(r"^admin/logout/$")),
    ("index", re.compile(r"^admin/$")),
    ("own", re.compile(r"^admin/(password_change/|password_change/done/)$")),
    ("site", re.compile(r"^admin/(autocomplete/|jsi18n/|r/<path:content_type_id>/<path:object_id>/)$")),
    ("app", re.compile(r"^admin/\^\(\?P<app_label>[a-z_|]+\)/\$$")),
    ("catch_all", re.compile(r"^admin/\(\?P<url>\.\*\)\$$")),
    ("model", re.compile(r"^admin/[a-z_]+/[a-z_]+/(add/|[^/]*<[^>]+>/([a-z]+/)?)?$")),
)


def admin_kind(pattern: Pattern) -> str | None:
    for kind, regex in _ADMIN_KINDS:
        if regex.match(pattern.route):
            return kind
    return None


def admin_path(pattern: Pattern, object_id: int) -> str:
    """A concrete URL for an admin pattern: ``object_id`` for every id, the app label the pattern's regex
    allows first."""
    route = re.sub(r"\^\(\?P<app_label>([a-z_]+)[^)]*\)/\$", r"\1/", pattern.route)
    route = re.sub(r"<(?:\w+:)?\w+>", str(object_id), route)
    route = route.replace("(?P<url>.*)$", "no-such-page/")
    return "/" + route


def admin_expected(kind: str, persona: str) -> Expected:
    """Non-staff people and the EHR's token: the admin's sign-in page, whatever the URL (so nothing tells
    them which models exist). Staff without model permissions (the admin role): the index and their own
    password pages, 403 on every model page (or a redirect within the admin for an object that does not
    exist), 404 for apps they have nothing in. Superusers: the pages, except the ones made read-only."""
    staff = persona in ("admin", "superuser")
    if kind == "login":
        return 200
    if kind == "logout":
        # POST only (a link or an image cannot sign anyone out); non-staff are sent to the index first.
        return 405 if staff else "302 -> /admin/"
    if not staff:
        return ADMIN_LOGIN
    superuser = persona == "superuser"
    by_kind: dict[str, Expected] = {
        "index": 200,
        "own": 200,
        "site": frozenset({200, 403, 404, ADMIN_INSIDE}),
        "app": 200 if superuser else 404,
        "catch_all": 404,
        # Superusers: 403 on adding or deleting login throttles and ingest jobs (read-only in the admin).
        "model": frozenset({200, 403, ADMIN_INSIDE}) if superuser else frozenset({403, ADMIN_INSIDE}),
    }
    return by_kind[kind]


def _fixed_path(path: str, world: World) -> str:
    return path


def test_admin_site_by_rule(world: World, personas: Personas, superuser: Any, organization: Any) -> None:
    """Every admin pattern, each persona (and a superuser): the rule above, no exception."""
    personas.users["superuser"] = superuser
    # An id that exists for every model page (django-otp's device config page answers a 500, not a 404,
    # for a device that does not exist: a staff-only page, left as it is).
    device = TOTPDevice.objects.create(user=superuser, name="admin rule", confirmed=False)
    patterns = [p for p in url_patterns() if is_admin(p)]
    assert len(patterns) > 40  # the walk reached the admin site's patterns
    mismatches = []
    for pattern in patterns:
        kind = admin_kind(pattern)
        assert kind is not None, pattern.route
        # An object that exists where the page needs one (a user's password page 404s for no user).
        path = admin_path(pattern, superuser.pk if "auth/user/" in pattern.route else device.pk)
        row = Row(pattern.key, functools.partial(_fixed_path, path), {})
        for persona in (*PERSONAS, "superuser"):
            got = answer(personas.request(persona, row, path))
            expected = admin_expected(kind, persona)
            if not matches(got, expected):
                mismatches.append(f"{persona}: GET {path} ({pattern.key}) -> {got}, expected {expected}")
    assert not mismatches, "\n".join(mismatches)


def matrix_size() -> tuple[int, int]:
    """(rows, checks) of the non-admin matrix, for the docs."""
    return len(ROWS), len(ROWS) * len(PERSONAS)
