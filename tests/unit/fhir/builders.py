"""Small FHIR R4 resources for the validation tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from clinical_ai.fhir.outcome import Issue


def patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01", **fields}


def observation(**fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
        **fields,
    }


def entry(
    resource: dict[str, Any] | None,
    *,
    full_url: str | None = None,
    method: str = "POST",
    url: str | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "request": {"method": method, "url": url or (resource or {}).get("resourceType", "")}
    }
    if full_url is not None:
        result["fullUrl"] = full_url
    if resource is not None:
        result["resource"] = resource
    return result


def bundle(entries: list[Any], bundle_type: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": bundle_type, "entry": entries}


def expressions(issues: Iterable[Issue]) -> list[str]:
    return [expression for issue in issues for expression in issue.expression]


def codes_at(issues: Iterable[Issue]) -> set[tuple[str, str]]:
    """(code, first expression) of each issue."""
    return {(issue.code, issue.expression[0] if issue.expression else "") for issue in issues}


def containers(value: Any) -> list[Any]:
    """Every dict and list inside ``value`` (itself included): the places a mutation can strike."""
    found, stack = [], [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict | list):
            found.append(node)
            stack.extend(node.values() if isinstance(node, dict) else node)
    return found
