"""schemathesis against docs/openapi.yaml, through Django's WSGI handler in-process: positive and negative
cases for every operation, with a real SMART token (or a freshly signed CDS Hooks JWT) unless the case is a
negative one that brings its own Authorization header. Checks: schemathesis' own (no server error, status,
content type, headers and body conform to the document, negative data rejected, ...) and ours: a refusal
is an OperationOutcome, a bare 401, or (token endpoint) an RFC 6749 error, and writes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from clinical_ai.audit.services import Actor
from integrations.cds_hooks.models import CdsIssuer
from integrations.cds_hooks.registration import cds_issuer_register
from tests.factories import EhrIdentity
from tests.unit.cds_hooks.conftest import BASE, ISS, KeyPair, make_key, sign_jwt

from .conftest import PROFILE, examples
from .harness import (
    CASE_COUNTS,
    assert_fhir_refusal,
    assert_nothing_written,
    assert_operation_outcome,
    snapshot,
)
from .test_openapi_coverage import OPENAPI

BASE_URL = "http://testserver"
schema = schemathesis.openapi.from_path(OPENAPI)
schema.config.update(base_url=BASE_URL)
schema.app = WSGIHandler()  # checks that re-send a case (ignored_auth, ...) go to the same in-process app
# Authorization comes from the test (a real token); wrong, missing and odd ones are test_headers' business,
# and schemathesis' ignored_auth check still re-sends each case without it.
schema.config.generation.update(with_security_parameters=False)
CDS_KEY: KeyPair = make_key("ES384")


@pytest.fixture
def issuer(writer: EhrIdentity) -> CdsIssuer:
    return cds_issuer_register(
        iss=ISS,
        name="St Elsewhere EHR",
        ehr_client=writer.client,
        jwks={"keys": [CDS_KEY.jwk]},
        actor=Actor.system("tests"),
    )


def _header(response: Any, name: str) -> str:
    values = response.headers.get(name.lower()) or []
    return str(values[0]) if values else ""


def _check_refusal(path: str, method: str, response: Any) -> None:
    status, content = response.status_code, response.content
    headers = {
        "Content-Type": _header(response, "Content-Type"),
        "WWW-Authenticate": _header(response, "WWW-Authenticate"),
    }
    what = f"{method} {path}"
    if path == "/auth/token":
        if status == 405:
            return
        body = json.loads(content)
        assert isinstance(body.get("error"), str), (what, body)
    elif path.startswith("/fhir") and ".well-known" not in path:
        assert_fhir_refusal(status, content, headers, what)
    elif path.startswith("/cds-services"):
        if status in (401, 405):
            assert content == b"", (what, content[:200])
        else:
            assert_operation_outcome(content, what)


@schema.parametrize()
@settings(settings.get_profile(PROFILE), max_examples=examples(0.5))
def test_openapi_operations(
    case: Any, db: None, wsgi_app: WSGIHandler, auth: dict[str, str], issuer: CdsIssuer
) -> None:
    operation = case.operation
    path, method = operation.path, operation.method.upper()
    headers: dict[str, str] = {}
    if method != "OPTIONS":
        if path.startswith("/cds-services"):
            audience = BASE + path.removeprefix("/cds-services").replace(
                "{serviceId}", str((case.path_parameters or {}).get("serviceId", ""))
            )
            headers["Authorization"] = f"Bearer {sign_jwt(CDS_KEY, aud=audience)}"
        elif operation.definition.raw.get("security"):
            headers.update(auth)

    before = snapshot()
    response = case.call(base_url=BASE_URL, headers=headers)
    CASE_COUNTS[f"schemathesis {method} {path}"] += 1
    ok_5xx = path == "/readyz" and response.status_code == 503
    assert response.status_code < 500 or ok_5xx, (method, path, response.status_code, response.content[:500])
    if 400 <= response.status_code < 500:
        _check_refusal(path, method, response)
        assert_nothing_written(before, f"{method} {path} -> {response.status_code}")
    # Valid per the document is not always valid FHIR (the server checks the full R4 structure); and a
    # batch is answered 200 even when each of its entries is refused (a 422 per entry, nothing stored).
    excluded = [positive_data_acceptance]
    if (method, path) == ("POST", "/fhir"):
        excluded.append(negative_data_rejection)
    case.validate_response(response, headers=headers, excluded_checks=excluded)
