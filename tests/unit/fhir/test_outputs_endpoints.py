"""``GET /fhir/{type}/{id}`` and ``GET /fhir/{type}?...`` by persona, with references mapped back to the EHR's
ids from the real vault and the real de-identified records, audit rows, paging and a query-count baseline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from clinical_ai.audit.models import AuditEvent
from clinical_ai.review.models import OutputResource
from tests.factories import EhrIdentity, make_ehr_client, obtain_token, post_fhir
from tests.unit.fhir.test_outputs_fixtures import (
    MRN,
    MRN_SYSTEM,
    EhrGraph,
    detected_issue,
    ehr_graph_build,
    outputs_put,
    risk_assessment,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _base_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = ""


def _get(http: Client, path: str, token: str | None = None, **headers: str) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http.get(path, headers=headers)


@pytest.fixture
def read_token(client: Client, ehr_client: EhrIdentity) -> str:
    return obtain_token(client, ehr_client, scope="system/*.read")


@pytest.fixture
def other_site_token(client: Client, other_organization: Any) -> str:
    return obtain_token(client, make_ehr_client(other_organization), scope="system/*.read")


@pytest.fixture
def graph(client: Client, ehr_client: EhrIdentity) -> EhrGraph:
    return ehr_graph_build(client, ehr_client)


@pytest.fixture
def risk(organization: Any) -> OutputResource:
    return outputs_put(organization.pk, "p" * 32, [risk_assessment("p" * 32, [], resource_id="risk-1")])[0]


# --- personas ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/fhir/RiskAssessment/risk-1", "/fhir/RiskAssessment?patient=123"])
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic Zm9vOmJhcg=="])
def test_no_valid_token_gets_a_bare_401_audited(
    client: Client, risk: OutputResource, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get(path, headers=headers)
    assert response.status_code == 401 and response.content == b""
    assert response["WWW-Authenticate"].startswith("Bearer")
    action = "fhir.output.search" if "?" in path else "fhir.output.read"
    refusal = AuditEvent.objects.get(action=action)
    assert refusal.outcome == "failure" and refusal.actor_type == "anonymous"


@pytest.mark.parametrize("path", ["/fhir/RiskAssessment/risk-1", "/fhir/RiskAssessment"])
def test_a_token_without_read_scope_gets_403(
    client: Client, ehr_client: EhrIdentity, risk: OutputResource, path: str
) -> None:
    token = obtain_token(client, ehr_client, scope="system/*.write system/Observation.read")
    response = _get(client, path, token)
    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert AuditEvent.objects.filter(outcome="failure", detail__status=403).count() == 1


def test_another_sites_resource_is_not_found_and_not_searchable(
    client: Client, risk: OutputResource, other_site_token: str
) -> None:
    response = _get(client, "/fhir/RiskAssessment/risk-1", other_site_token)
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "not-found"
    search = _get(client, "/fhir/RiskAssessment?_id=risk-1", other_site_token).json()
    assert search["total"] == 0 and search["entry"] == []


def test_own_resource_is_read_with_etag_last_modified_and_version(
    client: Client, risk: OutputResource, read_token: str, organization: Any
) -> None:
    response = _get(client, "/fhir/RiskAssessment/risk-1", read_token)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/fhir+json")
    assert response["ETag"] == 'W/"1"'
    assert response["Last-Modified"].endswith("GMT")
    body = response.json()
    assert body["id"] == "risk-1" and body["meta"]["versionId"] == "1"
    outputs_put(
        organization.pk, "p" * 32, [risk_assessment("p" * 32, [], resource_id="risk-1", status="final")]
    )
    again = _get(client, "/fhir/RiskAssessment/risk-1", read_token)
    assert again["ETag"] == 'W/"2"' and again.json()["status"] == "final"
    assert _get(client, "/fhir/RiskAssessment/nope", read_token).status_code == 404
    assert _get(client, "/fhir/DetectedIssue/risk-1", read_token).status_code == 404


def test_smart_v2_scopes_separate_read_from_search(
    client: Client, ehr_client: EhrIdentity, risk: OutputResource
) -> None:
    read_only = obtain_token(client, ehr_client, scope="system/RiskAssessment.r")
    assert _get(client, "/fhir/RiskAssessment/risk-1", read_only).status_code == 200
    assert _get(client, "/fhir/RiskAssessment", read_only).status_code == 403
    both = obtain_token(client, ehr_client, scope="system/RiskAssessment.rs")
    assert _get(client, "/fhir/RiskAssessment", both).json()["total"] == 1
    assert _get(client, "/fhir/DetectedIssue", both).status_code == 403


def test_other_methods_keep_their_meaning(
    client: Client, ehr_client: EhrIdentity, risk: OutputResource
) -> None:
    token = obtain_token(client, ehr_client, scope="system/*.write system/*.read")
    response = client.put(
        "/fhir/RiskAssessment/risk-1",
        data=b"{}",
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 405 and "GET" in response["Allow"]
    # POST [base]/RiskAssessment is still intake of a submitted resource.
    submitted = post_fhir(
        client,
        token,
        {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/1"}},
        path="/fhir/RiskAssessment",
    )
    assert submitted.status_code == 201, submitted.content


# --- search and references ------------------------------------------------------------------------------


def _graph_outputs(graph: EhrGraph) -> dict[str, list[OutputResource]]:
    """Per EHR patient, a RiskAssessment citing their observations (and a DetectedIssue for pat-123)."""
    p123, p456, p789 = (graph.pseudonyms[f"Patient/pat-{n}"] for n in (123, 456, 789))
    org = graph.organization_id
    return {
        "pat-123": outputs_put(
            org,
            p123,
            [
                risk_assessment(p123, [graph.sources["Observation/obs-1"], graph.sources["Observation/?"]]),
                detected_issue(p123, [graph.sources["Observation/obs-1"]]),
            ],
        ),
        "pat-456": outputs_put(org, p456, [risk_assessment(p456, [graph.sources["Observation/obs-2"]])]),
        "pat-789": outputs_put(org, p789, [risk_assessment(p789, [graph.sources["Observation/obs-3"]])]),
    }


def _entries(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return [e["resource"] for e in body["entry"]]


def test_search_by_the_ehrs_patient_id_finds_an_mrn_patient_and_restores_references(
    client: Client, graph: EhrGraph, read_token: str
) -> None:
    _graph_outputs(graph)
    for query in (
        "patient=pat-123",
        "patient=Patient/pat-123",
        "subject=http://ehr.example.org/fhir/Patient/pat-123",
    ):
        found = _entries(_get(client, f"/fhir/RiskAssessment?{query}", read_token))
        assert len(found) == 1, query
    risk = found[0]
    assert risk["subject"] == {"reference": "Patient/pat-123", "type": "Patient"}
    assert risk["basis"][0] == {"reference": "Observation/obs-1", "type": "Observation"}
    # The observation the EHR sent without an id keeps its identifier form.
    assert risk["basis"][1]["identifier"]["value"] == graph.sources["Observation/?"]
    assert graph.pseudonyms["Patient/pat-123"] not in str(risk)

    by_mrn = _entries(_get(client, f"/fhir/DetectedIssue?patient:identifier={MRN_SYSTEM}|{MRN}", read_token))
    assert [r["patient"] for r in by_mrn] == [{"reference": "Patient/pat-123", "type": "Patient"}]
    assert by_mrn[0]["evidence"][0]["detail"][0]["reference"] == "Observation/obs-1"


def test_search_finds_patients_without_mrn_and_patients_only_referenced(
    client: Client, graph: EhrGraph, read_token: str
) -> None:
    _graph_outputs(graph)
    plain = _entries(_get(client, "/fhir/RiskAssessment?patient=pat-456", read_token))
    assert [r["subject"]["reference"] for r in plain] == ["Patient/pat-456"]
    assert plain[0]["basis"][0]["reference"] == "Observation/obs-2"
    referenced = _entries(_get(client, "/fhir/RiskAssessment?subject=Patient/pat-789", read_token))
    assert [r["subject"]["reference"] for r in referenced] == ["Patient/pat-789"]
    assert _entries(_get(client, "/fhir/RiskAssessment?patient=pat-000", read_token)) == []


def test_reads_and_searches_are_audited_with_the_pseudonyms_opened(
    client: Client, graph: EhrGraph, read_token: str, ehr_client: EhrIdentity
) -> None:
    outputs = _graph_outputs(graph)
    p123 = graph.pseudonyms["Patient/pat-123"]
    row = outputs["pat-123"][0]
    assert _get(client, f"/fhir/RiskAssessment/{row.resource_id}", read_token).status_code == 200
    read = AuditEvent.objects.get(action="fhir.output.read")
    assert read.outcome == "success" and read.patient_pseudonym == p123
    assert read.actor_id == ehr_client.client_id and read.object_id == row.resource_id
    assert read.detail["patients_reidentified"] == 1 and read.detail["sources_restored"] == 1

    _entries(_get(client, "/fhir/RiskAssessment?_count=10", read_token))
    search = AuditEvent.objects.get(action="fhir.output.search")
    assert search.detail["returned"] == 3 and search.detail["total"] == 3
    assert sorted(search.detail["patient_pseudonyms"]) == sorted(graph.pseudonyms.values())
    assert search.detail["params"] == ["_count"] and search.patient_pseudonym == ""
    # Parameter values (the EHR's patient ids) are not put on record.
    _entries(_get(client, "/fhir/RiskAssessment?patient=pat-123", read_token))
    latest = AuditEvent.objects.filter(action="fhir.output.search").order_by("-seq").first()
    assert latest is not None and latest.patient_pseudonym == p123
    assert "pat-123" not in str(latest.detail)


def test_without_the_vault_key_patients_stay_pseudonymous(
    client: Client, graph: EhrGraph, read_token: str
) -> None:
    _graph_outputs(graph)
    with override_settings(VAULT_PRIVATE_KEY=""):
        found = _entries(_get(client, "/fhir/RiskAssessment?patient=pat-456", read_token))
    assert found[0]["subject"]["identifier"]["value"] == graph.pseudonyms["Patient/pat-456"]
    assert found[0]["basis"][0]["reference"] == "Observation/obs-2"
    audit = AuditEvent.objects.get(action="fhir.output.search")
    assert audit.detail["patients_reidentified"] == 0


def test_a_page_costs_the_same_queries_whatever_its_size(
    client: Client, graph: EhrGraph, read_token: str
) -> None:
    for _ in range(3):
        _graph_outputs(graph)  # 12 resources, 3 patients, 4 cited records
    counts = []
    for size in (1, 12):
        with CaptureQueriesContext(connection) as queries:
            found = _entries(_get(client, f"/fhir/RiskAssessment?_count={size}", read_token))
        assert len(found) == min(size, 9)
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_status_last_updated_and_id_filters(client: Client, organization: Any, read_token: str) -> None:
    rows = outputs_put(
        organization.pk,
        "p" * 32,
        [
            risk_assessment("p" * 32, [], resource_id=f"r{n}", status=s)
            for n, s in enumerate(["preliminary", "final", "final"])
        ],
    )
    base = datetime(2026, 3, 1, 12, tzinfo=UTC)
    for n, row in enumerate(rows):
        OutputResource.objects.filter(pk=row.pk).update(last_updated=base + timedelta(days=n))

    def ids(query: str) -> list[str]:
        return [r["id"] for r in _entries(_get(client, f"/fhir/RiskAssessment?{query}", read_token))]

    assert ids("status=final") == ["r1", "r2"]
    assert ids("status=preliminary,final&_id=r0,r2") == ["r0", "r2"]
    assert ids("_lastUpdated=2026-03-02") == ["r1"]
    assert ids("_lastUpdated=ge2026-03-02") == ["r1", "r2"]
    assert ids("_lastUpdated=gt2026-03-02") == ["r2"]
    assert ids("_lastUpdated=lt2026-03-02T12:00:00Z") == ["r0"]
    assert ids("_lastUpdated=le2026-03-02&_lastUpdated=ge2026-03-01T13:00:01%2B01:00") == ["r1"]
    assert ids("_lastUpdated=ge2026-03-04") == []


def test_paging_follows_next_links_in_a_stable_order(
    client: Client, organization: Any, read_token: str
) -> None:
    rows = outputs_put(
        organization.pk, "p" * 32, [risk_assessment("p" * 32, [], resource_id=f"r{n}") for n in range(5)]
    )
    same_moment = datetime(2026, 3, 1, tzinfo=UTC)
    OutputResource.objects.filter(pk__in=[r.pk for r in rows[:3]]).update(last_updated=same_moment)
    path: str | None = "/fhir/RiskAssessment?status=preliminary&_count=2"
    seen: list[str] = []
    pages = 0
    while path is not None:
        body = _get(client, path, read_token).json()
        assert body["total"] == 5
        assert all(e["search"] == {"mode": "match"} for e in body["entry"])
        assert all(
            e["fullUrl"] == f"http://testserver/fhir/RiskAssessment/{e['resource']['id']}"
            for e in body["entry"]
        )
        links = {link["relation"]: link["url"] for link in body["link"]}
        assert links["self"].startswith("http://testserver/fhir/RiskAssessment?status=preliminary")
        seen.extend(e["resource"]["id"] for e in body["entry"])
        pages += 1
        next_url = links.get("next")
        path = None if next_url is None else f"{urlsplit(next_url).path}?{urlsplit(next_url).query}"
    assert pages == 3 and seen == [r.resource_id for r in rows]
    only_total = _get(client, "/fhir/RiskAssessment?_count=0", read_token).json()
    assert only_total["total"] == 5 and only_total["entry"] == []


def test_unknown_parameters_are_refused_unless_lenient(
    client: Client, risk: OutputResource, read_token: str
) -> None:
    response = _get(client, "/fhir/RiskAssessment?_sort=-_lastUpdated", read_token)
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["code"] == "not-supported" and issue["expression"] == ["_sort"]
    refused = AuditEvent.objects.get(action="fhir.output.search")
    assert refused.outcome == "failure" and refused.detail["unknown_params"] == 1
    lenient = _get(client, "/fhir/RiskAssessment?_sort=-_lastUpdated", read_token, Prefer="handling=lenient")
    assert lenient.status_code == 200 and lenient.json()["total"] == 1
    assert "_sort" not in lenient.json()["link"][0]["url"]
    bad_value = _get(client, "/fhir/RiskAssessment?_lastUpdated=soon", read_token, Prefer="handling=lenient")
    assert bad_value.status_code == 400 and bad_value.json()["issue"][0]["code"] == "value"
