"""Reads about EHR clients for other parts of the gateway: how the audit console names and finds them."""

from __future__ import annotations

from collections.abc import Collection

from django.db.models import Q

from clinical_ai.audit.actors import ActorDirectory
from integrations.smart.models import EhrClient


def ehr_client_names(client_ids: Collection[str]) -> dict[str, str]:
    """Each client id's registered name: one query."""
    rows = EhrClient.objects.filter(client_id__in=sorted(client_ids)).values_list("client_id", "name")
    return {client_id: f"{name} (EHR system)" for client_id, name in rows}


def ehr_clients_find(text: str) -> list[str]:
    """The client ids a typed client id or registered name (any case) means: one query."""
    rows = EhrClient.objects.filter(Q(client_id=text) | Q(name__iexact=text)).values_list(
        "client_id", flat=True
    )
    return sorted(rows)


def ehr_client_actor_directory() -> ActorDirectory:
    return ActorDirectory(names=ehr_client_names, find=ehr_clients_find)
