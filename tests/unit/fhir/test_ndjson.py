"""NDJSON lines out of byte chunks and each line to a resource or a refusal reason (pure, no database)."""

from __future__ import annotations

import itertools
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from clinical_ai.fhir import ndjson
from clinical_ai.fhir.compartment import patient_reference_of
from clinical_ai.fhir.ndjson import Line, line_parse, lines_split, version_marker
from tests.bulk_data import ndjson_bytes, patient_bundle_paths, resources_by_type

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"text": "heart rate"},
    "subject": {"reference": "Patient/p1"},
}


def _chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _split(data: bytes, *, size: int = 7, cap: int = 1000) -> list[Line]:
    return list(lines_split(_chunked(data, size), max_line_bytes=cap))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 10_000])
def test_lines_are_the_same_whatever_the_chunk_boundaries(size: int) -> None:
    data = b'{"a":1}\r\n\n{"b":2}\n  \n{"c":3}'
    lines = _split(data, size=size)
    assert [(line.number, line.data) for line in lines] == [
        (1, b'{"a":1}'),
        (2, b""),
        (3, b'{"b":2}'),
        (4, b"  "),
        (5, b'{"c":3}'),
    ]
    assert [line.blank for line in lines] == [False, True, False, True, False]
    # each end is where the next line starts in the file: a resume can start there
    assert [line.end for line in lines] == [9, 10, 18, 21, 28]
    for line, following in itertools.pairwise(lines):
        assert data[line.end :].startswith(following.data)


def test_a_final_newline_makes_no_extra_line_and_a_bom_is_dropped() -> None:
    data = b'\xef\xbb\xbf{"a":1}\n{"b":2}\n'
    lines = _split(data, size=2)
    assert [line.data for line in lines] == [b'{"a":1}', b'{"b":2}']
    assert lines[-1].end == len(data)
    assert _split(b"") == []


@pytest.mark.parametrize("size", [1, 4, 100])
def test_a_too_long_line_is_reported_without_its_content_and_the_rest_is_read(size: int) -> None:
    long_line = b'{"x":"' + b"y" * 50 + b'"}'
    data = b'{"a":1}\n' + long_line + b'\r\n{"b":2}\n' + long_line
    lines = _split(data, size=size, cap=20)
    assert [(line.number, line.too_long, line.data) for line in lines] == [
        (1, False, b'{"a":1}'),
        (2, True, b""),
        (3, False, b'{"b":2}'),
        (4, True, b""),
    ]
    assert lines[-1].end == len(data)


def test_a_line_exactly_at_the_cap_is_kept() -> None:
    lines = _split(b"x" * 20 + b"\r\n" + b"y" * 21 + b"\n", size=3, cap=20)
    assert [(line.too_long, len(line.data)) for line in lines] == [(False, 20), (True, 0)]


def test_splitting_a_large_stream_keeps_memory_flat() -> None:
    """20 MB of lines (and one 8 MB line over the cap) read through 1 MiB chunks: the splitter holds one line
    at a time, never the stream, never the over-long line."""
    line = json.dumps(OBSERVATION).encode() + b"\n"
    big = b'{"x":"' + b"z" * (8 * 1024 * 1024) + b'"}\n'
    count = 20 * 1024 * 1024 // len(line)

    def stream() -> Iterator[bytes]:
        block = line * (1024 * 1024 // len(line))
        produced = 0
        inserted = False
        while produced < count:
            take = min(count - produced, 1024 * 1024 // len(line))
            yield block[: take * len(line)]
            produced += take
            if not inserted and produced >= count // 2:
                inserted = True
                yield from _chunked(big, 1024 * 1024)

    tracemalloc.start()
    try:
        seen = too_long = 0
        for item in lines_split(stream(), max_line_bytes=1024 * 1024):
            seen += 1
            too_long += item.too_long
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (seen, too_long) == (count + 1, 1)
    assert peak < 6 * 1024 * 1024, peak


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"resourceType": "Patient", "id": "p1"', ndjson.NOT_JSON),
        (b"not json at all", ndjson.NOT_JSON),
        (b"\xff\xfe{}", ndjson.NOT_JSON),
        (b'{"resourceType": "Patient", "id": "p1", "id": "p2"}', ndjson.NOT_JSON),
        (b'{"resourceType": "Observation", "id": "o", "valueQuantity": {"value": NaN}}', ndjson.NOT_JSON),
        (b'[{"resourceType": "Patient", "id": "p1"}]', ndjson.NOT_AN_OBJECT),
        (b'"Patient"', ndjson.NOT_AN_OBJECT),
        (b'{"id": "p1"}', ndjson.NO_RESOURCE_TYPE),
        (b'{"resourceType": 7, "id": "p1"}', ndjson.NO_RESOURCE_TYPE),
        (b'{"resourceType": "Spaceship", "id": "s1"}', ndjson.UNKNOWN_RESOURCE_TYPE),
        (b'{"resourceType": "patient", "id": "p1"}', ndjson.UNKNOWN_RESOURCE_TYPE),
        (b'{"resourceType": "Patient"}', ndjson.NO_ID),
        (b'{"resourceType": "Patient", "id": "has space"}', ndjson.NO_ID),
        (b'{"resourceType": "Patient", "id": "' + b"a" * 65 + b'"}', ndjson.NO_ID),
        (b'{"resourceType": "Patient", "id": "p1", "gender": "sometimes"}', ndjson.INVALID),
        (b'{"resourceType": "Patient", "id": "p1", "birthDate": 1970}', ndjson.INVALID),
        (b'{"resourceType": "Patient", "id": "p1", "nonsense": true}', ndjson.INVALID),
        (b'{"resourceType": "Patient", "id": "p1", "name": [{"text": "a\\u0000b"}]}', ndjson.NOT_JSON),
    ],
)
def test_each_refused_line_gets_its_reason(line: bytes, reason: str) -> None:
    parsed = line_parse(line)
    assert (parsed.resource, parsed.reason) == (None, reason)
    assert reason in ndjson.REFUSAL_REASONS


def test_nesting_past_the_limit_is_invalid() -> None:
    deep: dict[str, Any] = {"url": "x"}
    for _ in range(10):
        deep = {"url": "x", "extension": [deep]}
    line = json.dumps({"resourceType": "Patient", "id": "p1", "extension": [deep]}).encode()
    assert line_parse(line, max_nesting_depth=8).reason == ndjson.INVALID
    assert line_parse(line, max_nesting_depth=64).reason == ""


def test_a_valid_line_gives_its_resource() -> None:
    parsed = line_parse(b"  " + json.dumps(OBSERVATION).encode() + b"  ")
    assert parsed.reason == ""
    assert parsed.resource == OBSERVATION


def test_every_synthea_resource_parses_as_ndjson() -> None:
    grouped = resources_by_type(patient_bundle_paths(2), conditional_references=True)
    data = b"".join(ndjson_bytes(resources) for resources in grouped.values())
    parsed = [line_parse(line.data) for line in lines_split(_chunked(data, 65536), max_line_bytes=1 << 20)]
    assert [p.reason for p in parsed if p.reason] == []
    assert len(parsed) == sum(len(resources) for resources in grouped.values())


def test_version_marker_prefers_version_id_then_last_updated_then_content() -> None:
    with_version = {**PATIENT, "meta": {"versionId": "3", "lastUpdated": "2024-01-01T00:00:00Z"}}
    with_time = {**PATIENT, "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}}
    assert version_marker(with_version) == "versionId:3"
    assert version_marker(with_time) == "lastUpdated:2024-01-01T00:00:00Z"
    plain = version_marker(PATIENT)
    assert plain.startswith("content:")
    # the same content in another key order is the same version; other content is another
    assert version_marker(dict(reversed(list(PATIENT.items())))) == plain
    assert version_marker({**PATIENT, "gender": "male"}) != plain


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (PATIENT, "Patient/p1"),
        (OBSERVATION, "Patient/p1"),
        ({"resourceType": "Claim", "id": "c", "patient": {"reference": "Patient/p2"}}, "Patient/p2"),
        ({"resourceType": "Observation", "id": "o", "subject": {"reference": "Group/g1"}}, None),
        (
            {"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient?identifier=x|1"}},
            None,
        ),
        ({"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/p1/_history/2"}}, None),
        ({"resourceType": "Practitioner", "id": "dr"}, None),
        ({"resourceType": "Provenance", "id": "pv", "target": [{"reference": "Patient/p1"}]}, None),
        ({"resourceType": "Patient"}, None),
    ],
)
def test_patient_reference_of(resource: dict[str, Any], expected: str | None) -> None:
    assert patient_reference_of(resource) == expected
