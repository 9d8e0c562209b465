"""Scope parsing and narrowing: pure, no database."""

from __future__ import annotations

import pytest

from integrations.smart.principal import SmartPrincipal
from integrations.smart.scopes import ALL_ACTIONS, ScopeError, parse_scope, parse_scopes, scopes_grant


@pytest.mark.parametrize(
    ("text", "resource", "actions"),
    [
        ("system/Patient.read", "Patient", {"read", "search"}),
        ("system/*.write", "*", {"create", "update", "delete"}),
        ("system/*.*", "*", set(ALL_ACTIONS)),
        ("system/Observation.cruds", "Observation", set(ALL_ACTIONS)),
        ("system/*.c", "*", {"create"}),
        ("system/*.rs", "*", {"read", "search"}),
        ("system/Encounter.cud", "Encounter", {"create", "update", "delete"}),
        ("system/Condition.s", "Condition", {"search"}),
    ],
)
def test_v1_and_v2_scopes_parse(text: str, resource: str, actions: set[str]) -> None:
    scope = parse_scope(text)
    assert scope.resource_type == resource
    assert scope.actions == actions
    assert scope.text == text


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation.read",
        "user/*.cruds",
        "launch/patient",
        "openid",
        "system/Observation",
        "system/observation.read",
        "system/Observation.sr",  # v2 letters must be in cruds order
        "system/Observation.rr",
        "system/Observation.x",
        "system/Observation.readwrite",
        "system/Observation.rs?category=laboratory",
        "system/Obs-ervation.read",
        "system/.read",
        "system/*.",
    ],
)
def test_malformed_and_non_system_scopes_are_refused(text: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(text)
    with pytest.raises(ScopeError):
        parse_scopes(f"system/*.read {text}")


def test_scope_set_semantics() -> None:
    v1 = parse_scopes("system/Patient.read system/*.write")
    assert v1.allows("Patient", "read") and v1.allows("Patient", "search")
    assert not v1.allows("Observation", "read")
    for action in ("create", "update", "delete"):
        assert v1.allows("Observation", action)

    v2 = parse_scopes("system/Observation.cruds system/*.c system/Patient.rs")
    assert v2.allows("Observation", "delete")
    assert v2.allows("Encounter", "create") and not v2.allows("Encounter", "read")
    assert v2.allows("Patient", "search") and not v2.allows("Patient", "update")

    assert not parse_scopes("").allows("Patient", "read")


def test_parse_dedupes_and_keeps_order() -> None:
    scopes = parse_scopes("  system/*.read   system/Patient.c system/*.read ")
    assert scopes.texts() == ["system/*.read", "system/Patient.c"]
    assert str(scopes) == "system/*.read system/Patient.c"


def test_too_many_scopes_are_refused() -> None:
    with pytest.raises(ScopeError):
        parse_scopes(" ".join(f"system/R{'a' * (i % 50)}.read" for i in range(101)))


@pytest.mark.parametrize(
    ("requested", "allowed", "granted"),
    [
        # Requested more than allowed: only the covered part.
        ("system/*.read system/*.write", "system/*.read", "system/*.read"),
        # A specific scope is covered by a wildcard one, v1 and v2 alike.
        (
            "system/Observation.c system/Patient.rs",
            "system/*.write system/*.read",
            "system/Observation.c system/Patient.rs",
        ),
        ("system/Observation.read", "system/*.rs", "system/Observation.read"),
        ("system/*.*", "system/*.cruds", "system/*.*"),
        # Only partly covered: dropped, not rewritten.
        ("system/*.read", "system/Observation.read", ""),
        ("system/Observation.cruds", "system/Observation.rs", ""),
        ("system/*.write", "system/*.c", ""),
    ],
)
def test_grant_narrows_to_fully_covered_scopes(requested: str, allowed: str, granted: str) -> None:
    result = scopes_grant(requested=parse_scopes(requested), allowed=parse_scopes(allowed))
    assert str(result) == granted


def test_principal_can_uses_scopes() -> None:
    principal = SmartPrincipal(
        client_id="ehr-x",
        client_pk=1,
        organization_id=1,
        organization_slug="site",
        scopes=parse_scopes("system/*.c system/Patient.read"),
    )
    assert principal.can("Observation", "create")
    assert principal.can("Patient", "search")
    assert not principal.can("Observation", "read")
