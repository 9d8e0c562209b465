"""The post-market monitoring record of one model version as one self-contained HTML file: the model card
and its validation figures, the stored monitoring charts (inline SVG), drift and subgroup findings, and
the clinicians' decisions and overrides. Rendered with a Django template, so every text is escaped; no
script, no external stylesheet, image or font."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count
from django.template.loader import render_to_string
from django.utils import timezone

from clinical_ai.inference.registry import catalogue, deployment_state
from clinical_ai.inference.selectors import model_card
from clinical_ai.monitoring.templatetags.monitoring import panel_context
from clinical_ai.review.fhir_decision import REJECTION_REASONS
from clinical_ai.review.models import Decision, Suggestion


class ReportError(Exception):
    """The model or version is not known: nothing to report on."""


@dataclass(frozen=True)
class ReasonCount:
    code: str
    label: str
    count: int


def report_version(*, model_id: str, model_version: str = "") -> str:
    """The version asked for, else the one that runs now, else the newest one that ever made a suggestion."""
    if model_version:
        return model_version
    state = deployment_state(model_id)
    if state.manifest is not None:
        return state.manifest.version
    found = (
        Suggestion.objects.filter(model_id=model_id)
        .order_by("-created_at")
        .values_list("model_version", flat=True)
        .first()
    )
    if not found:
        raise ReportError(f"model {model_id!r} is not in the catalogue and has no suggestions")
    return found


def model_report_html(*, model_id: str, model_version: str = "", now: datetime | None = None) -> str:
    version = report_version(model_id=model_id, model_version=model_version)
    manifest = catalogue().manifest(model_id, version)
    suggestions = Suggestion.objects.filter(model_id=model_id, model_version=version)
    by_status = dict(suggestions.values_list("status").annotate(n=Count("pk")).order_by())
    decisions = Decision.objects.filter(suggestion__model_id=model_id, suggestion__model_version=version)
    by_outcome = dict(decisions.values_list("outcome").annotate(n=Count("pk")).order_by())
    reasons = [
        ReasonCount(code, REJECTION_REASONS.get(code, code), n)
        for code, n in decisions.filter(outcome=Decision.Outcome.REJECTED)
        .values_list("reason_code")
        .annotate(n=Count("pk"))
        .order_by("-n", "reason_code")
    ]
    decided = sum(by_outcome.values())
    monitoring = panel_context(model_id, version) or {}
    if manifest is None and not suggestions.exists() and not monitoring:
        raise ReportError(f"model {model_id!r} version {version!r} is unknown: no manifest, no suggestion")
    return render_to_string(
        "monitoring/report.html",
        {
            "model_id": model_id,
            "model_version": version,
            "manifest": manifest,
            "name": manifest.name if manifest else model_id,
            "card": model_card(manifest.card) if manifest else None,
            "generated_at": now or timezone.now(),
            "made": suggestions.count(),
            "pending": by_status.get(Suggestion.Status.PENDING, 0),
            "decided": decided,
            "accepted": by_outcome.get(Decision.Outcome.ACCEPTED, 0),
            "modified": by_outcome.get(Decision.Outcome.MODIFIED, 0),
            "rejected": by_outcome.get(Decision.Outcome.REJECTED, 0),
            "override_rate": by_outcome.get(Decision.Outcome.REJECTED, 0) / decided if decided else None,
            "reasons": reasons,
            **monitoring,
        },
    )
