"""Secure cookies and headers outside DEBUG.

The settings are read in a fresh process from ``clinical_ai.settings`` itself with DEBUG unset and only the
keys given (as a deployment would start); the responses are checked here (the test settings are the same
module, not in DEBUG). That start-up refuses without a secret key, an encryption key or the
de-identification keys outside DEBUG is proved by tests/unit/core/test_settings.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from http.cookies import Morsel
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from tests.unit.security.conftest import PASSWORD

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
HTTPS = {"HTTP_X_FORWARDED_PROTO": "https"}  # what the TLS-terminating proxy sets
NAMES = [
    "DEBUG",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "SESSION_COOKIE_AGE",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_HTTPONLY",
    "CSRF_COOKIE_SAMESITE",
    "SECURE_HSTS_SECONDS",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY",
    "SECURE_PROXY_SSL_HEADER",
    "X_FRAME_OPTIONS",
    "CONTENT_SECURITY_POLICY",
    "MIDDLEWARE",
]


def test_production_settings_are_strict() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "SESSION_", "CSRF_", "SECURE_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "clinical_ai.settings",
            "SECRET_KEY": "s" * 50,
            "CLINICAL_AI_ENCRYPTION_KEYS": "k1:" + "A" * 43 + "=",
            "CLINICAL_AI_PSEUDONYM_KEY": "p" * 40,
            "CLINICAL_AI_VAULT_PUBLIC_KEY": "z9sqZResR7yG795nVz55smS6wts9UWjas4ZwVkHfyTA=",
            "DATABASE_URL": "",
            "CELERY_BROKER_URL": "",
        }
    )
    env.pop("CONTENT_SECURITY_POLICY", None)
    script = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n, None) for n in {NAMES!r}}}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["DEBUG"] is False
    assert got["SESSION_COOKIE_SECURE"] is True and got["CSRF_COOKIE_SECURE"] is True
    assert got["SESSION_COOKIE_HTTPONLY"] is True and got["CSRF_COOKIE_HTTPONLY"] is True
    assert got["SESSION_COOKIE_SAMESITE"] == "Lax" and got["CSRF_COOKIE_SAMESITE"] == "Lax"
    assert got["SESSION_COOKIE_AGE"] <= 12 * 3600  # a shift, not Django's two weeks
    assert got["SECURE_HSTS_SECONDS"] >= 31536000
    assert got["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert got["SECURE_REFERRER_POLICY"] == "same-origin"
    assert got["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert got["X_FRAME_OPTIONS"] == "DENY"
    assert "script-src 'self';" in got["CONTENT_SECURITY_POLICY"]
    assert "frame-ancestors 'none'" in got["CONTENT_SECURITY_POLICY"]
    middleware = got["MIDDLEWARE"]
    for name in (
        "django.middleware.security.SecurityMiddleware",
        "clinical_ai.core.middleware.ContentSecurityPolicyMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ):
        assert name in middleware


def _cookie(response: Any, name: str) -> Morsel[str]:
    assert name in response.cookies, f"{name} not set"
    morsel: Morsel[str] = response.cookies[name]
    return morsel


def _check_common_headers(response: Any) -> None:
    assert response["Strict-Transport-Security"] == "max-age=31536000"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_html_responses_carry_the_headers_and_secure_cookies(clinician: Any) -> None:
    assert settings.DEBUG is False  # the test settings are the production module with test keys
    http = Client()
    page = http.get("/accounts/login/", **HTTPS)  # type: ignore[arg-type]
    _check_common_headers(page)
    assert page["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
    csrf = _cookie(page, "csrftoken")
    assert csrf["secure"] and csrf["httponly"] and csrf["samesite"] == "Lax"
    signed_in = http.post(
        "/accounts/login/",
        {"username": "dr-ward", "password": PASSWORD},
        **HTTPS,  # type: ignore[arg-type]
    )
    assert signed_in.status_code == 302
    _check_common_headers(signed_in)
    session = _cookie(signed_in, "sessionid")
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"
    assert int(session["max-age"]) == settings.SESSION_COOKIE_AGE


def test_api_responses_carry_the_transport_headers_but_no_html_policy(client: Client) -> None:
    for path in ("/fhir/metadata", "/healthz", "/fhir/RiskAssessment"):
        response = client.get(path, **HTTPS)  # type: ignore[arg-type]
        _check_common_headers(response)
        if response.content:  # a bare 401 has no body, and Django's default content type
            assert "Content-Security-Policy" not in response
        assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies


def test_templates_have_no_inline_script_or_event_handler() -> None:
    """What lets ``script-src 'self'`` (no 'unsafe-inline') stand: scripts only by src, no on*= handlers."""
    import re

    offenders = []
    for template in ROOT.glob("clinical_ai/**/templates/**/*.html"):
        text = template.read_text(encoding="utf-8")
        for match in re.finditer(r"<script\b[^>]*>", text):
            if "src=" not in match.group(0) and 'type="application/json"' not in match.group(0):
                offenders.append(f"{template}: {match.group(0)}")
        if re.search(r"\son[a-z]+\s*=", text) or "javascript:" in text:
            offenders.append(f"{template}: inline handler")
    assert offenders == []


def test_csp_can_be_turned_off(client: Client, settings: Any) -> None:
    settings.CONTENT_SECURITY_POLICY = ""
    assert "Content-Security-Policy" not in client.get("/accounts/login/")
