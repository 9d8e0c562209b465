"""The Bulk Data client (integrations.bulk.protocol) against the EHR stand-in over real HTTP: SMART Backend
Services token, kick-off at the three levels, polling, faults (429, 500, timeouts, a dropped connection,
oversized files), resuming with Range, the manifest's host rule, error files, delete. What the stand-in
logged is the evidence of what the client sent."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clinical_ai.core.http import http_request
from integrations.bulk.protocol import (
    AccessToken,
    BulkEndpoint,
    BulkRefused,
    BulkTransient,
    InProgress,
    Manifest,
    access_token_get,
    error_file_reasons,
    export_delete,
    export_kickoff,
    export_poll,
    file_stream,
    token_endpoint_discover,
)
from integrations.fhir.client import client_assertion
from tests.bulk_data import ndjson_bytes, resources_by_type
from tests.ehr_standin import EhrStandIn, client_key_pair

CLIENT_ID = "clinical-ai-gateway"
KID = "gateway-key-1"
SCOPES = "system/Patient.rs system/Observation.rs system/Condition.rs"
FILE_CAP = 64 * 1024 * 1024


def _patient(pid: str, name: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": name}]}


def _observation(oid: str, pid: str, status: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": {"text": "heart rate"},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": 60 + len(oid), "unit": "/min"},
    }


def _small_data() -> dict[str, list[dict[str, Any]]]:
    return {
        "Patient": [_patient("p1", "Ames"), _patient("p2", "Baker"), _patient("p3", "Cole")],
        "Observation": [
            _observation(f"o{i}", f"p{1 + i % 3}", "final" if i % 4 else "amended") for i in range(40)
        ],
        "Condition": [
            {
                "resourceType": "Condition",
                "id": "c1",
                "subject": {"reference": "Patient/p1"},
                "code": {"text": "x"},
            }
        ],
        "Practitioner": [{"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Doe"}]}],
    }


@pytest.fixture(scope="module")
def client_key() -> tuple[bytes, dict[str, Any]]:
    return client_key_pair("ES384", kid=KID)


@pytest.fixture
def ehr(client_key: tuple[bytes, dict[str, Any]]) -> Iterator[EhrStandIn]:
    with EhrStandIn(
        _small_data(), client_id=CLIENT_ID, client_jwks=client_key[1], groups={"cohort-a": ["p1", "p2"]}
    ) as stand_in:
        stand_in.retry_after = "0"
        yield stand_in


def _endpoint(ehr: EhrStandIn, **overrides: Any) -> BulkEndpoint:
    return BulkEndpoint(
        base_url=ehr.base_url,
        file_hosts=overrides.pop("file_hosts", frozenset()),
        timeout_seconds=overrides.pop("timeout_seconds", 5.0),
    )


def _token(ehr: EhrStandIn, key: tuple[bytes, dict[str, Any]]) -> str:
    return access_token_get(
        _endpoint(ehr),
        token_url=ehr.token_url,
        client_id=CLIENT_ID,
        private_key_pem=key[0],
        key_id=KID,
        scopes=SCOPES,
    ).value


def _manifest(ehr: EhrStandIn, token: str, status_url: str, *, polls: int = 10) -> Manifest:
    for _ in range(polls):
        answer = export_poll(_endpoint(ehr), token, status_url)
        if isinstance(answer, Manifest):
            return answer
    raise AssertionError("no manifest")


def _download(ehr: EhrStandIn, token: str | None, url: str, **kwargs: Any) -> bytes:
    with file_stream(_endpoint(ehr), token, url, max_bytes=FILE_CAP, total_seconds=10, **kwargs) as stream:
        return b"".join(stream.chunks())


def _lines(content: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in content.splitlines() if line.strip()]


# --- token -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ES384", "RS384"])
def test_the_token_endpoint_is_discovered_and_a_signed_assertion_gets_a_token(algorithm: str) -> None:
    pem, jwks = client_key_pair(algorithm, kid=KID)
    with EhrStandIn(_small_data(), client_id=CLIENT_ID, client_jwks=jwks, token_ttl=120) as ehr:
        token_url = token_endpoint_discover(_endpoint(ehr))
        assert token_url == ehr.token_url
        before = time.time()
        token = access_token_get(
            _endpoint(ehr),
            token_url=token_url,
            client_id=CLIENT_ID,
            private_key_pem=pem,
            key_id=KID,
            scopes=SCOPES,
        )
    assert isinstance(token, AccessToken) and len(token.value) >= 20
    assert before + 110 < token.expires_at < time.time() + 130
    assert [r.kind for r in ehr.requests] == ["smart-config", "token"]


def test_a_key_the_ehr_does_not_know_is_refused(ehr: EhrStandIn) -> None:
    other_pem, _ = client_key_pair("ES384", kid=KID)  # same kid, another key: the signature fails
    with pytest.raises(BulkRefused) as raised:
        access_token_get(
            _endpoint(ehr),
            token_url=ehr.token_url,
            client_id=CLIENT_ID,
            private_key_pem=other_pem,
            key_id=KID,
            scopes=SCOPES,
        )
    assert raised.value.status in (400, 401) and "invalid_client" in raised.value.reason


def test_a_wrong_client_id_and_a_garbled_key_are_refused(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    with pytest.raises(BulkRefused) as raised:
        access_token_get(
            _endpoint(ehr),
            token_url=ehr.token_url,
            client_id="someone-else",
            private_key_pem=client_key[0],
            key_id=KID,
            scopes=SCOPES,
        )
    assert raised.value.status == 401
    with pytest.raises(BulkRefused) as raised:
        access_token_get(
            _endpoint(ehr),
            token_url=ehr.token_url,
            client_id=CLIENT_ID,
            private_key_pem=b"not a key",
            key_id=KID,
            scopes=SCOPES,
        )
    assert raised.value.status is None and [r.kind for r in ehr.requests] == ["token"]


def test_the_stand_in_refuses_a_replayed_assertion_and_the_wrong_audience(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    def post(assertion: str) -> int:
        form = (
            "grant_type=client_credentials&scope=system%2F*.rs"
            "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
            f"&client_assertion={assertion}"
        )
        return http_request(
            "POST",
            ehr.token_url,
            allowed_hosts={"127.0.0.1"},
            timeout_seconds=5,
            max_response_bytes=65536,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=form.encode(),
        ).status

    assertion = client_assertion(
        client_id=CLIENT_ID, token_url=ehr.token_url, private_key_pem=client_key[0], kid=KID
    )
    assert post(assertion) == 200
    assert post(assertion) == 401  # the same jti again
    elsewhere = client_assertion(
        client_id=CLIENT_ID, token_url=f"{ehr.root_url}/other", private_key_pem=client_key[0], kid=KID
    )
    assert post(elsewhere) == 401


def test_a_throttled_token_endpoint_is_transient(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    ehr.throttle("token", retry_after="9")
    with pytest.raises(BulkTransient) as raised:
        _token(ehr, client_key)
    assert raised.value.status == 429 and raised.value.retry_after == 9
    assert _token(ehr, client_key)


# --- kick-off ----------------------------------------------------------------------------------------------


def test_system_level_export_of_everything(ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]) -> None:
    token = _token(ehr, client_key)
    status_url = export_kickoff(_endpoint(ehr), token, level="system")
    assert status_url.startswith(f"{ehr.root_url}/bulkstatus/")
    manifest = _manifest(ehr, token, status_url)
    assert manifest.requires_access_token and manifest.error == ()
    assert {f.type: f.count for f in manifest.output} == {
        "Patient": 3,
        "Observation": 40,
        "Condition": 1,
        "Practitioner": 1,
    }
    assert abs((manifest.transaction_time - datetime.now(UTC)).total_seconds()) < 30
    observations = next(f for f in manifest.output if f.type == "Observation")
    assert len(_lines(_download(ehr, token, observations.url))) == 40
    kickoff = ehr.requests_of("kickoff")[0]
    assert kickoff.path == "/fhir/$export" and kickoff.token
    assert kickoff.query == {"_outputFormat": ["application/fhir+ndjson"]}


def test_patient_level_export_with_type_type_filter_and_since(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    since = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    status_url = export_kickoff(
        _endpoint(ehr),
        token,
        level="patient",
        types=["Patient", "Observation"],
        type_filters=["Observation?status=amended"],
        since=since,
    )
    manifest = _manifest(ehr, token, status_url)
    by_type = {f.type: f for f in manifest.output}
    assert set(by_type) == {"Patient", "Observation"}  # no Practitioner: not in a patient's compartment
    amended = _lines(_download(ehr, token, by_type["Observation"].url))
    assert len(amended) == 10 and {o["status"] for o in amended} == {"amended"}
    query = ehr.requests_of("kickoff")[0].query
    assert ehr.requests_of("kickoff")[0].path == "/fhir/Patient/$export"
    assert query["_type"] == ["Patient,Observation"]
    assert query["_typeFilter"] == ["Observation?status=amended"]
    assert query["_since"] == ["2020-01-02T03:04:05+00:00"]


def test_group_level_export_holds_the_group_members_only(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    manifest = _manifest(
        ehr, token, export_kickoff(_endpoint(ehr), token, level="group", group_id="cohort-a")
    )
    patients = next(f for f in manifest.output if f.type == "Patient")
    assert sorted(p["id"] for p in _lines(_download(ehr, token, patients.url))) == ["p1", "p2"]
    assert ehr.requests_of("kickoff")[0].path == "/fhir/Group/cohort-a/$export"
    with pytest.raises(BulkRefused) as raised:
        export_kickoff(_endpoint(ehr), token, level="group", group_id="no-such-group")
    assert raised.value.status == 404 and "not-found" in raised.value.reason


def test_since_brings_only_what_changed_after_the_last_export(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    first = _manifest(ehr, token, export_kickoff(_endpoint(ehr), token, level="system"))
    time.sleep(0.01)
    ehr.resource_put(_observation("o7", "p2", "corrected"))
    ehr.resource_put(_observation("o-new", "p3"))
    second = _manifest(
        ehr, token, export_kickoff(_endpoint(ehr), token, level="system", since=first.transaction_time)
    )
    assert [(f.type, f.count) for f in second.output] == [("Observation", 2)]
    changed = _lines(_download(ehr, token, second.output[0].url))
    assert sorted(o["id"] for o in changed) == ["o-new", "o7"] and changed[0]["meta"]["versionId"] == "2"


def test_a_naive_since_and_an_unknown_level_are_refused_before_any_request(ehr: EhrStandIn) -> None:
    with pytest.raises(BulkRefused):
        export_kickoff(_endpoint(ehr), "t", level="system", since=datetime(2020, 1, 1))
    with pytest.raises(BulkRefused):
        export_kickoff(_endpoint(ehr), "t", level="group")  # no group id
    assert ehr.requests == []


def test_without_a_valid_token_the_ehr_refuses(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    with pytest.raises(BulkRefused) as raised:
        export_kickoff(_endpoint(ehr), "made-up-token", level="system")
    assert raised.value.status == 401
    token = _token(ehr, client_key)
    status_url = export_kickoff(_endpoint(ehr), token, level="system")
    ehr.tokens_expire()
    with pytest.raises(BulkRefused) as raised:
        export_poll(_endpoint(ehr), token, status_url)
    assert raised.value.status == 401


# --- polling -----------------------------------------------------------------------------------------------


def test_polling_honours_retry_after_and_reports_progress(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    ehr.polls_before_ready = 2
    ehr.retry_after = "3"
    status_url = export_kickoff(_endpoint(ehr), token, level="system")
    first = export_poll(_endpoint(ehr), token, status_url)
    assert first == InProgress(retry_after=3, progress="preparing: poll 1 of 2")
    ehr.retry_after = (datetime.now(UTC) + timedelta(seconds=120)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    second = export_poll(_endpoint(ehr), token, status_url)
    assert (
        isinstance(second, InProgress) and second.retry_after is not None and 110 <= second.retry_after <= 120
    )
    assert isinstance(export_poll(_endpoint(ehr), token, status_url), Manifest)


def test_429_then_success(ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]) -> None:
    token = _token(ehr, client_key)
    status_url = export_kickoff(_endpoint(ehr), token, level="system")
    ehr.throttle("status", times=2, retry_after="7")
    for _ in range(2):
        with pytest.raises(BulkTransient) as raised:
            export_poll(_endpoint(ehr), token, status_url)
        assert raised.value.status == 429 and raised.value.retry_after == 7
    assert isinstance(_manifest(ehr, token, status_url), Manifest)


def test_500_then_success_and_a_failed_export_is_refused_without_its_diagnostics(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    status_url = export_kickoff(_endpoint(ehr), token, level="system")
    ehr.fail_next("status", 500)  # issue code "transient"
    with pytest.raises(BulkTransient) as transient:
        export_poll(_endpoint(ehr), token, status_url)
    assert transient.value.status == 500
    assert isinstance(_manifest(ehr, token, status_url), Manifest)
    # The export itself failed: 500 with a final issue code. Its diagnostics name a patient.
    ehr.fail_next("status", 500, code="processing")
    with pytest.raises(BulkRefused) as refused:
        export_poll(_endpoint(ehr), token, status_url)
    assert refused.value.status == 500 and "processing" in refused.value.reason
    ehr.fail_next("kickoff", 400, code="not-supported")
    with pytest.raises(BulkRefused) as kickoff_refused:
        export_kickoff(_endpoint(ehr), token, level="system")
    for failure in (transient.value, refused.value, kickoff_refused.value):
        text = str(failure)
        assert "Jane" not in text and "998877" not in text and token not in text and "bulkstatus" not in text


def test_a_poll_that_times_out_is_transient(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    status_url = export_kickoff(_endpoint(ehr), token, level="system")
    ehr.delay_next("status", 1.5)
    started = time.monotonic()
    with pytest.raises(BulkTransient) as raised:
        export_poll(_endpoint(ehr, timeout_seconds=0.4), token, status_url)
    assert time.monotonic() - started < 1.4 and raised.value.status is None
    assert isinstance(_manifest(ehr, token, status_url), Manifest)


def test_a_manifest_naming_another_host_is_refused(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    ehr.files_on_other_host = "localhost"  # the same server under another name
    ehr.polls_before_ready = 0
    status_url = export_kickoff(_endpoint(ehr), token, level="system")
    with pytest.raises(BulkRefused) as raised:
        export_poll(_endpoint(ehr), token, status_url)
    assert "manifest names a file on a host" in raised.value.reason
    assert ehr.requests_of("file") == []
    # Listed by the operator as a file host, the same manifest is fine and its files are read there.
    listed = _endpoint(ehr, file_hosts=frozenset({"localhost"}))
    manifest = export_poll(listed, token, status_url)
    assert isinstance(manifest, Manifest) and manifest.output[0].url.startswith("http://localhost:")
    with file_stream(listed, token, manifest.output[0].url, max_bytes=FILE_CAP, total_seconds=10) as stream:
        assert _lines(b"".join(stream.chunks()))


# --- files -------------------------------------------------------------------------------------------------


def test_a_dropped_connection_mid_file_is_transient_then_resumed_with_range(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    manifest = _manifest(
        ehr, token, export_kickoff(_endpoint(ehr), token, level="system", types=["Observation"])
    )
    url = manifest.output[0].url
    whole = ndjson_bytes(_small_data()["Observation"])
    ehr.drop_file_after(1000)
    received = bytearray()
    with (
        pytest.raises(BulkTransient),
        file_stream(_endpoint(ehr), token, url, max_bytes=FILE_CAP, total_seconds=10) as stream,
    ):
        for chunk in stream.chunks():
            received += chunk
    assert 0 < len(received) <= 1000
    kept = bytes(received[: received.rindex(b"\n") + 1])  # complete lines only, as the intake keeps them
    with file_stream(
        _endpoint(ehr), token, url, max_bytes=FILE_CAP, total_seconds=10, start_byte=len(kept)
    ) as stream:
        assert stream.resumed_at == len(kept) and stream.status == 206
        rest = b"".join(stream.chunks())
    assert kept + rest == whole
    assert [r.range for r in ehr.requests_of("file")] == [None, f"bytes={len(kept)}-"]


def test_range_not_supported_starts_again_from_the_first_byte(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    ehr.range_supported = False
    manifest = _manifest(
        ehr, token, export_kickoff(_endpoint(ehr), token, level="system", types=["Observation"])
    )
    with file_stream(
        _endpoint(ehr), token, manifest.output[0].url, max_bytes=FILE_CAP, total_seconds=10, start_byte=500
    ) as stream:
        assert stream.resumed_at == 0 and stream.status == 200
        assert b"".join(stream.chunks()) == ndjson_bytes(_small_data()["Observation"])
    assert ehr.requests_of("file")[0].range == "bytes=500-"


def test_resuming_at_the_very_end_reads_nothing(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    manifest = _manifest(
        ehr, token, export_kickoff(_endpoint(ehr), token, level="system", types=["Condition"])
    )
    size = len(ndjson_bytes(_small_data()["Condition"]))
    with file_stream(
        _endpoint(ehr), token, manifest.output[0].url, max_bytes=FILE_CAP, total_seconds=10, start_byte=size
    ) as stream:
        assert stream.resumed_at == size and list(stream.chunks()) == []


def test_an_oversized_file_is_capped_for_good(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    ehr.oversized_file("Observation", 50 * 1024 * 1024)
    manifest = _manifest(
        ehr, token, export_kickoff(_endpoint(ehr), token, level="system", types=["Observation"])
    )
    cap = 1024 * 1024
    received = 0
    with (
        pytest.raises(BulkRefused) as raised,
        file_stream(_endpoint(ehr), token, manifest.output[0].url, max_bytes=cap, total_seconds=10) as stream,
    ):
        for chunk in stream.chunks():
            received += len(chunk)
    assert "larger than" in raised.value.reason and received <= cap


def test_a_file_that_does_not_start_in_time_is_transient(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    manifest = _manifest(
        ehr, token, export_kickoff(_endpoint(ehr), token, level="system", types=["Observation"])
    )
    ehr.delay_next("file", 1.0)
    with (
        pytest.raises(BulkTransient),
        file_stream(
            _endpoint(ehr, timeout_seconds=0.3),
            token,
            manifest.output[0].url,
            max_bytes=FILE_CAP,
            total_seconds=10,
        ),
    ):
        pass


def test_files_without_requires_access_token_get_no_token(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    ehr.requires_access_token = False
    manifest = _manifest(ehr, token, export_kickoff(_endpoint(ehr), token, level="system", types=["Patient"]))
    assert manifest.requires_access_token is False
    assert len(_lines(_download(ehr, None, manifest.output[0].url))) == 3
    assert [r.token for r in ehr.requests_of("file")] == [False]
    # While the EHR wants a token, a download without one is refused (401).
    ehr.requires_access_token = True
    manifest = _manifest(ehr, token, export_kickoff(_endpoint(ehr), token, level="system", types=["Patient"]))
    with pytest.raises(BulkRefused) as raised:
        _download(ehr, None, manifest.output[0].url)
    assert raised.value.status == 401
    assert _download(ehr, token, manifest.output[0].url)


def test_error_file_reasons_count_issue_codes_only(
    ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]
) -> None:
    token = _token(ehr, client_key)
    ehr.error_file_lines = [
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "not-found", "diagnostics": "Patient Jane Doe"}],
        },
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "processing", "diagnostics": "MRN 998877"}],
        },
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "not-found"}, {"severity": "error", "code": "not-found"}],
        },
    ]
    manifest = _manifest(ehr, token, export_kickoff(_endpoint(ehr), token, level="system"))
    assert [f.type for f in manifest.error] == ["OperationOutcome"]
    with file_stream(
        _endpoint(ehr), token, manifest.error[0].url, max_bytes=FILE_CAP, total_seconds=10
    ) as stream:
        reasons = error_file_reasons(stream.chunks())
    assert reasons == {"not-found": 2, "processing": 1}


def test_error_file_reasons_across_chunk_boundaries_and_bad_lines() -> None:
    lines = [
        json.dumps(
            {"resourceType": "OperationOutcome", "issue": [{"code": "too-costly", "diagnostics": "x" * 50}]}
        ),
        "not json at all",
        json.dumps({"resourceType": "Patient", "id": "p1"}),
        json.dumps({"resourceType": "OperationOutcome", "issue": [{"code": "Robert Smith lives here"}]}),
        "",
        json.dumps({"resourceType": "OperationOutcome", "issue": [{"code": "too-costly"}]}),
    ]
    raw = "\n".join(lines).encode()  # the last line has no newline
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    assert error_file_reasons(pieces) == {"too-costly": 2, "unreadable": 2, "unknown": 1}
    # Lines of 140, 84 and 71 bytes around a cap of 80: the long ones are skipped unread, never held.
    assert error_file_reasons([b"x" * 100 + b"\n", raw], max_line_bytes=80) == {
        "unreadable": 5,
        "too-costly": 1,
    }


def test_delete_ends_the_job(ehr: EhrStandIn, client_key: tuple[bytes, dict[str, Any]]) -> None:
    token = _token(ehr, client_key)
    status_url = export_kickoff(_endpoint(ehr), token, level="system")
    manifest = _manifest(ehr, token, status_url)
    assert export_delete(_endpoint(ehr), token, status_url) is True
    assert len(ehr.jobs_deleted) == 1
    with pytest.raises(BulkRefused) as raised:
        export_poll(_endpoint(ehr), token, status_url)
    assert raised.value.status == 404
    with pytest.raises(BulkRefused):
        _download(ehr, token, manifest.output[0].url)
    assert export_delete(_endpoint(ehr), token, status_url) is True  # already gone: fine
    ehr.fail_next("delete", 500)
    assert export_delete(_endpoint(ehr), token, status_url) is False  # best effort, never raises


def test_the_shared_synthea_set_exported_whole(client_key: tuple[bytes, dict[str, Any]]) -> None:
    data = resources_by_type()  # skips where ../shared/data is absent
    with EhrStandIn(data, client_id=CLIENT_ID, client_jwks=client_key[1]) as ehr:
        ehr.retry_after = "0"
        ehr.lines_per_file = 500
        token = _token(ehr, client_key)
        manifest = _manifest(ehr, token, export_kickoff(_endpoint(ehr), token, level="patient"))
        counted: dict[str, int] = {}
        for entry in manifest.output:
            lines = _lines(_download(ehr, token, entry.url))
            assert len(lines) == entry.count and {r["resourceType"] for r in lines} == {entry.type}
            counted[entry.type] = counted.get(entry.type, 0) + len(lines)
    assert counted["Patient"] == 11 and counted["Observation"] == len(data["Observation"])
    assert len([f for f in manifest.output if f.type == "Observation"]) == -(-len(data["Observation"]) // 500)
    assert "Practitioner" not in counted  # not in a patient's compartment
