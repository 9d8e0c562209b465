"""Who is calling with a SMART bearer token. Plain Python, importable by any view that needs it."""

from __future__ import annotations

from dataclasses import dataclass

from integrations.smart.scopes import Action, ScopeSet


@dataclass(frozen=True)
class SmartPrincipal:
    """An authenticated EHR client: what ``smart_protected`` views find in ``request.smart_principal``."""

    client_id: str
    client_pk: int
    organization_id: int
    organization_slug: str
    scopes: ScopeSet

    def can(self, resource_type: str, action: Action) -> bool:
        """Whether the token's scopes permit ``action`` (create, read, update, delete, search) on
        ``resource_type`` (a FHIR resource type such as ``Observation``)."""
        return self.scopes.allows(resource_type, action)
