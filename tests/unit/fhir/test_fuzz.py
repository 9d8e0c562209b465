"""Mutated resources, bundles and bodies: the validators answer with issues or a FhirError, never an
exception, and never an internal "exception" issue (which would mean the library broke on the input)."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from clinical_ai.fhir.outcome import FhirError, Issue
from clinical_ai.fhir.validation import (
    BundleCheck,
    Limits,
    check_intake_bundle,
    parse_json_body,
    validate_resource,
)

from .builders import bundle, containers, entry, observation, patient

PATIENT_URL = "urn:uuid:4f1c5a0e-7d3b-4a43-9d3e-3c1c7e0a9b11"

SEEDS: list[dict[str, Any]] = [
    patient(
        name=[{"use": "official", "family": "Doe", "given": ["Jane", "Q"], "_given": [None, {"id": "g2"}]}],
        telecom=[{"system": "phone", "value": "555-0100", "use": "home"}],
        address=[{"line": ["1 Main St"], "city": "Springfield", "postalCode": "12345"}],
        extension=[{"url": "http://example.org/birthsex", "valueCode": "F"}],
        managingOrganization={"reference": "Organization/1"},
    ),
    observation(
        contained=[patient(id="p1")],
        subject={"reference": "#p1"},
        component=[
            {"code": {"text": "systolic"}, "valueQuantity": {"value": 120, "comparator": "<"}},
            {"code": {"text": "diastolic"}, "valueQuantity": {"value": 80.5}},
        ],
        effectiveDateTime="2020-01-01T10:00:00+01:00",
        _status={"extension": [{"url": "http://example.org/x", "valueBoolean": True}]},
    ),
    {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"text": "Hypertension"},
        "subject": {"reference": "Patient/1"},
        "onsetAge": {"value": 45, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
    },
    {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "statusHistory": [{"status": "arrived", "period": {"start": "2020-01-01"}}],
        "subject": {"reference": "Patient/1"},
    },
    {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "aspirin"},
        "subject": {"reference": "Patient/1"},
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
    },
    {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": PATIENT_URL, "resource": patient()}, {"resource": observation()}],
    },
]

TRANSACTION = bundle(
    [
        entry(patient(), full_url=PATIENT_URL),
        entry(
            observation(subject={"reference": PATIENT_URL}),
            full_url="urn:uuid:9a3b4c5d-1e2f-4a5b-8c7d-0e1f2a3b4c5d",
        ),
        entry(patient(id="123"), method="PUT", url="Patient/123"),
    ]
)

KEYS = [
    "resourceType", "contained", "extension", "modifierExtension", "reference", "status", "_status", "class",
    "class_fhir", "resource_type", "status__ext", "fhir_comments", "__class__", "model_config", "__dict__",
    "entry", "resource", "request", "method", "url", "fullUrl", "coding", "system", "code", "value", "id", "",
    "valueQuantity", "valueString", "component", "gender", "parameter", "outcome", "div", "text",
]  # fmt: skip
RESOURCE_TYPES: list[Any] = [
    "Foo", "MedicinalProduct", "Evidence", "Resource", "DomainResource", "Patient", "Bundle", "Parameters",
    "HumanName", "Citation", 5, None, True, [], {}, "", "patient",
]  # fmt: skip


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(22)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**70)])
    if choice == 3:
        return rng.choice([1.5, -0.0, 1e308, 1e-308, 3.0])
    if choice == 4:
        return rng.choice(["", " ", "x", "banana", "\u0000", "\ud7ff", "2020-13-01", "yes", "1", "final"])
    if choice == 5:
        return rng.choice(
            ["#", "#p1", "#nope", PATIENT_URL, "urn:uuid:bad", "urn:oid:1.2", "Patient/1", "http://x"]
        )
    if choice == 6:
        return '{"text": "json in a string"}'
    if choice == 7:
        return []
    if choice == 8:
        return {}
    if choice == 9:
        return {"resourceType": copy.deepcopy(rng.choice(RESOURCE_TYPES)), "id": "r"}
    if choice == 10:
        return {"reference": random_value(rng, depth + 1) if depth < 3 else "#x"}
    if choice == 11:
        nested: Any = rng.choice([{}, [], "leaf", 1])
        for _ in range(rng.randrange(1, 60)):
            nested = rng.choice([[nested], {"extension": [nested]}, {"a": nested}])
        return nested
    if choice == 12:
        return copy.deepcopy(rng.choice(SEEDS))
    if choice == 13 and depth < 3:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(1, 4))]
    if choice == 14 and depth < 3:
        return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randrange(1, 4))}
    if choice == 15:
        return {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "x"}]
        }
    if choice == 16:
        return {
            "value": rng.choice(["72", 72, True, None, [], "1e3"]),
            "comparator": rng.choice(["<", "~", 5]),
        }
    return rng.choice(["final", "Patient", 1, None, [None], [1, "a"], {"url": "http://x"}])


def mutate(document: Any, rng: random.Random, rounds: int) -> Any:
    document = copy.deepcopy(document)
    for _ in range(rounds):
        node = rng.choice(containers(document))
        if isinstance(node, list):
            if not node:
                node.append(random_value(rng))
                continue
            index = rng.randrange(len(node))
            operation = rng.randrange(4)
            if operation == 0:
                del node[index]
            elif operation == 1:
                node[index] = random_value(rng)
            elif operation == 2:
                node.append(copy.deepcopy(node[index]))
            else:
                node.insert(index, None)
            continue
        operation = rng.randrange(6)
        keys = list(node)
        if operation == 0 or not keys:
            node[rng.choice(KEYS)] = random_value(rng)
        elif operation == 1:
            del node[rng.choice(keys)]
        elif operation == 2:
            node[rng.choice(keys)] = random_value(rng)
        elif operation == 3:
            key = rng.choice(keys)
            node[rng.choice(KEYS)] = node.pop(key)
        elif operation == 4:
            key = rng.choice(keys)
            node[key] = [node[key]] if not isinstance(node[key], list) else (node[key][:1] or [None])[0]
        else:
            node["resourceType"] = copy.deepcopy(rng.choice(RESOURCE_TYPES))
    return document


def assert_issues(issues: Any) -> None:
    assert isinstance(issues, list)
    for issue in issues:
        assert isinstance(issue, Issue)
        assert issue.code != "exception", issue
        assert isinstance(issue.diagnostics, str)
        assert all(isinstance(expression, str) for expression in issue.expression)
        json.dumps(issue.as_fhir())


@pytest.mark.parametrize("seed", range(6))
def test_validate_resource_never_raises_on_mutated_resources(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        document = mutate(rng.choice(SEEDS), rng, rng.randrange(1, 6))
        assert_issues(validate_resource(document))
        assert_issues(validate_resource(document, expression_prefix="Bundle.entry[0].resource"))


@pytest.mark.parametrize("seed", range(4))
def test_check_intake_bundle_never_raises_on_mutated_bundles(seed: int) -> None:
    rng = random.Random(1000 + seed)
    limits = Limits(max_body_bytes=10_000_000, max_bundle_entries=20, max_nesting_depth=64)
    for _ in range(200):
        document = mutate(TRANSACTION, rng, rng.randrange(1, 6))
        try:
            check = check_intake_bundle(document, limits=limits)
        except FhirError as error:
            assert error.status in {413, 422}
            assert_issues(error.issues)
            continue
        assert isinstance(check, BundleCheck)
        assert_issues(check.issues)
        assert check.ok == (not check.issues)


@pytest.mark.parametrize("seed", range(4))
def test_parse_json_body_raises_only_fhir_errors_on_mutated_bytes(seed: int) -> None:
    rng = random.Random(2000 + seed)
    limits = Limits(max_body_bytes=100_000, max_bundle_entries=20, max_nesting_depth=16)
    original = json.dumps(TRANSACTION).encode()
    alphabet = b'{}[]":,\\ \x00\xff\xc3\xa9\xef\xbb\xbfu0123456789eE.-+tfnal'
    for _ in range(400):
        body = bytearray(original)
        for _ in range(rng.randrange(1, 8)):
            position = rng.randrange(len(body))
            operation = rng.randrange(3)
            if operation == 0:
                body[position] = rng.choice(alphabet)
            elif operation == 1:
                del body[position : position + rng.randrange(1, 50)]
            else:
                body[position:position] = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 5)))
        try:
            parsed = parse_json_body(bytes(body), "application/fhir+json", limits=limits)
        except FhirError as error:
            assert error.status in {400, 413}
            continue
        assert isinstance(parsed, dict)
        assert_issues(validate_resource(parsed))
