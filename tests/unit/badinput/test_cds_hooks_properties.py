"""CDS Hooks calls and feedback with mutated bodies and a valid JWT: never a 5xx; a refusal (400, 404, 412,
422) is an OperationOutcome and writes nothing (the JWT's jti is spent, as it must be)."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client
from hypothesis import given, settings

from integrations.cds_hooks.models import CdsIssuer
from tests.unit.cds_hooks.conftest import BASE, hook_body, sign_jwt

from .conftest import PROFILE, examples
from .harness import CASE_COUNTS, assert_nothing_written, assert_operation_outcome, snapshot
from .strategies import SEED_RESOURCES, mutated
from .test_schemathesis import CDS_KEY
from .test_schemathesis import issuer as issuer

PROFILE_SETTINGS = settings.get_profile(PROFILE)
SERVICE = "/clinical-ai-patient-view"
FEEDBACK_SEED = {
    "feedback": [
        {
            "card": "0f2d1c3e-5b7a-5f60-9a3e-8c1d2b4f6a70",
            "outcome": "overridden",
            "overrideReason": {"reason": {"code": "other", "system": "urn:x"}, "userComment": "no"},
            "outcomeTimestamp": "2026-11-26T10:05:31Z",
        }
    ]
}


def _call(client: Client, path: str, body: Any) -> Any:
    token = sign_jwt(CDS_KEY, aud=BASE + path)
    return client.post(
        f"/cds-services{path}",
        data=json.dumps(body).encode("utf-8"),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def _check(response: Any, before: Any, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.content[:300])
    if response.status_code >= 400:
        assert response.status_code != 401, (what, "the JWT was good")
        assert_operation_outcome(response.content, what)
        assert_nothing_written(before, what)


def _seed_call() -> dict[str, Any]:
    body = hook_body()
    body["prefetch"]["vitals"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": SEED_RESOURCES[1] | {"subject": {"reference": "Patient/1288992"}}}],
    }
    body.pop("fhirServer")
    return body


@settings(PROFILE_SETTINGS, max_examples=examples(0.5))
@given(body=mutated(_seed_call(), max_rounds=3))
def test_mutated_hook_calls(client: Client, issuer: CdsIssuer, body: Any) -> None:
    CASE_COUNTS["property mutated CDS Hooks calls"] += 1
    before = snapshot()
    _check(_call(client, SERVICE, body), before, "service call")


@settings(PROFILE_SETTINGS, max_examples=examples(0.5))
@given(body=mutated(FEEDBACK_SEED, max_rounds=3))
def test_mutated_feedback(client: Client, issuer: CdsIssuer, body: Any) -> None:
    CASE_COUNTS["property mutated CDS Hooks feedback"] += 1
    before = snapshot()
    _check(_call(client, SERVICE + "/feedback", body), before, "feedback")
