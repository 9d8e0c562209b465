"""The switched-off models banner of the review pages (``review/_models_off.html``): each model an admin has
switched off, since when, why, and what its silence does and does not mean. A tag rather than view context so
that a page needs one include line, and every page asks the one selector (two queries, one when none is off).
"""

from __future__ import annotations

from dataclasses import dataclass

from django import template
from django.utils import timezone

from clinical_ai.inference.switched_off import SwitchedOffModel, models_switched_off

register = template.Library()


@dataclass(frozen=True)
class ModelOffNotice:
    model: SwitchedOffModel
    since: str  # "14:02" today, else "3 Dec 2026, 14:02", in the current time zone


def _since(model: SwitchedOffModel) -> str:
    since = timezone.localtime(model.since)
    if since.date() == timezone.localdate():
        return since.strftime("%H:%M")
    return f"{since.day} {since.strftime('%b %Y, %H:%M')}"


@register.simple_tag
def models_off_notices(model_id: str = "") -> list[ModelOffNotice]:
    """Every switched-off model, or only ``model_id`` (a suggestion page) when given."""
    models = models_switched_off(model_ids=[model_id] if model_id else None)
    return [ModelOffNotice(model, _since(model)) for model in models]
