"""docs/openapi.yaml describes exactly the machine-facing URL patterns of the URLconf: each one is a path of
the document (by ``x-django-url-names`` and by its shape), and each path of the document resolves to the
views it names. The HTML UI is out of scope."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from django.urls import URLPattern, URLResolver, get_resolver, resolve

OPENAPI = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"
# The HTML UI (sessions, CSRF, templates): documented in docs/, not in OpenAPI.
HTML_PREFIXES = ("admin/", "accounts/", "audit/", "review/", "models/")
# The EHR launch is a browser's visit too (the EHR opens it; it answers pages, not JSON): docs/operations.md.
HTML_NAMES = {"home", "smart:launch", "smart:launch-callback"}
# The EHR sources page and its Pull now button (admins, sessions): docs/bulk-data.md.
HTML_NAMES |= {"bulk:source_list", "bulk:source_pull", "bulk:source_cancel", "bulk:upload"}
# Not endpoints: the OperationOutcome 404 for any other path under /fhir and /cds-services.
NOT_ENDPOINTS = {"fhir:unknown", "cds_hooks:unknown"}
SAMPLE_VALUES = {
    "resourceType": "RiskAssessment",
    "id": "abc-1",
    "serviceId": "clinical-ai-patient-view",
    "sourceId": "3f2b8c1e-9a4d-4e7b-8c2a-1d5e6f7a8b9c",
}


def load_openapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    return document


def _shape(route: str) -> str:
    """``fhir/(?P<resource_type>[A-Za-z]{1,64})/?$`` and ``/fhir/{resourceType}`` both -> ``/fhir/{}``."""
    route = route.removeprefix("^").removesuffix("$").removesuffix("/?")
    route = re.sub(r"\(\?P<\w+>(?:[^()]|\([^()]*\))*\)", "{}", route)
    route = re.sub(r"<(?:\w+:)?\w+>", "{}", route)
    route = re.sub(r"\{\w+\}", "{}", route)
    return "/" + route.lstrip("/")


def machine_facing_patterns() -> dict[str, str]:
    """URL name -> shape, for every pattern outside the HTML UI."""
    found: dict[str, str] = {}

    def walk(patterns: list[Any], prefix: str, namespace: str) -> None:
        for pattern in patterns:
            route = str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if route.startswith(HTML_PREFIXES):
                    continue
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern.url_patterns, prefix + route, inner)
            elif isinstance(pattern, URLPattern):
                name = f"{namespace}{pattern.name}"
                if name in HTML_NAMES or name in NOT_ENDPOINTS:
                    continue
                found[name] = _shape(prefix + route.removeprefix("^"))

    walk(get_resolver().url_patterns, "", "")
    return found


def test_every_machine_facing_url_pattern_is_documented() -> None:
    documented = {
        name: _shape(path)
        for path, item in load_openapi()["paths"].items()
        for name in item["x-django-url-names"]
    }
    patterns = machine_facing_patterns()
    assert set(patterns) == set(documented), (
        f"undocumented: {sorted(set(patterns) - set(documented))}; "
        f"documented but absent: {sorted(set(documented) - set(patterns))}"
    )
    for name, shape in patterns.items():
        assert documented[name] == shape, (name, shape, documented[name])


def test_every_documented_path_resolves_to_the_views_it_names() -> None:
    for path, item in load_openapi()["paths"].items():
        concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLE_VALUES[m.group(1)], path)
        match = resolve(concrete)
        assert match.view_name in item["x-django-url-names"], (path, match.view_name)
