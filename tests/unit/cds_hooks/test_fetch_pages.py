"""Paged reads from an EHR's fhirServer (``Bundle.link[next]``) within limits, against real HTTP servers on
loopback: the EHR stand-in (tests/ehr_standin.py) loaded with a shared Synthea patient, and small servers of
our own for the faults it does not play (a failing or slow later page, a page linking back)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.intake.models import IngestJob
from integrations.bulk.protocol import BulkEndpoint, access_token_get
from integrations.cds_hooks.fetch import (
    STOP_NEXT_LINK_REFUSED,
    STOP_NEXT_LINK_REPEATED,
    STOP_PAGE_FAILED,
    STOP_PAGE_LIMIT,
    STOP_RESOURCE_LIMIT,
    STOP_TIME_LIMIT,
    Deadline,
    FetchFailed,
    FetchLimits,
    fhir_get_paged,
    next_link_allowed,
)
from integrations.cds_hooks.models import CdsIssuer
from tests.bulk_data import patient_bundle_paths, resources_by_type
from tests.ehr_standin import EhrStandIn, client_key_pair
from tests.stand_in import loopback_server
from tests.unit.cds_hooks.conftest import Signer, call, hook_body, patient_seen

CLIENT_ID = "clinical-ai-gateway"
KID = "gw-1"
LIMITS = FetchLimits(max_pages=10, max_resources=2000, request_timeout_seconds=5.0)


def _patient_resources() -> dict[str, list[dict[str, Any]]]:
    smallest = min(patient_bundle_paths(), key=lambda p: p.stat().st_size)
    return resources_by_type([smallest])


@pytest.fixture(scope="module")
def synthea() -> dict[str, list[dict[str, Any]]]:
    return _patient_resources()


@pytest.fixture
def ehr(synthea: dict[str, list[dict[str, Any]]]) -> Iterator[EhrStandIn]:
    pem, jwks = client_key_pair("ES384", kid=KID)
    with EhrStandIn(synthea, client_id=CLIENT_ID, client_jwks=jwks) as stand_in:
        stand_in.client_pem = pem  # type: ignore[attr-defined]
        yield stand_in


def _token(ehr: EhrStandIn) -> str:
    return access_token_get(
        BulkEndpoint(base_url=ehr.base_url, timeout_seconds=5.0),
        token_url=ehr.token_url,
        client_id=CLIENT_ID,
        private_key_pem=ehr.client_pem,  # type: ignore[attr-defined]
        key_id=KID,
        scopes="system/*.read",
    ).value


def _patient_id(synthea: dict[str, list[dict[str, Any]]]) -> str:
    return str(synthea["Patient"][0]["id"])


def _read(ehr: EhrStandIn, path: str, *, limits: FetchLimits = LIMITS, seconds: float = 10.0) -> Any:
    return fhir_get_paged(
        fhir_server=ehr.base_url,
        path=path,
        access_token=_token(ehr),
        limits=limits,
        deadline=Deadline(seconds),
    )


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle["entry"]]


# --- against the EHR stand-in -------------------------------------------------------------------------


def test_three_pages_are_followed_and_merged_into_one_searchset(
    ehr: EhrStandIn, synthea: dict[str, list[dict[str, Any]]]
) -> None:
    observations = synthea["Observation"]
    assert 40 < len(observations) <= 60  # three pages of 20
    read = _read(ehr, f"Observation?patient={_patient_id(synthea)}&_count=20")

    assert (read.pages, read.resources, read.total, read.stopped) == (
        3,
        len(observations),
        len(observations),
        "",
    )
    assert not read.truncated
    assert read.document["resourceType"] == "Bundle" and read.document["type"] == "searchset"
    assert read.document["total"] == len(observations)
    assert "link" not in read.document  # nothing left to follow
    assert _ids(read.document) == [o["id"] for o in observations]
    searches = ehr.requests_of("search")
    assert len(searches) == 3 and all(r.token and r.status == 200 for r in searches)


def test_a_read_that_is_not_a_search_is_one_page(
    ehr: EhrStandIn, synthea: dict[str, list[dict[str, Any]]]
) -> None:
    read = _read(ehr, f"Patient/{_patient_id(synthea)}")
    assert (read.pages, read.resources, read.stopped) == (1, 1, "")
    assert read.document["id"] == _patient_id(synthea)
    assert _read(ehr, "Patient/no-such-patient").document is None


def test_the_page_limit_stops_paging_and_says_so(
    ehr: EhrStandIn, synthea: dict[str, list[dict[str, Any]]]
) -> None:
    limits = FetchLimits(max_pages=2, max_resources=2000, request_timeout_seconds=5.0)
    read = _read(ehr, f"Observation?patient={_patient_id(synthea)}&_count=20", limits=limits)

    assert (read.pages, read.resources, read.stopped) == (2, 40, STOP_PAGE_LIMIT)
    assert read.total == len(synthea["Observation"])  # the server's total: the truncation is visible
    assert len(ehr.requests_of("search")) == 2


@pytest.mark.parametrize(("cap", "pages"), [(30, 2), (20, 1)])
def test_the_resource_limit_keeps_at_most_the_cap(
    ehr: EhrStandIn, synthea: dict[str, list[dict[str, Any]]], cap: int, pages: int
) -> None:
    limits = FetchLimits(max_pages=10, max_resources=cap, request_timeout_seconds=5.0)
    read = _read(ehr, f"Observation?patient={_patient_id(synthea)}&_count=20", limits=limits)

    assert (read.pages, read.resources, read.stopped) == (pages, cap, STOP_RESOURCE_LIMIT)
    assert _ids(read.document) == [o["id"] for o in synthea["Observation"][:cap]]
    assert len(ehr.requests_of("search")) == pages  # no page read past the cap


def test_a_next_link_to_another_host_is_refused(
    ehr: EhrStandIn, synthea: dict[str, list[dict[str, Any]]]
) -> None:
    ehr.next_link_host = "localhost"  # reaches this very server: only the check keeps the request from going
    read = _read(ehr, f"Observation?patient={_patient_id(synthea)}&_count=20")

    assert (read.pages, read.resources, read.stopped) == (1, 20, STOP_NEXT_LINK_REFUSED)
    assert "fhirServer" in read.detail
    assert len(ehr.requests_of("search")) == 1


def test_a_failing_first_page_fails_the_read(
    ehr: EhrStandIn, synthea: dict[str, list[dict[str, Any]]]
) -> None:
    ehr.fail_next("search", 500)
    with pytest.raises(FetchFailed, match="HTTP 500"):
        _read(ehr, f"Observation?patient={_patient_id(synthea)}&_count=20")


def test_a_spent_budget_reads_nothing(ehr: EhrStandIn, synthea: dict[str, list[dict[str, Any]]]) -> None:
    with pytest.raises(FetchFailed, match="time"):
        _read(ehr, f"Observation?patient={_patient_id(synthea)}", seconds=0)
    assert ehr.requests_of("search") == []


# --- faults the stand-in does not play: small servers of our own ---------------------------------------


class _Pages:
    """A FHIR server with three pages of a search at /fhir/Observation?page=N; ``answers`` overrides one
    page with (status, body, delay seconds)."""

    def __init__(self) -> None:
        self.base = ""
        self.answers: dict[int, tuple[int, Any, float]] = {}
        self.next_links: dict[int, str] = {}
        self.seen: list[str] = []

    def bundle(self, page: int) -> dict[str, Any]:
        links = [{"relation": "self", "url": f"{self.base}/Observation?page={page}"}]
        following = self.next_links.get(page, f"{self.base}/Observation?page={page + 1}" if page < 3 else "")
        if following:
            links.append({"relation": "next", "url": following})
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 6,
            "link": links,
            "entry": [
                {"resource": {"resourceType": "Observation", "id": f"o{page}-{i}", "status": "final"}}
                for i in range(2)
            ],
        }

    def handler(self) -> type[BaseHTTPRequestHandler]:
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                pages.seen.append(self.path)
                page = int(self.path.rsplit("page=", 1)[1]) if "page=" in self.path else 1
                status, body, delay = pages.answers.get(page, (200, pages.bundle(page), 0.0))
                time.sleep(delay)
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/fhir+json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def pages() -> Iterator[_Pages]:
    server = _Pages()
    with loopback_server(server.handler()) as root:
        server.base = f"{root}/fhir"
        yield server


def _read_pages(pages: _Pages, *, seconds: float = 10.0, timeout: float = 5.0) -> Any:
    return fhir_get_paged(
        fhir_server=pages.base,
        path="Observation?page=1",
        access_token="tok-pages",
        limits=FetchLimits(max_pages=10, max_resources=100, request_timeout_seconds=timeout),
        deadline=Deadline(seconds),
    )


def test_a_500_on_page_2_keeps_what_was_read_and_reports_it(pages: _Pages) -> None:
    pages.answers[2] = (500, {"resourceType": "OperationOutcome", "issue": []}, 0.0)
    read = _read_pages(pages)

    assert (read.pages, read.resources, read.stopped) == (1, 2, STOP_PAGE_FAILED)
    assert read.detail == "page 2: the FHIR server answered HTTP 500"
    assert _ids(read.document) == ["o1-0", "o1-1"]
    assert len(pages.seen) == 2  # page 3 was never asked for


def test_a_later_page_that_is_not_a_searchset_stops_paging(pages: _Pages) -> None:
    pages.answers[3] = (200, {"resourceType": "OperationOutcome", "issue": []}, 0.0)
    read = _read_pages(pages)
    assert (read.pages, read.resources, read.stopped) == (2, 4, STOP_PAGE_FAILED)


def test_a_slow_later_page_is_cut_by_the_time_budget(pages: _Pages) -> None:
    pages.answers[2] = (200, pages.bundle(2), 1.5)
    started = time.monotonic()
    read = _read_pages(pages, seconds=0.6, timeout=5.0)

    assert (read.pages, read.resources, read.stopped) == (1, 2, STOP_TIME_LIMIT)
    assert time.monotonic() - started < 1.4  # the budget, not the slow page, decided


def test_a_page_linking_back_stops_the_loop(pages: _Pages) -> None:
    pages.next_links[3] = f"{pages.base}/Observation?page=2"
    read = _read_pages(pages)
    assert (read.pages, read.resources, read.stopped) == (3, 6, STOP_NEXT_LINK_REPEATED)


def test_a_relative_next_link_is_read_against_the_fhir_server(pages: _Pages) -> None:
    pages.next_links[1] = "Observation?page=2"
    read = _read_pages(pages)
    assert (read.pages, read.resources, read.stopped) == (3, 6, "")


@pytest.mark.parametrize(
    ("link", "allowed"),
    [
        ("https://ehr.example/fhir/Observation?page=2", True),
        ("https://EHR.example:443/fhir/Observation?_getpages=abc", True),
        ("https://ehr.example/fhir?_getpages=abc&_getpagesoffset=20", True),  # HAPI's paging links
        ("Observation?page=2", True),
        ("https://other.example/fhir/Observation?page=2", False),
        ("https://ehr.example:8443/fhir/Observation?page=2", False),
        ("http://ehr.example/fhir/Observation?page=2", False),
        ("https://ehr.example/other/Observation?page=2", False),
        ("https://ehr.example/fhirx/Observation", False),
        ("https://ehr.example/fhir/../admin/export", False),
        ("https://ehr.example/fhir/%2e%2e/admin", False),
        ("https://ehr.example/fhir/a%2Fb", False),
        ("https://user:pw@ehr.example/fhir/Observation", False),
        ("//other.example/fhir/Observation", False),
        ("https://ehr.example:notaport/fhir/Observation", False),
    ],
)
def test_next_link_allowed(link: str, allowed: bool) -> None:
    assert (next_link_allowed(link, fhir_server="https://ehr.example/fhir/") is not None) is allowed


# --- through the hook --------------------------------------------------------------------------------


def _hook_call(
    client: Client, issuer: CdsIssuer, sign: Signer, ehr: EhrStandIn, patient_id: str, token: str
) -> Any:
    CdsIssuer.objects.filter(pk=issuer.pk).update(fhir_servers=[ehr.base_url])
    patient_seen(issuer.organization, patient_id)  # no refresh here: the prefetch searches alone
    context = {"userId": "Practitioner/example", "patientId": patient_id}
    body = hook_body(
        fhirServer=ehr.base_url,
        prefetch={},
        context=context,
        fhirAuthorization={
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.read",
            "subject": "clinical-ai",
        },
    )
    response = call(client, "/clinical-ai-patient-view", body, sign("/clinical-ai-patient-view"))
    assert response.status_code == 200, response.content
    return response


def test_the_hook_reads_every_page_of_its_prefetch_searches(
    client: Client,
    issuer: CdsIssuer,
    sign: Signer,
    ehr: EhrStandIn,
    synthea: dict[str, list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = _token(ehr)
    patient_id = _patient_id(synthea)
    _hook_call(client, issuer, sign, ehr, patient_id, token)

    # The stand-in ignores category and clinical-status: every Observation and Condition is this patient's
    # answer, and the notes come five to a page (the template's _count=5).
    expected = 1 + len(synthea["Observation"]) + len(synthea["Condition"]) + len(synthea["DocumentReference"])
    assert IngestJob.objects.get().resource_count == expected
    event = AuditEvent.objects.get(action="cds.service.call", outcome="success")
    notes_pages = -(-len(synthea["DocumentReference"]) // 5)
    observation_pages = -(-len(synthea["Observation"]) // 50)
    assert event.detail["fetched_pages"] == 1 + observation_pages + 1 + notes_pages
    assert event.detail["fetch_truncated"] == []
    # The EHR's token is sent, and never logged or kept.
    assert all(r.token for r in ehr.requests if r.kind in ("read", "search"))
    assert token not in caplog.text
    assert not AuditEvent.objects.filter(detail__icontains=token).exists()


def test_the_hook_reports_a_truncated_read(
    client: Client,
    issuer: CdsIssuer,
    sign: Signer,
    ehr: EhrStandIn,
    synthea: dict[str, list[dict[str, Any]]],
    settings: Any,
) -> None:
    settings.CDS_FETCH_MAX_PAGES = 2
    _hook_call(client, issuer, sign, ehr, _patient_id(synthea), _token(ehr))

    event = AuditEvent.objects.get(action="cds.service.call", outcome="success")
    assert event.detail["fetch_truncated"] == [f"notes:{STOP_PAGE_LIMIT}"]
    expected = 1 + len(synthea["Observation"]) + len(synthea["Condition"]) + 10  # two pages of five notes
    assert IngestJob.objects.get().resource_count == expected
