"""References by business identifier: the keyed identifier digest, conditional references read and resolved."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from clinical_ai.fhir.references import (
    ConditionalReferences,
    conditional_reference_parse,
    conditional_references_resolve,
    identifier_key,
)

KEY = b"k" * 32
NPI = "http://hl7.org/fhir/sid/us-npi"


def _key(**overrides: Any) -> str:
    fields: dict[str, Any] = {
        "key": KEY,
        "organization": "north",
        "resource_type": "Practitioner",
        "system": NPI,
        "value": "9999963699",
    }
    fields.update(overrides)
    return identifier_key(**fields)


def test_identifier_key_is_a_stable_keyed_digest() -> None:
    digest = _key()
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert _key() == digest
    assert "9999963699" not in digest
    assert _key(key=b"j" * 32) != digest  # keyed: another installation's digests do not match


@pytest.mark.parametrize(
    "overrides",
    [
        {"organization": "south"},
        {"resource_type": "Organization"},
        {"system": NPI + "x"},
        {"value": "9999963698"},
        # the same characters split differently between the fields must not collide
        {"system": NPI + "|9", "value": "999963699"},
        {"organization": "north|Practitioner", "resource_type": ""},
        {"system": "", "value": NPI + "|9999963699"},
    ],
)
def test_identifier_key_differs_when_any_field_differs(overrides: dict[str, Any]) -> None:
    assert _key(**overrides) != _key()


def test_identifier_key_refuses_an_empty_key() -> None:
    with pytest.raises(ValueError):
        _key(key=b"")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (f"Practitioner?identifier={NPI}|9999963699", ("Practitioner", NPI, "9999963699")),
        (
            "Organization?identifier=https://github.com/synthetichealth/synthea|ef58ea08-d883",
            ("Organization", "https://github.com/synthetichealth/synthea", "ef58ea08-d883"),
        ),
        # percent-encoded, as a URL-encoding sender writes it
        (
            "Location?identifier=http%3A%2F%2Fexample.org%2Floc%7CWARD%203",
            ("Location", "http://example.org/loc", "WARD 3"),
        ),
        ("Practitioner?identifier=|local-7", ("Practitioner", "", "local-7")),  # no system
        (
            r"Practitioner?identifier=urn:sys|a\|b\,c\\d",
            ("Practitioner", "urn:sys", "a|b,c\\d"),
        ),  # FHIR escapes
        ("Practitioner?identifier=urn:sys|caf%C3%A9", ("Practitioner", "urn:sys", "café")),
        ("Practitioner?identifier=urn:sys|a+b", ("Practitioner", "urn:sys", "a+b")),  # '+' is not a space
    ],
)
def test_conditional_reference_parse_reads_identifier_references(
    reference: str, expected: tuple[str, str, str]
) -> None:
    assert conditional_reference_parse(reference) == expected


@pytest.mark.parametrize(
    "reference",
    [
        "Practitioner/123",
        "urn:uuid:0b8c8e5e-1a1f-4c3e-9a57-6f2c9a1b2c3d",
        "#contained-1",
        f"https://ehr.example/fhir/Practitioner?identifier={NPI}|1",  # absolute: not ours to read
        f"Practitioner?identifier={NPI}|1&active=true",  # a further parameter
        "Practitioner?name=Smith",  # another parameter
        f"Practitioner?identifier:of-type={NPI}|NPI|1",  # a modifier
        f"Practitioner?identifier={NPI}|1,{NPI}|2",  # a list of values
        "Practitioner?identifier=9999963699",  # no system bar: any system, ambiguous
        f"Practitioner?identifier={NPI}|",  # empty value
        f"Practitioner?identifier={NPI}|a|b",  # two bars
        "Practitioner?identifier=urn:sys|a\\",  # a dangling escape
        "Practitioner?identifier=urn:sys|%FF%FE",  # not UTF-8
        f"Nonsense?identifier={NPI}|1",  # not a resource type
        f"practitioner?identifier={NPI}|1",
        "?identifier=urn:sys|1",
        "",
    ],
)
def test_conditional_reference_parse_refuses_anything_else(reference: str) -> None:
    assert conditional_reference_parse(reference) is None


def _encounter() -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": "e1",
        "subject": {"reference": "Patient/p1"},
        "participant": [
            {"individual": {"reference": f"Practitioner?identifier={NPI}|111", "display": "Dr. Ann Lee"}},
            {"individual": {"reference": f"Practitioner?identifier={NPI}|222", "display": "Dr. Bo Kim"}},
        ],
        "serviceProvider": {"reference": "Organization?identifier=urn:org|O-1", "id": "r1"},
        "location": [{"location": {"reference": "Location?name=Ward"}}],
        "contained": [
            {
                "resourceType": "Provenance",
                "id": "c1",
                "agent": [{"who": {"reference": f"Practitioner?identifier={NPI}|111"}}],
            }
        ],
    }


def test_resolve_rewrites_matches_and_keeps_the_rest_as_identifier_references() -> None:
    held = {("Practitioner", NPI, "111"): "prac-1", ("Organization", "urn:org", "O-1"): "org-1"}
    asked: list[tuple[str, str, str]] = []

    def lookup(resource_type: str, system: str, value: str) -> str | None:
        asked.append((resource_type, system, value))
        return held.get((resource_type, system, value))

    encounter = _encounter()
    counts = conditional_references_resolve(encounter, lookup)

    assert counts == ConditionalReferences(resolved=3, kept=1, unreadable=1)
    assert encounter["participant"][0]["individual"] == {
        "reference": "Practitioner/prac-1",
        "display": "Dr. Ann Lee",
    }
    assert encounter["participant"][1]["individual"] == {
        "type": "Practitioner",
        "identifier": {"system": NPI, "value": "222"},
        "display": "Dr. Bo Kim",
    }
    assert encounter["serviceProvider"] == {"reference": "Organization/org-1", "id": "r1"}
    assert encounter["contained"][0]["agent"][0]["who"] == {"reference": "Practitioner/prac-1"}
    assert encounter["location"][0]["location"] == {"reference": "Location?name=Ward"}  # left as it was
    assert encounter["subject"] == {"reference": "Patient/p1"}
    assert sorted(set(asked)) == sorted(
        {("Practitioner", NPI, "111"), ("Practitioner", NPI, "222"), ("Organization", "urn:org", "O-1")}
    )


def test_resolve_without_a_system_writes_an_identifier_without_one() -> None:
    resource = {"resourceType": "Observation", "performer": [{"reference": "Practitioner?identifier=|x9"}]}
    counts = conditional_references_resolve(resource, lambda *_: None)
    assert counts.kept == 1
    assert resource["performer"] == [{"type": "Practitioner", "identifier": {"value": "x9"}}]


def test_resolve_leaves_a_resource_without_conditional_references_unchanged() -> None:
    resource = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "urn:uuid:1"}, {"display": "no reference"}],
        "note": [{"text": "Practitioner?identifier=urn:sys|1"}],  # a string, not a Reference
    }
    before = copy.deepcopy(resource)
    assert conditional_references_resolve(resource, lambda *_: "never") == ConditionalReferences()
    assert resource == before


@pytest.mark.parametrize(
    "odd",
    [
        {"resourceType": "Observation", "performer": {"reference": 7}},
        {"resourceType": "Observation", "performer": [None, 1, "x", [], {"reference": None}]},
        {"resourceType": "Observation", "performer": [{"reference": "Practitioner?identifier=%"}]},
        {"resourceType": "Observation", "performer": [{"reference": "Practitioner?identifier=urn:s|%E2%82"}]},
    ],
)
def test_resolve_never_raises_on_odd_content(odd: dict[str, Any]) -> None:
    before = json.dumps(odd)
    counts = conditional_references_resolve(odd, lambda *_: "x")
    assert counts.resolved == 0 and counts.kept == 0
    assert json.dumps(odd) == before


def test_resolve_walks_very_deep_documents() -> None:
    node: dict[str, Any] = {"reference": "Practitioner?identifier=urn:s|deep"}
    for _ in range(5000):  # deeper than Python's recursion limit
        node = {"extension": [{"valueReference": node}]}
    resource = {"resourceType": "Basic", "extension": [node]}
    assert conditional_references_resolve(resource, lambda *_: "d1").resolved == 1


def test_counts_add_up() -> None:
    assert ConditionalReferences(1, 2, 3) + ConditionalReferences(4, 5, 6) == ConditionalReferences(5, 7, 9)
