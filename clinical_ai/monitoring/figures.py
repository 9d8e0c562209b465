"""The monitoring charts, drawn from stored rows with the models pages' SVG helpers
(``clinical_ai.inference.charts``): every text escaped there, so the markup may go into a page as it is."""

from __future__ import annotations

from clinical_ai.inference import charts
from clinical_ai.monitoring.selectors import VersionMonitoring

# Okabe-Ito colours for the inputs' lines, in turn.
INPUT_COLORS = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7")


def _chart_id(prefix: str, version: str) -> str:
    return f"{prefix}-{''.join(ch if ch.isalnum() else '_' for ch in version)}"[:64]


def drift_chart(version: VersionMonitoring, *, alert_threshold: float) -> str:
    """PSI per period of the inputs that moved most (at most six), against the alert threshold."""
    labels = version.periods
    shown = [row.input_name for row in version.drift_latest[: len(INPUT_COLORS)]]
    series = []
    for color, name in zip(INPUT_COLORS, shown, strict=False):
        by_period = {row.period.isoformat(): row.psi for row in version.drift_history.get(name, [])}
        series.append(charts.Series(name, [by_period.get(label) for label in labels], color))
    present = [v for one in series for v in one.values if v is not None]
    top = charts.nice_ceiling(max([*present, alert_threshold * 2]))
    return charts.line_chart(
        chart_id=_chart_id("drift", version.model_version),
        title=f"Input drift of version {version.model_version} (population stability index)",
        description=(
            f"PSI of each input's distribution over the moving window against the reference window, per day; "
            f"{alert_threshold:g} and above is a drift alert. Inputs shown: {', '.join(shown) or 'none'}."
        ),
        labels=labels,
        series=series,
        y_max=top,
    )


def outcome_chart(version: VersionMonitoring) -> str:
    """Acceptance, modification and override rates per ISO week."""
    labels = [row.period_start.isoformat() for row in version.weeks]
    return charts.line_chart(
        chart_id=_chart_id("outcomes", version.model_version),
        title=f"Decisions on version {version.model_version}, per ISO week",
        description="Share of decided suggestions accepted, accepted with changes, and rejected (overridden).",
        labels=labels,
        series=[
            charts.Series(
                "Accepted", [row.acceptance_rate for row in version.weeks], charts.PALETTE["accepted"]
            ),
            charts.Series(
                "Modified", [row.modification_rate for row in version.weeks], charts.PALETTE["modified"]
            ),
            charts.Series(
                "Overridden", [row.override_rate for row in version.weeks], charts.PALETTE["rejected"]
            ),
        ],
        percent=True,
    )
