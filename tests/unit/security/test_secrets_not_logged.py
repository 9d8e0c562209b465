"""No secret reaches a log record: passwords (sign-in and e-signature), TOTP codes, SMART client assertions
and access tokens, CDS Hooks JWTs, private keys, SECRET_KEY and the encryption, pseudonym and vault keys.

Every logger is turned to DEBUG for the test (not only the root: some are set to WARNING by the settings),
each flow is driven through the real views, right and wrong secrets and replays alike, and every record's
message, arguments, extra fields and formatted exception are searched.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from integrations.cds_hooks.models import CdsIssuer
from integrations.fhir.client import client_assertion
from tests.factories import TOKEN_URL, EhrIdentity
from tests.unit.cds_hooks.conftest import KeyPair, hook_body, sign_jwt
from tests.unit.security.conftest import PASSWORD, World

pytestmark = pytest.mark.django_db

CDS_BASE = "http://testserver/cds-services"
SIGNING_PASSWORD_WRONG = "not-my-signature-password-42"
LOGIN_PASSWORD_WRONG = "hunter2-but-longer-0451"


@pytest.fixture
def every_logger_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    caplog.set_level(logging.DEBUG)
    yield caplog
    for logger, level, disabled in saved:
        logger.setLevel(level)
        logger.disabled = disabled


def _record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), str(record.msg)]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        parts.append(record.exc_text)
    standard = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
    parts += [f"{k}={v!r}" for k, v in record.__dict__.items() if k not in standard]
    return "\n".join(parts)


def _secret_forms(secret: str) -> list[str]:
    """The secret, and for a JWT its signature too (a log line that cut the token would still leak it)."""
    forms = [secret]
    if secret.count(".") == 2 and len(secret) > 40:
        forms.append(secret.rsplit(".", 1)[1])
    return forms


def _assertion(identity: EhrIdentity) -> str:
    return client_assertion(
        client_id=identity.client_id,
        token_url=TOKEN_URL,
        private_key_pem=identity.private_pem,
        kid=identity.kid,
    )


def _token_request(http: Client, assertion: str) -> Any:
    return http.post(
        "/auth/token",
        content_type="application/x-www-form-urlencoded",
        data=urlencode(
            {
                "grant_type": "client_credentials",
                "scope": "system/*.read system/*.write",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            }
        ),
    )


def test_no_secret_is_ever_logged(
    every_logger_at_debug: pytest.LogCaptureFixture,
    world: World,
    clinician: Any,
    ehr_client: EhrIdentity,
    cds_issuer: CdsIssuer,
    cds_key: KeyPair,
) -> None:
    caplog = every_logger_at_debug
    secrets: dict[str, str] = {
        "password": PASSWORD,
        "wrong login password": LOGIN_PASSWORD_WRONG,
        "wrong signing password": SIGNING_PASSWORD_WRONG,
        "SECRET_KEY": settings.SECRET_KEY,
        "encryption keys": os.environ["CLINICAL_AI_ENCRYPTION_KEYS"],
        "pseudonym key": settings.PSEUDONYM_KEY,
        "vault private key": settings.VAULT_PRIVATE_KEY,
        "EHR private key": ehr_client.private_pem.decode("ascii").splitlines()[1],
    }
    for key in os.environ["CLINICAL_AI_ENCRYPTION_KEYS"].split(","):
        secrets[f"encryption key {key.split(':')[0]}"] = key.split(":", 1)[1]

    # Sign-in: a wrong password, then the right one, for an account with a TOTP device; a wrong code and the
    # right one.
    device = TOTPDevice.objects.create(user=clinician, name="phone", confirmed=True)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    code = f"{totp.token():0{device.digits}d}"
    wrong_code = f"{(int(code) + 1) % 10**device.digits:0{device.digits}d}"
    secrets["TOTP code"], secrets["wrong TOTP code"] = code, wrong_code
    browser = Client()
    assert (
        browser.post(
            "/accounts/login/", {"username": "dr-ward", "password": LOGIN_PASSWORD_WRONG}
        ).status_code
        == 200
    )
    assert browser.post("/accounts/login/", {"username": "dr-ward", "password": PASSWORD}).status_code == 302
    assert browser.post("/accounts/otp/verify/", {"token": wrong_code}).status_code == 200
    # django-otp makes the device wait after a wrong code; the test does not.
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_count=0, throttling_failure_timestamp=None
    )
    assert browser.post("/accounts/otp/verify/", {"token": code}).status_code == 302

    # The e-signature: wrong, then right.
    sign = f"/review/suggestions/{world.suggestion.external_id}/sign/"
    assert browser.post(sign, {"outcome": "accepted", "password": SIGNING_PASSWORD_WRONG}).status_code == 400
    assert browser.post(sign, {"outcome": "accepted", "password": PASSWORD}).status_code == 302

    # SMART: an assertion exchanged for a token, the same assertion replayed, the token used and a forged one.
    machine = Client()
    assertion = _assertion(ehr_client)
    secrets["client assertion"] = assertion
    issued = _token_request(machine, assertion)
    assert issued.status_code == 200
    access_token = str(issued.json()["access_token"])
    secrets["access token"] = access_token
    assert _token_request(machine, assertion).status_code in (400, 401)  # replayed jti
    tampered = assertion[:-4] + ("AAAA" if not assertion.endswith("AAAA") else "BBBB")
    secrets["tampered assertion"] = tampered
    assert _token_request(machine, tampered).status_code in (400, 401)
    bearer = {"Authorization": f"Bearer {access_token}"}
    assert (
        machine.get(
            f"/fhir/{world.output.resource_type}/{world.output.resource_id}", headers=bearer
        ).status_code
        == 200
    )
    assert (
        machine.get("/fhir/RiskAssessment", headers={"Authorization": f"Bearer {access_token}x"}).status_code
        == 401
    )
    bad_bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Nope"}}],
    }
    machine.post("/fhir", data=json.dumps(bad_bundle), content_type="application/fhir+json", headers=bearer)

    # CDS Hooks: discovery and a service call with the EHR's JWTs, a replayed one and a forged one.
    service = "/cds-services/clinical-ai-patient-view"
    discovery_jwt = sign_jwt(cds_key, aud=CDS_BASE)
    call_jwt = sign_jwt(cds_key, aud=CDS_BASE + "/clinical-ai-patient-view")
    forged = call_jwt[:-4] + ("AAAA" if not call_jwt.endswith("AAAA") else "BBBB")
    secrets |= {"CDS discovery JWT": discovery_jwt, "CDS call JWT": call_jwt, "forged CDS JWT": forged}
    assert (
        machine.get("/cds-services", headers={"Authorization": f"Bearer {discovery_jwt}"}).status_code == 200
    )
    body = json.dumps(hook_body()).encode("utf-8")
    for jwt_value, status in ((call_jwt, 200), (call_jwt, 401), (forged, 401)):
        response = machine.post(
            service,
            data=body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {jwt_value}"},
        )
        assert response.status_code == status

    records = caplog.records
    assert records, "nothing was logged at all: the capture is not working"
    leaks = []
    for record in records:
        text = _record_text(record)
        for name, secret in secrets.items():
            for form in _secret_forms(secret):
                pattern = rf"(?<!\d){re.escape(form)}(?!\d)" if form.isdigit() else re.escape(form)
                if re.search(pattern, text):
                    leaks.append(f"{name} in a {record.levelname} record of {record.name}: {text[:200]!r}")
    assert leaks == []


def test_the_search_finds_a_planted_secret(every_logger_at_debug: pytest.LogCaptureFixture) -> None:
    """The control: a secret logged as an argument, in an extra field or in an exception is found."""
    token = "eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLW9mLWEtdG9rZW4tdGhhdC1sZWFrcw"
    logger = logging.getLogger("clinical_ai.tests.planted")
    logger.debug("token %s", token.rsplit(".", 1)[1])
    logger.info("call", extra={"authorization": f"Bearer {token}"})
    try:
        raise ValueError(token)
    except ValueError:
        logger.exception("refused")
    texts = [_record_text(r) for r in every_logger_at_debug.records if r.name == "clinical_ai.tests.planted"]
    assert len(texts) == 3
    assert all(any(form in text for form in _secret_forms(token)) for text in texts)
