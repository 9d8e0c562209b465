"""``{% load monitoring %}{% monitoring_panel model_id %}``: the stored monitoring of a model on its page,
nothing at all while no row is stored. Reads rows only (``selectors.model_monitoring_stats``)."""

from __future__ import annotations

from django import template
from django.conf import settings
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from clinical_ai.monitoring.figures import drift_chart, outcome_chart
from clinical_ai.monitoring.selectors import model_monitoring_stats

register = template.Library()


@register.filter
def percent(value: float | None, digits: int = 0) -> str:
    """0.125 -> "13 %" (or "12.5 %" with 1 digit); an en dash for no figure."""
    if value is None:
        return "\u2013"
    return f"{value * 100:.{int(digits)}f} %"


def panel_context(model_id: str, model_version: str = "") -> dict[str, object] | None:
    stats = model_monitoring_stats(model_id=model_id, model_version=model_version)
    if not stats.has_data:
        return None
    threshold = float(settings.MONITORING_PSI_ALERT)
    versions = [
        {
            "stats": version,
            "drift_chart": mark_safe(drift_chart(version, alert_threshold=threshold)),  # noqa: S308 (escaped)
            "outcome_chart": mark_safe(outcome_chart(version)),  # noqa: S308 (escaped by charts)
        }
        for version in stats.versions
    ]
    return {
        "monitoring_stats": stats,
        "monitoring_versions": versions,
        "psi_alert": threshold,
        "psi_warning": float(settings.MONITORING_PSI_WARNING),
        "alpha": float(settings.MONITORING_SUBGROUP_ALPHA),
    }


@register.simple_tag
def monitoring_panel(model_id: str) -> SafeString:
    context = panel_context(str(model_id))
    if context is None:
        return mark_safe("")
    return mark_safe(render_to_string("monitoring/_panel.html", context))  # noqa: S308 (a rendered template)
