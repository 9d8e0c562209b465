"""Reads of the stored monitoring rows for the model page and the report. A fixed number of queries per
call, whatever the volume: nothing here recomputes a statistic."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Max, Q

from clinical_ai.monitoring.models import DriftReference, DriftStat, OutcomeStat

DRIFT_HISTORY_PERIODS = 30


@dataclass
class VersionMonitoring:
    model_version: str
    references: list[DriftReference] = field(default_factory=list)
    drift_latest: list[DriftStat] = field(default_factory=list)  # one per input, the newest period
    drift_history: dict[str, list[DriftStat]] = field(default_factory=dict)  # input -> oldest first
    weeks: list[OutcomeStat] = field(default_factory=list)  # oldest first
    window: OutcomeStat | None = None  # the newest trailing window, everyone
    subgroups: list[OutcomeStat] = field(default_factory=list)  # of that window

    @property
    def drift_alerts(self) -> list[DriftStat]:
        return [row for row in self.drift_latest if row.level == DriftStat.Level.ALERT]

    @property
    def subgroup_flags(self) -> list[OutcomeStat]:
        return [row for row in self.subgroups if row.flagged]

    @property
    def periods(self) -> list[str]:
        return sorted({row.period.isoformat() for rows in self.drift_history.values() for row in rows})


@dataclass
class ModelMonitoringStats:
    model_id: str
    versions: list[VersionMonitoring]  # newest version first

    @property
    def has_data(self) -> bool:
        return bool(self.versions)

    @property
    def alert_count(self) -> int:
        return sum(len(v.drift_alerts) + len(v.subgroup_flags) for v in self.versions)


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (-1,)


def model_monitoring_stats(*, model_id: str, model_version: str = "") -> ModelMonitoringStats:
    """The stored monitoring of a model (one version, or all), in six queries."""
    scope = {"model_id": model_id} | ({"model_version": model_version} if model_version else {})
    by_version: dict[str, VersionMonitoring] = {}

    def version(name: str) -> VersionMonitoring:
        return by_version.setdefault(name, VersionMonitoring(model_version=name))

    for reference in DriftReference.objects.filter(**scope).order_by("input_name"):
        version(reference.model_version).references.append(reference)
    history: dict[tuple[str, str], list[DriftStat]] = defaultdict(list)
    newest_periods = (
        DriftStat.objects.filter(**scope).order_by("-period").values_list("period", flat=True).distinct()
    )
    recent = list(newest_periods[:DRIFT_HISTORY_PERIODS])
    if recent:
        drift_rows = DriftStat.objects.filter(**scope, period__gte=min(recent)).order_by(
            "input_name", "period"
        )
        for drift in drift_rows:
            history[(drift.model_version, drift.input_name)].append(drift)
    for (name, input_name), series in history.items():
        v = version(name)
        v.drift_history[input_name] = series
        v.drift_latest.append(series[-1])
    for week in OutcomeStat.objects.filter(**scope, period_kind=OutcomeStat.PeriodKind.WEEK).order_by(
        "period_start"
    ):
        version(week.model_version).weeks.append(week)
    newest_windows = (
        OutcomeStat.objects.filter(**scope, period_kind=OutcomeStat.PeriodKind.WINDOW)
        .values_list("model_version")
        .annotate(newest=Max("period_end"))
    )
    latest_window = Q(pk__in=[])
    for name, newest in newest_windows:
        latest_window |= Q(model_version=name, period_end=newest)
    window_rows = OutcomeStat.objects.filter(
        latest_window, model_id=model_id, period_kind=OutcomeStat.PeriodKind.WINDOW
    ).order_by("subgroup_kind", "subgroup_value")
    for row in window_rows:
        v = version(row.model_version)
        if row.subgroup_kind == OutcomeStat.Subgroup.ALL:
            v.window = row
        else:
            v.subgroups.append(row)
    versions = sorted(by_version.values(), key=lambda v: _version_key(v.model_version), reverse=True)
    for v in versions:
        v.drift_latest.sort(
            key=lambda row: (row.level != DriftStat.Level.ALERT, -(row.psi or 0.0), row.input_name)
        )
    return ModelMonitoringStats(model_id=model_id, versions=versions)
