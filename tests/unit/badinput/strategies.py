"""Hypothesis strategies for FHIR-ish JSON: seeds of valid R4 resources and bundles, then mutations (values
replaced by other JSON, by values of the wrong JSON type, keys dropped or invented, resource types swapped)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from hypothesis import strategies as st

from tests.unit.fhir.builders import bundle, containers, entry, observation, patient

PATIENT_URL = "urn:uuid:4f1c5a0e-7d3b-4a43-9d3e-3c1c7e0a9b11"

SEED_RESOURCES: list[dict[str, Any]] = [
    patient(
        name=[{"use": "official", "family": "Doe", "given": ["Jane"]}],
        telecom=[{"system": "phone", "value": "555-0100"}],
        identifier=[{"system": "urn:mrn", "value": "12345"}],
    ),
    observation(subject={"reference": "Patient/1"}, effectiveDateTime="2026-01-01T10:00:00Z"),
    observation(
        contained=[patient(id="p1")],
        subject={"reference": "#p1"},
        component=[{"code": {"text": "systolic"}, "valueQuantity": {"value": 120}}],
    ),
    {
        "resourceType": "Condition",
        "code": {"text": "Hypertension"},
        "subject": {"reference": "Patient/1"},
    },
    {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/1"},
        "content": [{"attachment": {"contentType": "text/plain", "data": "SGVsbG8="}}],
    },
]


def seed_bundle(bundle_type: str) -> dict[str, Any]:
    return bundle(
        [
            entry(patient(), full_url=PATIENT_URL),
            entry(
                observation(subject={"reference": PATIENT_URL}),
                full_url=f"urn:uuid:{uuid.UUID(int=7)}",
            ),
            entry(patient(id="123"), method="PUT", url="Patient/123"),
        ],
        bundle_type,
    )


KEYS = [
    "resourceType", "id", "status", "code", "value", "reference", "contained", "extension", "entry",
    "resource", "request", "method", "url", "fullUrl", "type", "subject", "_status", "", "__class__",
    "valueQuantity", "gender", "birthDate", "data", "div", "meta", "identifier",
]  # fmt: skip
RESOURCE_TYPE_VALUES: list[Any] = [
    "Patient", "Observation", "Bundle", "Foo", "MedicinalProduct", "Resource", "patient", "", 5, None, [],
    {}, "OperationOutcome", "Parameters",
]  # fmt: skip

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["final", "#p1", PATIENT_URL, "urn:uuid:bad", "Patient/1", "2026-13-45", "\u0000"]),
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


def wrong_type_for(value: Any) -> st.SearchStrategy[Any]:
    """A JSON value of another type than ``value``'s."""
    options: list[st.SearchStrategy[Any]] = []
    if not isinstance(value, str):
        options.append(st.text(max_size=10))
    if not isinstance(value, bool):
        options.append(st.booleans())
    if isinstance(value, bool) or not isinstance(value, int | float):
        options.append(st.integers(min_value=-(2**40), max_value=2**40) | st.floats(allow_nan=False))
    if not isinstance(value, list):
        options.append(st.lists(json_leaves, max_size=2))
    if not isinstance(value, dict):
        options.append(st.dictionaries(st.sampled_from(KEYS), json_leaves, max_size=2))
    if value is not None:
        options.append(st.none())
    return st.one_of(options)


@st.composite
def mutated(draw: st.DrawFn, seed: Any, max_rounds: int = 4) -> Any:
    """``seed`` with 0..max_rounds mutations anywhere in it."""
    document = copy.deepcopy(seed)
    for _ in range(draw(st.integers(min_value=0, max_value=max_rounds))):
        nodes = containers(document)
        node = nodes[draw(st.integers(min_value=0, max_value=len(nodes) - 1))]
        keys: list[Any] = list(node) if isinstance(node, dict) else list(range(len(node)))
        operation = draw(st.sampled_from(["wrong-type", "replace", "drop", "add", "resource-type"]))
        if operation == "add" or not keys:
            value = draw(json_values)
            if isinstance(node, dict):
                node[draw(st.sampled_from(KEYS) | st.text(max_size=8))] = value
            else:
                node.append(value)
            continue
        key = keys[draw(st.integers(min_value=0, max_value=len(keys) - 1))]
        if operation == "drop":
            del node[key]
        elif operation == "wrong-type":
            node[key] = draw(wrong_type_for(node[key]))
        elif operation == "replace":
            node[key] = draw(json_values)
        elif isinstance(node, dict):
            node["resourceType"] = draw(st.sampled_from(RESOURCE_TYPE_VALUES))
    return document


resources = st.sampled_from(SEED_RESOURCES).flatmap(lambda seed: mutated(seed))
bundles = st.sampled_from(["transaction", "batch"]).flatmap(lambda kind: mutated(seed_bundle(kind)))


def nested(depth: int, kind: str) -> dict[str, Any]:
    """An Observation whose deepest object or array lies exactly ``depth`` levels down (the resource is
    level 1, as for FHIR_MAX_NESTING_DEPTH): nested extensions (two levels each) or plain objects."""
    node: Any = {"url": "http://example.org/x", "valueString": "leaf"}  # level 3, under extension[]
    levels = max(0, depth - 3)
    if kind == "extension":
        for _ in range(levels // 2):
            node = {"url": "http://example.org/x", "extension": [node]}
        levels %= 2
    for _ in range(levels):
        node = {"a": node}
    return observation(extension=[node])
