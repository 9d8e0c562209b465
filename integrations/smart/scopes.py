"""SMART system scopes (App Launch 1.0 and 2.x), as plain Python.

Backend services only get ``system/`` scopes; ``patient/`` and ``user/`` scopes need a launch context that
a client_credentials grant does not have, so they are refused rather than ignored.

- v1: ``system/Observation.read``, ``system/*.write``, ``system/*.*``; ``read`` = read + search,
  ``write`` = create + update + delete, ``*`` = all five.
- v2: ``system/Observation.rs``, ``system/*.cruds``: letters from ``cruds``, each at most once, in that
  order. Granular scopes with a query (``system/Observation.rs?category=...``) are not supported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

Action = Literal["create", "read", "update", "delete", "search"]
ALL_ACTIONS: frozenset[Action] = frozenset(get_args(Action))

_V2_LETTERS: dict[str, Action] = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_V1_PERMISSIONS: dict[str, frozenset[Action]] = {
    "read": frozenset({"read", "search"}),
    "write": frozenset({"create", "update", "delete"}),
    "*": ALL_ACTIONS,
}
_SCOPE = re.compile(r"^system/(?P<resource>\*|[A-Z][A-Za-z]{0,63})\.(?P<permission>[^.?\s]+)$")
_V2_PERMISSION = re.compile(r"^c?r?u?d?s?$")

MAX_SCOPE_STRING_LENGTH = 4096
MAX_SCOPES = 100

# Advertised in .well-known/smart-configuration. Any FHIR resource type may take the place of ``*``.
SCOPES_SUPPORTED: tuple[str, ...] = (
    "system/*.cruds",
    "system/*.c",
    "system/*.rs",
    "system/*.read",
    "system/*.write",
    "system/*.*",
)


class ScopeError(ValueError):
    """A scope string that is malformed or not a system scope."""


@dataclass(frozen=True)
class SmartScope:
    """One scope: a resource type (or ``*``) and the actions it permits. ``text`` is the scope as written."""

    text: str
    resource_type: str
    actions: frozenset[Action]

    def allows(self, resource_type: str, action: Action) -> bool:
        return self.resource_type in ("*", resource_type) and action in self.actions

    def covers(self, other: SmartScope) -> bool:
        """Whether everything ``other`` permits is permitted by this scope."""
        return self.resource_type in ("*", other.resource_type) and other.actions <= self.actions


def parse_scope(text: str) -> SmartScope:
    if text.startswith(("patient/", "user/")):
        raise ScopeError(f"{text[:64]!r}: only system/ scopes are available to backend services")
    match = _SCOPE.match(text)
    if match is None:
        raise ScopeError(f"{text[:64]!r} is not a SMART system scope (system/<ResourceType|*>.<permission>)")
    permission = match["permission"]
    if permission in _V1_PERMISSIONS:
        actions = _V1_PERMISSIONS[permission]
    elif _V2_PERMISSION.match(permission):
        actions = frozenset(_V2_LETTERS[letter] for letter in permission)
    else:
        raise ScopeError(
            f"{text[:64]!r}: the permission must be read, write or * (v1), or letters of cruds in order (v2)"
        )
    return SmartScope(text=text, resource_type=match["resource"], actions=actions)


@dataclass(frozen=True)
class ScopeSet:
    """Parsed scopes, in the order given, without duplicates."""

    scopes: tuple[SmartScope, ...] = ()

    @classmethod
    def of(cls, scopes: Iterable[SmartScope]) -> ScopeSet:
        unique: dict[str, SmartScope] = {}
        for scope in scopes:
            unique.setdefault(scope.text, scope)
        return cls(tuple(unique.values()))

    def allows(self, resource_type: str, action: Action) -> bool:
        return any(scope.allows(resource_type, action) for scope in self.scopes)

    def covers(self, scope: SmartScope) -> bool:
        return any(mine.covers(scope) for mine in self.scopes)

    def __bool__(self) -> bool:
        return bool(self.scopes)

    def __len__(self) -> int:
        return len(self.scopes)

    def __str__(self) -> str:
        return " ".join(scope.text for scope in self.scopes)

    def texts(self) -> list[str]:
        return [scope.text for scope in self.scopes]


def parse_scopes(text: str) -> ScopeSet:
    """Parse a space-separated scope string. Raises ``ScopeError`` on the first bad scope."""
    if len(text) > MAX_SCOPE_STRING_LENGTH:
        raise ScopeError(f"the scope string is longer than {MAX_SCOPE_STRING_LENGTH} characters")
    tokens = text.split()
    if len(tokens) > MAX_SCOPES:
        raise ScopeError(f"more than {MAX_SCOPES} scopes")
    return ScopeSet.of(parse_scope(token) for token in tokens)


def scopes_grant(*, requested: ScopeSet, allowed: ScopeSet) -> ScopeSet:
    """The requested scopes the client may have: each one that some allowed scope covers entirely.

    A requested scope only partly covered (``system/*.read`` against an allowance of
    ``system/Observation.read``) is dropped, not rewritten: the client gets what it asked for or nothing.
    """
    return ScopeSet.of(scope for scope in requested.scopes if allowed.covers(scope))
