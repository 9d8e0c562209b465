"""The audit console's template filter: an event's actor in words, from the names looked up for the page."""

from __future__ import annotations

from collections.abc import Mapping

from django import template

from clinical_ai.audit.actors import ActorKey, actor_label
from clinical_ai.audit.models import AuditEvent

register = template.Library()


@register.filter
def actor_in_words(event: AuditEvent, names: Mapping[ActorKey, str] | None) -> str:
    return actor_label(event.actor_type, event.actor_id, names or {})
