"""The EHR stand-in's FHIR side, which the paged CDS reads and the patient refresh are tested against: it
must itself page, guard and fail as documented, or those tests prove nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from clinical_ai.core.http import HttpReply, http_request
from integrations.bulk.protocol import (
    BulkEndpoint,
    BulkRefused,
    Manifest,
    access_token_get,
    export_kickoff,
    export_poll,
)
from tests.ehr_standin import EhrStandIn, client_key_pair
from tests.stand_in import loopback_server

CLIENT_ID = "gateway"


def _data() -> dict[str, list[dict[str, Any]]]:
    return {
        "Patient": [{"resourceType": "Patient", "id": pid} for pid in ("p1", "p2")],
        "Observation": [
            {
                "resourceType": "Observation",
                "id": f"o{i}",
                "status": "final",
                "subject": {"reference": f"Patient/p{1 + i % 2}"},
            }
            for i in range(25)
        ],
        "Condition": [{"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}],
    }


@pytest.fixture
def ehr() -> Iterator[tuple[EhrStandIn, str]]:
    pem, jwks = client_key_pair("RS384", kid="k")
    with EhrStandIn(_data(), client_id=CLIENT_ID, client_jwks=jwks) as stand_in:
        token = access_token_get(
            BulkEndpoint(base_url=stand_in.base_url),
            token_url=stand_in.token_url,
            client_id=CLIENT_ID,
            private_key_pem=pem,
            key_id="k",
            scopes="system/*.rs",
        ).value
        yield stand_in, token


def _get(url: str, token: str | None) -> HttpReply:
    return http_request(
        "GET",
        url,
        allowed_hosts={"127.0.0.1", "localhost"},
        timeout_seconds=5,
        max_response_bytes=4 * 1024 * 1024,
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )


def _pages(url: str, token: str) -> list[dict[str, Any]]:
    bundles = []
    next_url: str | None = url
    while next_url:
        reply = _get(next_url, token)
        assert reply.status == 200
        bundle = json.loads(reply.body)
        bundles.append(bundle)
        next_url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return bundles


def test_a_search_pages_through_every_match_once(ehr: tuple[EhrStandIn, str]) -> None:
    stand_in, token = ehr
    bundles = _pages(f"{stand_in.base_url}/Observation?patient=p1&_count=5", token)
    ids = [e["resource"]["id"] for b in bundles for e in b["entry"]]
    assert len(bundles) == 3 and [len(b["entry"]) for b in bundles] == [5, 5, 3]
    assert sorted(ids) == sorted(f"o{i}" for i in range(0, 25, 2)) and len(set(ids)) == 13
    assert all(b["type"] == "searchset" and b["total"] == 13 for b in bundles)
    assert [r.query.get("_page") for r in stand_in.requests_of("search")] == [None, ["1"], ["2"]]


def test_subject_and_id_searches_and_reads(ehr: tuple[EhrStandIn, str]) -> None:
    stand_in, token = ehr
    (bundle,) = _pages(f"{stand_in.base_url}/Condition?subject=Patient/p1", token)
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["c1"]
    (bundle,) = _pages(f"{stand_in.base_url}/Patient?_id=p2", token)
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["p2"]
    assert json.loads(_get(f"{stand_in.base_url}/Observation/o3", token).body)["id"] == "o3"
    missing = _get(f"{stand_in.base_url}/Observation/nope", token)
    assert missing.status == 404 and json.loads(missing.body)["resourceType"] == "OperationOutcome"


def test_everything_pages_and_can_be_turned_off(ehr: tuple[EhrStandIn, str]) -> None:
    stand_in, token = ehr
    bundles = _pages(f"{stand_in.base_url}/Patient/p1/$everything?_count=4", token)
    types = sorted(e["resource"]["resourceType"] for b in bundles for e in b["entry"])
    assert types == ["Condition"] + ["Observation"] * 13 + ["Patient"]
    stand_in.everything_supported = False
    refused = _get(f"{stand_in.base_url}/Patient/p1/$everything", token)
    assert refused.status == 404 and json.loads(refused.body)["issue"][0]["code"] == "not-supported"


def test_the_next_link_can_point_at_another_host(ehr: tuple[EhrStandIn, str]) -> None:
    stand_in, token = ehr
    stand_in.next_link_host = "localhost"
    bundle = json.loads(_get(f"{stand_in.base_url}/Observation?patient=p2&_count=5", token).body)
    (next_url,) = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
    assert next_url.startswith(f"http://localhost:{stand_in.port}/fhir/Observation?")


def test_every_fhir_endpoint_wants_a_valid_token(ehr: tuple[EhrStandIn, str]) -> None:
    stand_in, token = ehr
    urls = [
        f"{stand_in.base_url}/Observation?patient=p1",
        f"{stand_in.base_url}/Observation/o1",
        f"{stand_in.base_url}/Patient/p1/$everything",
        f"{stand_in.base_url}/$export",
    ]
    for url in urls:
        assert _get(url, None).status == 401
        assert _get(url, "forged").status == 401
    stand_in.tokens_expire()
    assert _get(urls[0], token).status == 401
    assert [r.token for r in stand_in.requests][-1] is True


def test_faults_are_taken_in_order_and_then_stop(ehr: tuple[EhrStandIn, str]) -> None:
    stand_in, token = ehr
    stand_in.fail_next("search", 503, times=2, retry_after="4")
    url = f"{stand_in.base_url}/Observation?patient=p1"
    first, second, third = (_get(url, token) for _ in range(3))
    assert (first.status, second.status, third.status) == (503, 503, 200)
    assert first.retry_after == 4 and json.loads(first.body)["issue"][0]["code"] == "transient"


def test_the_client_jwks_can_be_fetched_from_a_url() -> None:
    pem, jwks = client_key_pair("ES384", kid="rotating")
    served = {"jwks": jwks}

    class JwksHost(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            raw = json.dumps(served["jwks"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    with (
        loopback_server(JwksHost) as jwks_host,
        EhrStandIn(_data(), client_id=CLIENT_ID, client_jwks_url=f"{jwks_host}/jwks.json") as stand_in,
    ):
        endpoint = BulkEndpoint(base_url=stand_in.base_url)
        arguments = {
            "token_url": stand_in.token_url,
            "client_id": CLIENT_ID,
            "key_id": "rotating",
            "scopes": "system/*.rs",
        }
        assert access_token_get(endpoint, private_key_pem=pem, **arguments).value
        served["jwks"] = {"keys": []}  # the client withdrew its key: refused from the next request on
        with pytest.raises(BulkRefused) as raised:
            access_token_get(endpoint, private_key_pem=pem, **arguments)
    assert raised.value.status == 401


def test_files_split_with_a_malformed_line_where_asked(ehr: tuple[EhrStandIn, str]) -> None:
    stand_in, token = ehr
    stand_in.polls_before_ready = 0
    stand_in.lines_per_file = 10
    stand_in.add_malformed_line("Observation", b'{"resourceType": "Observation", "id": ', at=2)
    endpoint = BulkEndpoint(base_url=stand_in.base_url)
    manifest = export_poll(
        endpoint, token, export_kickoff(endpoint, token, level="system", types=["Observation"])
    )
    assert isinstance(manifest, Manifest)
    assert [(f.type, f.count) for f in manifest.output] == [("Observation", 10)] * 2 + [("Observation", 6)]
    first = _get(manifest.output[0].url, token).body.splitlines()
    assert first[2] == b'{"resourceType": "Observation", "id": ' and json.loads(first[3])["id"] == "o2"
