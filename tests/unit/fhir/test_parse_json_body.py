from __future__ import annotations

import json

import pytest

from clinical_ai.fhir.outcome import FhirError
from clinical_ai.fhir.validation import Limits, parse_json_body

FHIR_JSON = "application/fhir+json"
PATIENT = b'{"resourceType": "Patient", "id": "p1"}'


def refused(body: bytes, content_type: str | None, limits: Limits) -> FhirError:
    with pytest.raises(FhirError) as caught:
        parse_json_body(body, content_type, limits=limits)
    assert len(caught.value.issues) == 1
    return caught.value


@pytest.mark.parametrize(
    "content_type",
    [
        "application/fhir+json",
        "application/json",
        "application/json+fhir",
        "application/fhir+json; charset=utf-8",
        "application/fhir+json;charset=UTF-8",
        'application/fhir+json; charset="utf-8"',
        "Application/FHIR+JSON; fhirVersion=4.0",
        "application/fhir+json; fhirVersion=4.0.1; charset=utf-8",
    ],
)
def test_accepted_content_types(content_type: str, limits: Limits) -> None:
    assert parse_json_body(PATIENT, content_type, limits=limits) == {"resourceType": "Patient", "id": "p1"}


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/xml",
        "application/fhir+xml",
        "application/x-www-form-urlencoded",
        "application/fhir+json; charset=iso-8859-1",
        "application/fhir+json; fhirVersion=5.0",
    ],
)
def test_other_content_types_are_415(content_type: str | None, limits: Limits) -> None:
    error = refused(PATIENT, content_type, limits)
    assert error.status == 415
    assert error.issues[0].code == "not-supported"


def test_content_type_is_checked_before_size(limits: Limits) -> None:
    assert refused(b"x" * (limits.max_body_bytes + 1), "text/html", limits).status == 415


def test_body_at_the_limit_is_read_and_one_byte_over_is_413() -> None:
    limits = Limits(max_body_bytes=len(PATIENT), max_bundle_entries=10, max_nesting_depth=10)
    assert parse_json_body(PATIENT, FHIR_JSON, limits=limits)["id"] == "p1"
    error = refused(PATIENT + b" ", FHIR_JSON, limits)
    assert error.status == 413
    assert error.issues[0].code == "too-costly"


def test_utf8_bom_is_stripped(limits: Limits) -> None:
    assert parse_json_body(b"\xef\xbb\xbf" + PATIENT, FHIR_JSON, limits=limits)["resourceType"] == "Patient"


def test_non_ascii_text_is_kept(limits: Limits) -> None:
    body = json.dumps(
        {"resourceType": "Patient", "name": [{"family": "Müller-Żółć 山田"}]}, ensure_ascii=False
    )
    parsed = parse_json_body(body.encode("utf-8"), FHIR_JSON, limits=limits)
    assert parsed["name"][0]["family"] == "Müller-Żółć 山田"


@pytest.mark.parametrize(
    "body",
    [
        b'{"resourceType": "Patient", "name": [{"family": "M\xfcller"}]}',  # Latin-1, not UTF-8
        b'{"resourceType": "Patient"}\xff',
        b"\xef\xbb",  # half a BOM
        "{}".encode("utf-16"),
    ],
)
def test_invalid_utf8_is_400(body: bytes, limits: Limits) -> None:
    error = refused(body, FHIR_JSON, limits)
    assert error.status == 400
    assert error.issues[0].code == "structure"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{",
        b'{"resourceType": "Patient",}',
        b"{'resourceType': 'Patient'}",
        b'{"resourceType": "Patient"} {"resourceType": "Patient"}',
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": ' + b"9" * 5000 + b"}",  # longer than Python parses as an int
    ],
)
def test_malformed_json_is_400(body: bytes, limits: Limits) -> None:
    error = refused(body, FHIR_JSON, limits)
    assert error.status == 400
    assert error.issues[0].code == "structure"


def test_diagnostics_locate_the_syntax_error(limits: Limits) -> None:
    error = refused(b'{\n  "resourceType": "Patient",\n  "id": }', FHIR_JSON, limits)
    assert "line 3" in error.issues[0].diagnostics


@pytest.mark.parametrize(
    "body", [b"[]", b'[{"resourceType": "Patient"}]', b'"Patient"', b"42", b"null", b"true"]
)
def test_top_level_must_be_an_object(body: bytes, limits: Limits) -> None:
    error = refused(body, FHIR_JSON, limits)
    assert error.status == 400
    assert "JSON object" in error.issues[0].diagnostics


@pytest.mark.parametrize(
    "body",
    [
        b'{"resourceType": "Patient", "resourceType": "Observation"}',
        b'{"resourceType": "Patient", "name": [{"family": "A", "family": "B"}]}',
        b'{"resourceType": "Patient", "meta": {"source": "x", "source": "x"}}',
    ],
)
def test_duplicate_keys_are_400(body: bytes, limits: Limits) -> None:
    error = refused(body, FHIR_JSON, limits)
    assert error.status == 400
    assert "duplicate" in error.issues[0].diagnostics


def test_unpaired_surrogate_escape_is_400(limits: Limits) -> None:
    error = refused(b'{"resourceType": "Patient", "id": "\\ud800"}', FHIR_JSON, limits)
    assert error.status == 400
    # a proper pair is a character like any other
    body = b'{"resourceType": "Patient", "name": [{"text": "\\ud83d\\ude00"}]}'
    assert parse_json_body(body, FHIR_JSON, limits=limits)["name"][0]["text"] == "\U0001f600"


def depth_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def test_nesting_at_the_limit_is_read_and_one_deeper_is_413() -> None:
    limits = Limits(max_body_bytes=1_000_000, max_bundle_entries=10, max_nesting_depth=20)
    at_limit = b'{"a": ' * 19 + b"{}" + b"}" * 19
    assert depth_of(json.loads(at_limit)) == 20
    parse_json_body(at_limit, FHIR_JSON, limits=limits)
    too_deep = b'{"a": [' * 10 + b"{}" + b"]}" * 10  # 21 levels: objects and arrays both count
    assert depth_of(json.loads(too_deep)) == 21
    error = refused(too_deep, FHIR_JSON, limits)
    assert error.status == 413
    assert error.issues[0].code == "too-costly"


def test_nesting_beyond_the_parser_recursion_limit_is_400(limits: Limits) -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    error = refused(body, FHIR_JSON, limits)
    assert error.status == 400
    body = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    assert refused(body, FHIR_JSON, limits).status == 400


def test_deep_but_parseable_nesting_is_measured_without_recursion() -> None:
    limits = Limits(max_body_bytes=10_000_000, max_bundle_entries=10, max_nesting_depth=5000)
    body = b'{"a": ' * 900 + b"1" + b"}" * 900
    assert parse_json_body(body, FHIR_JSON, limits=limits)["a"]["a"]["a"]
    limits = Limits(max_body_bytes=10_000_000, max_bundle_entries=10, max_nesting_depth=899)
    assert refused(body, FHIR_JSON, limits).status == 413


def test_errors_never_quote_the_body(limits: Limits) -> None:
    secret = "SECRET-NAME-4711"
    bodies = [
        f'{{"resourceType": "Patient", "name": "{secret}",}}'.encode(),
        f'{{"resourceType": "Patient", "{secret}": 1, "{secret}": 2}}'.encode(),
        f'["{secret}"]'.encode(),
    ]
    for body in bodies:
        error = refused(body, FHIR_JSON, limits)
        assert secret not in str(error)
        assert all(secret not in issue.diagnostics for issue in error.issues)
