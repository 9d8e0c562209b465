"""Properties of the FHIR intake endpoints under bad input, through the real HTTP stack (django.test.Client:
middleware, URLconf, SMART authentication, views, services, the database): never a 5xx, a clear error
(OperationOutcome or bare 401), and a refused request writes nothing but the audit row of its refusal.

The test client re-raises any exception a view lets escape, so a would-be 500 fails here with its traceback.
"""

from __future__ import annotations

import base64
import functools
import json
import time
import tracemalloc
import zlib
from typing import Any

from django.test import Client, override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from clinical_ai.intake.models import IngestJob
from tests.factories import post_fhir

from .conftest import PROFILE, examples
from .harness import (
    CASE_COUNTS,
    Snapshot,
    assert_fhir_refusal,
    assert_nothing_written,
    snapshot,
)
from .strategies import SEED_RESOURCES, bundles, nested, resources, seed_bundle

PROFILE_SETTINGS = settings.get_profile(PROFILE)


def _headers(response: Any) -> dict[str, str]:
    return {
        name: response[name] for name in ("Content-Type", "WWW-Authenticate") if response.has_header(name)
    }


def check_answer(response: Any, before: Snapshot, what: str) -> None:
    """< 500; a refusal is clear and wrote nothing; an acceptance stored at most one job."""
    status = response.status_code
    assert status < 500, (what, status, response.content[:300])
    if status >= 400:
        assert_fhir_refusal(status, response.content, _headers(response), what)
        assert_nothing_written(before, what)
    else:
        assert status in (200, 201), (what, status)
        added = IngestJob.objects.count() - before.counts["intake.IngestJob"]
        assert added in (0, 1), (what, added)  # 0: a replay, or a batch whose entries were all refused


def _post(client: Client, token: str, body: Any, path: str = "/fhir", **kwargs: Any) -> Any:
    return post_fhir(client, token, body, path=path, **kwargs)


# --- random and mutated resources and bundles ------------------------------------------------------------


@settings(PROFILE_SETTINGS, max_examples=examples(1.0))
@given(resource=resources)
def test_mutated_resources(client: Client, token: str, resource: Any) -> None:
    CASE_COUNTS["property mutated resources POST /fhir/{type}"] += 1
    resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
    path = (
        f"/fhir/{resource_type}"
        if isinstance(resource_type, str) and resource_type.isalpha()
        else "/fhir/Observation"
    )
    before = snapshot()
    response = _post(client, token, resource, path=path)
    check_answer(response, before, f"POST {path}")
    if response.status_code == 201:
        assert response["Location"].startswith(f"http://testserver{path}/")


@settings(PROFILE_SETTINGS, max_examples=examples(1.0))
@given(document=bundles)
def test_mutated_bundles(client: Client, token: str, document: Any) -> None:
    CASE_COUNTS["property mutated bundles POST /fhir"] += 1
    before = snapshot()
    response = _post(client, token, document)
    check_answer(response, before, "POST /fhir")
    if response.status_code == 200:
        answer = response.json()
        statuses = [e["response"]["status"] for e in answer["entry"]]
        if answer["type"] == "transaction-response":  # all or nothing
            assert all(s.startswith("201") for s in statuses), statuses
        stored = IngestJob.objects.count() - before.counts["intake.IngestJob"]
        assert stored == (1 if any(s.startswith("201") for s in statuses) else 0), (stored, statuses)


@settings(PROFILE_SETTINGS, max_examples=examples(0.5))
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=8,
    )
)
def test_arbitrary_json(client: Client, token: str, value: Any) -> None:
    """Any JSON at all, as a resource and as a bundle."""
    CASE_COUNTS["property arbitrary JSON POST /fhir and /fhir/Patient"] += 1
    for path in ("/fhir", "/fhir/Patient"):
        before = snapshot()
        check_answer(_post(client, token, json.dumps(value).encode("utf-8"), path=path), before, path)


# --- bytes that are not FHIR JSON ------------------------------------------------------------------------


VALID = json.dumps(seed_bundle("transaction")).encode("utf-8")


@settings(PROFILE_SETTINGS, max_examples=examples(0.5))
@given(
    position=st.integers(min_value=0, max_value=len(VALID)),
    garbage=st.sampled_from(
        [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80\x80"]
    ),
    path=st.sampled_from(["/fhir", "/fhir/Patient"]),
)
def test_invalid_utf8(client: Client, token: str, position: int, garbage: bytes, path: str) -> None:
    CASE_COUNTS["property invalid UTF-8 bytes"] += 1
    before = snapshot()
    response = _post(client, token, VALID[:position] + garbage + VALID[position:], path=path)
    assert response.status_code in (400, 404), response.content[
        :300
    ]  # 404: /fhir/Patient, type mismatch first
    check_answer(response, before, f"invalid UTF-8 at {position}")


@settings(PROFILE_SETTINGS, max_examples=examples(0.5))
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_bytes(client: Client, token: str, raw: bytes) -> None:
    CASE_COUNTS["property random bytes POST /fhir"] += 1
    before = snapshot()
    check_answer(_post(client, token, raw), before, "random bytes")


# --- limits: nesting, size, attachments ------------------------------------------------------------------


@settings(PROFILE_SETTINGS, max_examples=examples(0.5))
@given(offset=st.integers(min_value=-3, max_value=40), kind=st.sampled_from(["extension", "object"]))
def test_nesting_depth(client: Client, token: str, settings: Any, offset: int, kind: str) -> None:
    """Deeper than FHIR_MAX_NESTING_DEPTH: 413, whether or not the structure is otherwise valid."""
    CASE_COUNTS["property nesting depth around FHIR_MAX_NESTING_DEPTH"] += 1
    depth = settings.FHIR_MAX_NESTING_DEPTH + offset
    before = snapshot()
    response = _post(client, token, nested(depth, kind), path="/fhir/Observation")
    check_answer(response, before, f"depth {depth}")
    if offset > 0:
        assert response.status_code == 413, (depth, response.content[:200])


def test_nesting_far_beyond_the_parser(client: Client, token: str) -> None:
    """Nesting that Python's json module itself cannot parse (RecursionError) is a 400, not a 500."""
    for raw in (b"[" * 200_000, b'{"a":' * 200_000, b'{"resourceType":"Patient","x":' + b"[" * 100_000):
        CASE_COUNTS["example nesting beyond the JSON parser"] += 1
        before = snapshot()
        response = _post(client, token, raw, path="/fhir/Patient")
        assert response.status_code in (400, 413), response.content[:200]
        check_answer(response, before, "deep")


@settings(PROFILE_SETTINGS, max_examples=examples(0.5))
@given(offset=st.integers(min_value=-64, max_value=64), path=st.sampled_from(["/fhir", "/fhir/Observation"]))
def test_body_size_around_the_limit(client: Client, token: str, offset: int, path: str) -> None:
    """A padded body of limit+offset bytes (the limit lowered to keep it cheap): over the limit, 413."""
    CASE_COUNTS["property body size around FHIR_MAX_BODY_BYTES"] += 1
    limit = 4096
    document = observation_padded(limit + offset) if path != "/fhir" else bundle_padded(limit + offset)
    assert len(document) == limit + offset
    with override_settings(FHIR_MAX_BODY_BYTES=limit):
        before = snapshot()
        response = _post(client, token, document, path=path)
    check_answer(response, before, f"{len(document)} bytes")
    if offset > 0:
        assert response.status_code == 413, response.content[:200]


def observation_padded(size: int) -> bytes:
    shell = json.dumps(SEED_RESOURCES[1] | {"note": [{"text": ""}]}).encode("utf-8")
    return shell.replace(b'"text": ""', b'"text": "' + b"x" * (size - len(shell)) + b'"')


def bundle_padded(size: int) -> bytes:
    shell = json.dumps(seed_bundle("batch") | {"id": ""}).encode("utf-8")
    return shell.replace(b'"id": ""', b'"id": "' + b"x" * (size - len(shell)) + b'"')


def test_body_over_the_real_limit_is_refused_unread(client: Client, token: str, settings: Any) -> None:
    """FHIR_MAX_BODY_BYTES + 1 at the real limit (20 MiB): 413, answered from Content-Length."""
    CASE_COUNTS["example body over the real FHIR_MAX_BODY_BYTES"] += 1
    raw = bundle_padded(settings.FHIR_MAX_BODY_BYTES + 1)
    before = snapshot()
    started = time.monotonic()
    response = _post(client, token, raw)
    assert response.status_code == 413
    assert time.monotonic() - started < 5
    check_answer(response, before, "20 MiB + 1")


@functools.cache
def _gzip_bomb(inflated_mib: int) -> bytes:
    """gzip of ``inflated_mib`` MiB of zeros (about 1000:1), made once per size."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    chunk = b"\0" * (1024 * 1024)
    return b"".join([*(compressor.compress(chunk) for _ in range(inflated_mib)), compressor.flush()])


def _document_reference(data: str, content_type: str) -> dict[str, Any]:
    return SEED_RESOURCES[4] | {"content": [{"attachment": {"contentType": content_type, "data": data}}]}


@settings(PROFILE_SETTINGS, max_examples=examples(0.2))
@given(
    inflated_mib=st.sampled_from([16, 128, 512]),
    content_type=st.sampled_from(["application/gzip", "text/plain", "application/octet-stream", "text/html"]),
)
def test_zip_bomb_attachment_is_never_inflated(
    client: Client, token: str, inflated_mib: int, content_type: str
) -> None:
    """base64 of gzip that would inflate to hundreds of MiB: taken or refused as it is, without inflating
    it (peak memory stays a small multiple of the body; a 512 MiB inflation would show)."""
    CASE_COUNTS["property zip-bomb base64 attachment"] += 1
    bomb = _gzip_bomb(inflated_mib)
    body = json.dumps(_document_reference(base64.b64encode(bomb).decode("ascii"), content_type)).encode()
    before = snapshot()
    tracemalloc.start()
    try:
        started = time.monotonic()
        response = _post(client, token, body, path="/fhir/DocumentReference")
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    check_answer(response, before, f"bomb of {inflated_mib} MiB")
    assert peak < 64 * len(body) + 16 * 1024 * 1024, (peak, len(body))
    assert elapsed < 10, elapsed


@settings(PROFILE_SETTINGS, max_examples=examples(0.2))
@given(offset=st.integers(min_value=-8, max_value=8))
def test_huge_base64_attachment(client: Client, token: str, offset: int) -> None:
    """An attachment whose base64 alone takes the body to the limit (lowered): over it, 413."""
    CASE_COUNTS["property huge base64 attachment around the limit"] += 1
    limit = 64 * 1024
    shell = json.dumps(_document_reference("", "application/pdf")).encode("utf-8")
    body = shell.replace(b'"data": ""', b'"data": "' + b"A" * (limit + offset - len(shell)) + b'"')
    with override_settings(FHIR_MAX_BODY_BYTES=limit):
        before = snapshot()
        response = _post(client, token, body, path="/fhir/DocumentReference")
    check_answer(response, before, f"{len(body)} bytes of base64")
    if offset > 0:
        assert response.status_code == 413


@settings(PROFILE_SETTINGS, max_examples=examples(0.2))
@given(encoding=st.sampled_from(["gzip", "deflate", "br", "x-gzip", "GZIP", "gzip, identity", "compress"]))
def test_content_encoding_is_refused_unread(client: Client, token: str, encoding: str) -> None:
    """A compressed body (here a small gzip that inflates to 64 MiB) is a 415, never inflated."""
    CASE_COUNTS["property Content-Encoding bodies"] += 1
    body = _gzip_bomb(64)
    before = snapshot()
    response = _post(client, token, body, headers={"Content-Encoding": encoding})
    assert response.status_code == 415, response.content[:200]
    check_answer(response, before, f"Content-Encoding {encoding}")
