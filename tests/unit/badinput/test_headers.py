"""Header abuse on the FHIR endpoints, the token endpoint and CDS Hooks: Content-Type (missing, wrong,
doubled, other charsets, other FHIR versions), Accept, very long headers, a bad Host, Authorization
(garbage, huge, ``Bearer`` alone, several schemes), X-Request-Id. Never a 5xx, a clear error, nothing
written on a refusal; X-Request-Id is echoed only when it is a sane token."""

from __future__ import annotations

import json
import re
from typing import Any

from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import PROFILE, examples
from .harness import CASE_COUNTS, assert_fhir_refusal, assert_nothing_written, snapshot
from .strategies import SEED_RESOURCES, seed_bundle

PROFILE_SETTINGS = settings.get_profile(PROFILE)
BUNDLE = json.dumps(seed_bundle("batch")).encode("utf-8")
PATIENT = json.dumps(SEED_RESOURCES[0]).encode("utf-8")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# What a WSGI server hands Django in a header value: latin-1 text without CR/LF.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=300
)

content_types = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "text/plain",
            "application/xml",
            "application/fhir+xml",
            "application/fhir+json, text/plain",
            "application/fhir+json; charset=latin-1",
            "application/fhir+json; charset=utf-16",
            "application/fhir+json; charset=",
            'application/fhir+json; charset="UTF-8"',
            "application/fhir+json; fhirVersion=3.0",
            "application/fhir+json; fhirVersion=4.0",
            "application/fhir+json;;;",
            "application/json; charset=utf-8; charset=latin-1",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "APPLICATION/FHIR+JSON",
            "application/fhir+json; " + "x=1; " * 2000,
        ]
    ),
    header_text,
)


def _refusal_checks(response: Any, before: Any, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.content[:300])
    if response.status_code >= 400:
        headers = {n: response[n] for n in ("Content-Type", "WWW-Authenticate") if response.has_header(n)}
        assert_fhir_refusal(response.status_code, response.content, headers, what)
        assert_nothing_written(before, what)
    assert REQUEST_ID.match(response["X-Request-Id"]), response["X-Request-Id"]


@settings(PROFILE_SETTINGS, max_examples=examples(1.0))
@given(content_type=content_types, path=st.sampled_from(["/fhir", "/fhir/Patient"]))
def test_content_type(client: Client, auth: dict[str, str], content_type: str, path: str) -> None:
    CASE_COUNTS["property Content-Type abuse"] += 1
    before = snapshot()
    response = client.generic(
        "POST", path, BUNDLE if path == "/fhir" else PATIENT, content_type=content_type, headers=auth
    )
    _refusal_checks(response, before, f"Content-Type {content_type[:60]!r}")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in ("application/fhir+json", "application/json", "application/json+fhir"):
        assert response.status_code == 415, (content_type, response.status_code)


@settings(PROFILE_SETTINGS, max_examples=examples(1.0))
@given(
    name=st.sampled_from(
        [
            "Accept",
            "Prefer",
            "If-None-Exist",
            "X-Request-Id",
            "User-Agent",
            "X-Forwarded-For",
            "Origin",
            "Accept-Charset",
            "Cookie",
        ]
    ),
    value=header_text | st.integers(min_value=1, max_value=64 * 1024).map(lambda n: "a" * n),
    path=st.sampled_from(
        ["/fhir", "/fhir/Patient", "/fhir/metadata", "/fhir/RiskAssessment", "/fhir/AuditEvent"]
    ),
)
def test_odd_and_long_headers(client: Client, auth: dict[str, str], name: str, value: str, path: str) -> None:
    CASE_COUNTS["property odd and very long headers"] += 1
    before = snapshot()
    if path in ("/fhir", "/fhir/Patient"):
        body = BUNDLE if path == "/fhir" else PATIENT
        response = client.post(
            path, body, content_type="application/fhir+json", headers={**auth, name: value}
        )
    else:
        response = client.get(path, headers={**auth, name: value})
    _refusal_checks(response, before, f"{name}: {value[:40]!r} on {path}")
    if name == "X-Request-Id" and not REQUEST_ID.match(value):
        assert response["X-Request-Id"] != value


@settings(PROFILE_SETTINGS, max_examples=examples(1.0))
@given(
    authorization=st.one_of(
        st.sampled_from(
            [
                "",
                "Bearer",
                "Bearer ",
                "Bearer  ",
                "bearer",
                "Basic dXNlcjpwYXNz",
                "Bearer a, Bearer b",
                "Bearer a Bearer b",
                "Bearer \u00e9\u00e8",
                "Digest username=x",
                "Bearer " + "A" * 100_000,
                "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
            ]
        ),
        header_text,
        header_text.map(lambda t: f"Bearer {t}"),
    ),
    path=st.sampled_from(
        ["/fhir", "/fhir/Patient", "/fhir/RiskAssessment", "/fhir/RiskAssessment/x1", "/fhir/AuditEvent"]
    ),
    method=st.sampled_from(["GET", "POST"]),
)
def test_authorization_abuse(client: Client, token: str, authorization: str, path: str, method: str) -> None:
    """Any Authorization header other than the one good token: a bare 401, audited, nothing else."""
    CASE_COUNTS["property Authorization abuse"] += 1
    if token in authorization:
        return
    before = snapshot()
    body = BUNDLE if path == "/fhir" else PATIENT
    response = client.generic(
        method, path, body, content_type="application/fhir+json", headers={"Authorization": authorization}
    )
    _refusal_checks(response, before, f"Authorization {authorization[:40]!r}")
    # POST on an instance is refused for its method before any token is looked at.
    expected = 405 if (method, path) == ("POST", "/fhir/RiskAssessment/x1") else 401
    assert response.status_code == expected, (authorization[:40], path, response.status_code)


def test_several_credentials_at_once(client: Client, token: str) -> None:
    """The good token next to another scheme or a second token is not a good token."""
    for authorization in (
        f"Bearer {token}, Basic eDp5",
        f"Basic eDp5, Bearer {token}",
        f"Bearer {token} {token}",
        f"Bearer {token}, Bearer {token}",
        f"Bearer{token}",
        f"Bearer  {token}x",
    ):
        CASE_COUNTS["example several credentials at once"] += 1
        before = snapshot()
        response = client.post(
            "/fhir", BUNDLE, content_type="application/fhir+json", headers={"Authorization": authorization}
        )
        _refusal_checks(response, before, authorization)
        assert response.status_code == 401, authorization


@settings(PROFILE_SETTINGS, max_examples=examples(0.5))
@given(
    host=st.sampled_from(
        [
            "evil.example",
            "testserver:99999",
            "testserver:abc",
            "[::1",
            "a" * 300,
            "tést",
            "testserver, evil.example",
            "..",
            "",
        ]
    )
    | header_text,
    path=st.sampled_from(
        ["/fhir", "/fhir/metadata", "/auth/token", "/cds-services", "/healthz", "/fhir/RiskAssessment"]
    ),
)
def test_bad_host(client: Client, auth: dict[str, str], host: str, path: str) -> None:
    """A Host outside ALLOWED_HOSTS is a 400 (Django's DisallowedHost), never a 500, and writes nothing."""
    CASE_COUNTS["property bad Host header"] += 1
    if host in ("testserver", "localhost", "127.0.0.1"):
        return
    before = snapshot()
    response = client.post(path, BUNDLE, content_type="application/fhir+json", headers=auth, HTTP_HOST=host)
    assert response.status_code < 500, (host, path, response.status_code)
    if response.status_code >= 400:
        assert_nothing_written(before, f"Host {host[:40]!r}")
