"""The manifest's say in NEWS2: thresholds and the urgency and qualitative risk of each band, validated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from clinical_ai.inference.builtin.news2.chart import BANDS
from clinical_ai.inference.engine.manifest import ManifestError
from clinical_ai.inference.engine.types import Urgency

DEFAULT_THRESHOLDS: dict[str, float] = {
    "medium": 5,
    "high": 7,
    "red_single_parameter": 3,
    "stale_after_hours": 24,
}
DEFAULT_URGENCY: dict[str, Urgency] = {
    "low": "info",
    "low-medium": "warning",
    "medium": "warning",
    "high": "critical",
}
# A red score calls for an urgent ward-based review, as a medium score does: both read "moderate".
DEFAULT_QUALITATIVE_RISK = {"low": "low", "low-medium": "moderate", "medium": "moderate", "high": "high"}
URGENCIES = ("info", "warning", "critical")
# "Cannot be scored" is info: it must not outrank the real warnings (most records lack a full set), and its
# label, not its urgency, keeps it from reading as a low score (docs/models.md, the NEWS2 card).
DEFAULT_URGENCY_NOT_SCORED: Urgency = "info"
QUALITATIVE_RISKS = ("low", "moderate", "high")


def thresholds_parse(raw: Mapping[str, Any]) -> dict[str, float]:
    """The defaults, overridden by the manifest's non-negative numbers; unknown keys are ignored."""
    thresholds = dict(DEFAULT_THRESHOLDS)
    for key, value in raw.items():
        if key in thresholds:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ManifestError(f"news2: threshold {key!r} must be a non-negative number")
            thresholds[key] = value
    if thresholds["medium"] > thresholds["high"]:
        raise ManifestError("news2: the 'medium' threshold is above the 'high' one")
    return thresholds


def by_band_parse(raw: Any, default: Mapping[str, str], allowed: Sequence[str], what: str) -> dict[str, str]:
    """A value for every risk band, each one of ``allowed``: the manifest's where given, else the default."""
    chosen = {**default, **(raw if isinstance(raw, Mapping) else {})}
    if not all(chosen.get(band) in allowed for band in BANDS):
        raise ManifestError(
            f"news2: {what} must map each of {', '.join(BANDS)} to one of {', '.join(allowed)}"
        )
    return {band: str(chosen[band]) for band in BANDS}


def urgency_not_scored_parse(raw: Any) -> Urgency:
    """The urgency of a result that cannot be scored: the manifest's ``urgency_when_not_scored``, else info."""
    if raw is None:
        return DEFAULT_URGENCY_NOT_SCORED
    if raw not in URGENCIES:
        raise ManifestError(f"news2: urgency_when_not_scored must be one of {', '.join(URGENCIES)}")
    return cast(Urgency, raw)
