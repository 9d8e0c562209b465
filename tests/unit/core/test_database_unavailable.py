"""A view that loses the database answers 503 with Retry-After (an OperationOutcome for machine clients, a
short page for people), never a 500; other exceptions are left to Django."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path


def _lost_database(request: HttpRequest) -> HttpResponse:
    raise OperationalError('terminating connection due to administrator command: patient "Quillfeather"')


def _interface_gone(request: HttpRequest) -> HttpResponse:
    raise InterfaceError("connection already closed")


def _bug(request: HttpRequest) -> HttpResponse:
    raise ValueError("a real bug")


urlpatterns = [
    path("fhir/Lost", _lost_database),
    path("cds-services/lost", _lost_database),
    path("review/lost", _lost_database),
    path("fhir/Closed", _interface_gone),
    path("fhir/Bug", _bug),
]

pytestmark = pytest.mark.urls(__name__)


@pytest.mark.parametrize(
    ("url", "content_type"),
    [("/fhir/Lost", "application/fhir+json"), ("/fhir/Closed", "application/fhir+json"),
     ("/cds-services/lost", "application/json")],
)  # fmt: skip
def test_machine_clients_get_a_transient_operation_outcome(url: str, content_type: str) -> None:
    response = Client(raise_request_exception=False).post(url)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"] == content_type
    body = json.loads(response.content)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "transient"
    assert response["X-Request-Id"]


def test_people_get_a_page_saying_to_try_again() -> None:
    response = Client(raise_request_exception=False).get("/review/lost")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("text/html")
    assert b"Try again shortly" in response.content


def test_the_log_names_the_error_type_not_its_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="clinical_ai.core.middleware"):
        Client(raise_request_exception=False).post("/fhir/Lost")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "OperationalError" in text
    assert "Quillfeather" not in text


@override_settings(DEBUG_PROPAGATE_EXCEPTIONS=False)
def test_other_exceptions_are_still_server_errors() -> None:
    response = Client(raise_request_exception=False).get("/fhir/Bug")
    assert response.status_code == 500
