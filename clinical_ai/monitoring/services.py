"""The periodic monitoring job: input drift and clinicians' decisions, per model version, stored as rows.

``monitoring_compute`` is the one entry point (the Celery task and ``manage.py monitoring_compute`` call
it). It is idempotent for a period: the rows of a day (drift) or of a trailing window ending that day
(subgroups) and of each ISO week (rates over time) are replaced, not added, by a second computation the
same day. An alert (drift) or a flag (subgroup) is audited once, by the row that opens it: a row whose
previous period was already alerting continues the alert and is not audited again.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.sealing import open_json
from clinical_ai.deid.models import DeidentifiedResource
from clinical_ai.fhir.dates import FhirDateError, parse_fhir_date_time
from clinical_ai.inference.models import InferenceRun
from clinical_ai.monitoring import stats
from clinical_ai.monitoring.models import DriftReference, DriftStat, OutcomeStat
from clinical_ai.review.models import Decision

DRIFT_ALERT_ACTION = "monitoring.drift.alert"
SUBGROUP_FLAG_ACTION = "monitoring.subgroup.flag"
COMPUTE_ACTION = "monitoring.compute"
# Bands of 18+ years: far wider than the date shift of de-identification (up to 180 days).
AGE_BANDS: tuple[tuple[int, str], ...] = (
    (0, "0-17"),
    (18, "18-39"),
    (40, "40-64"),
    (65, "65-79"),
    (80, "80+"),
)
UNKNOWN = "unknown"
SEXES = frozenset({"male", "female", "other", "unknown"})
_CATEGORY_MAX_CHARS = 64
_PSEUDONYM_CHUNK = 500

FeatureValue = float | str | None


@dataclass
class ComputeSummary:
    versions: int = 0
    references_fixed: int = 0
    drift_rows: int = 0
    drift_alerts_opened: int = 0
    outcome_rows: int = 0
    subgroup_flags_opened: int = 0
    alerts: list[str] = field(default_factory=list)


# Features ----------------------------------------------------------------------------------------------


def feature_value(value: Any) -> FeatureValue:
    """A number stays a number, ``None`` (and NaN) is missing, anything else becomes a short category."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text[:_CATEGORY_MAX_CHARS]


def _features(model_id: str, version: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    rows = InferenceRun.objects.filter(
        model_id=model_id,
        model_version=version,
        status=InferenceRun.Status.SUCCEEDED,
        created_at__gte=start,
        created_at__lt=end,
    ).values_list("features", flat=True)
    return [row if isinstance(row, dict) else {} for row in rows.iterator(chunk_size=2000)]


def _column(features: list[dict[str, Any]], name: str) -> list[FeatureValue]:
    return [feature_value(row.get(name)) for row in features]


def _mean(values: Iterable[FeatureValue]) -> float | None:
    numbers = [v for v in values if isinstance(v, float)]
    return sum(numbers) / len(numbers) if numbers else None


def _missing_rate(values: list[FeatureValue]) -> float | None:
    return sum(1 for v in values if v is None) / len(values) if values else None


def _counts(reference: DriftReference, values: list[FeatureValue]) -> dict[str, int]:
    if reference.kind == DriftReference.Kind.NUMERIC:
        numbers = [v if isinstance(v, float) else None for v in values]
        return stats.numeric_counts(numbers, reference.edges)
    texts = [None if v is None else (v if isinstance(v, str) else f"{v:g}") for v in values]
    return stats.categorical_counts(texts, reference.categories)


# Drift -------------------------------------------------------------------------------------------------


def _references_fix(model_id: str, version: str, *, now: datetime) -> dict[str, DriftReference]:
    """The version's references, fixed now from its first days if that window has closed with enough runs."""
    existing = {
        r.input_name: r for r in DriftReference.objects.filter(model_id=model_id, model_version=version)
    }
    if existing:
        return existing
    first = (
        InferenceRun.objects.filter(
            model_id=model_id, model_version=version, status=InferenceRun.Status.SUCCEEDED
        )
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if first is None:
        return {}
    end = first + timedelta(days=settings.MONITORING_REFERENCE_DAYS)
    if end > now:
        return {}
    features = _features(model_id, version, first, end)
    if len(features) < settings.MONITORING_MIN_RUNS:
        return {}
    names = sorted({name for row in features for name in row})
    created: dict[str, DriftReference] = {}
    for name in names:
        values = _column(features, name)
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, float) for v in present):
            reference = DriftReference(
                kind=DriftReference.Kind.NUMERIC,
                edges=stats.quantile_edges([v for v in present if isinstance(v, float)]),
            )
        else:
            texts = [None if v is None else (v if isinstance(v, str) else f"{v:g}") for v in values]
            reference = DriftReference(
                kind=DriftReference.Kind.CATEGORICAL, categories=stats.top_categories(texts)
            )
        reference.model_id, reference.model_version, reference.input_name = model_id, version, name[:128]
        reference.counts = _counts(reference, values)
        reference.n = len(values)
        reference.missing_rate = _missing_rate(values) or 0.0
        reference.mean = _mean(values)
        reference.window_start, reference.window_end = first, end
        reference.save()
        created[reference.input_name] = reference
    return created


def _level(psi: float | None) -> str:
    if psi is None:
        return DriftStat.Level.INSUFFICIENT
    if psi >= settings.MONITORING_PSI_ALERT:
        return DriftStat.Level.ALERT
    if psi >= settings.MONITORING_PSI_WARNING:
        return DriftStat.Level.WARNING
    return DriftStat.Level.STABLE


def _drift_compute(
    model_id: str, version: str, *, now: datetime, actor: Actor, summary: ComputeSummary
) -> None:
    had_references = DriftReference.objects.filter(model_id=model_id, model_version=version).exists()
    references = _references_fix(model_id, version, now=now)
    if not had_references:
        summary.references_fixed += len(references)
    if not references:
        return
    start = now - timedelta(days=settings.MONITORING_WINDOW_DAYS)
    features = _features(model_id, version, start, now)
    enough = len(features) >= settings.MONITORING_MIN_RUNS
    period = timezone.localdate(now)
    for name, reference in references.items():
        values = _column(features, name)
        counts = _counts(reference, values)
        psi = stats.psi(reference.counts, counts) if enough else None
        row, _ = DriftStat.objects.update_or_create(
            model_id=model_id,
            model_version=version,
            input_name=name,
            period=period,
            defaults={
                "reference": reference,
                "window_start": start,
                "window_end": now,
                "n": len(values),
                "missing_rate": _missing_rate(values),
                "mean": _mean(values),
                "counts": counts,
                "psi": psi,
                "level": _level(psi),
                "computed_at": now,
            },
        )
        summary.drift_rows += 1
        if row.level != DriftStat.Level.ALERT or row.alert_audited:
            continue
        previous = (
            DriftStat.objects.filter(
                model_id=model_id, model_version=version, input_name=name, period__lt=period
            )
            .order_by("-period")
            .first()
        )
        if previous is not None and previous.level == DriftStat.Level.ALERT:
            continue  # the alert is already open
        audit_record(
            actor=actor,
            action=DRIFT_ALERT_ACTION,
            object_type="monitoring.DriftStat",
            object_id=str(row.pk),
            detail={
                "model_id": model_id,
                "model_version": version,
                "input": name[:200],
                "psi": f"{psi:.3f}" if psi is not None else None,
                "threshold": f"{settings.MONITORING_PSI_ALERT:g}",
                "runs": len(values),
                "period": period.isoformat(),
            },
        )
        DriftStat.objects.filter(pk=row.pk).update(alert_audited=True)
        summary.drift_alerts_opened += 1
        summary.alerts.append(f"drift {model_id} {version} {name} psi={psi:.3f}")


def drift_reference_reset(*, model_id: str, model_version: str) -> int:
    """Drops a version's references (and their stats): the next computation fixes new ones from the
    version's first days. For a deliberate re-baseline only; the caller audits it."""
    deleted, _ = DriftReference.objects.filter(model_id=model_id, model_version=model_version).delete()
    return deleted


# Subgroups ---------------------------------------------------------------------------------------------


def age_band(birth_date: str | None, *, on: date) -> str:
    if not birth_date:
        return UNKNOWN
    try:
        birth = parse_fhir_date_time(birth_date[:10])
    except FhirDateError:
        return UNKNOWN
    # A birth year alone counts from mid-year, a month alone from its first day.
    born = birth.start.date().replace(month=7) if birth.precision == "year" else birth.start.date()
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    if age < 0:
        return UNKNOWN
    label = UNKNOWN
    for lowest, name in AGE_BANDS:
        if age >= lowest:
            label = name
    return label


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _patients(pairs: set[tuple[int, str]]) -> dict[tuple[int, str], tuple[str | None, str]]:
    """(organization id, pseudonym) -> (shifted birth date, sex) from the newest de-identified Patient."""
    found: dict[tuple[int, str], tuple[str | None, str]] = {}
    pseudonyms = sorted({pseudonym for _, pseudonym in pairs})
    for chunk in _chunks(pseudonyms, _PSEUDONYM_CHUNK):
        rows = DeidentifiedResource.objects.filter(
            resource_type="Patient", patient_pseudonym__in=chunk
        ).order_by("created_at", "pk")
        for row in rows.iterator(chunk_size=500):
            key = (row.organization_id, row.patient_pseudonym)
            if key not in pairs:
                continue
            resource = open_json(row.sealed, associated_data=row.associated_data)
            if not isinstance(resource, dict):
                continue
            gender = str(resource.get("gender") or UNKNOWN)
            birth = resource.get("birthDate")
            found[key] = (birth if isinstance(birth, str) else None, gender if gender in SEXES else UNKNOWN)
    return found


@dataclass
class _Tally:
    accepted: int = 0
    modified: int = 0
    rejected: int = 0

    @property
    def decided(self) -> int:
        return self.accepted + self.modified + self.rejected

    def add(self, outcome: str) -> None:
        if outcome == Decision.Outcome.ACCEPTED:
            self.accepted += 1
        elif outcome == Decision.Outcome.MODIFIED:
            self.modified += 1
        elif outcome == Decision.Outcome.REJECTED:
            self.rejected += 1


def _outcome_row(
    *,
    key: Mapping[str, Any],
    tally: _Tally,
    now: datetime,
    rest: _Tally | None = None,
    p_value: float | None = None,
    flagged: bool = False,
) -> OutcomeStat:
    interval = stats.wilson_interval(tally.rejected, tally.decided)
    row, _ = OutcomeStat.objects.update_or_create(
        **key,
        defaults={
            "n_decided": tally.decided,
            "accepted": tally.accepted,
            "modified": tally.modified,
            "rejected": tally.rejected,
            "override_rate": tally.rejected / tally.decided if tally.decided else None,
            "ci_low": interval.low if interval else None,
            "ci_high": interval.high if interval else None,
            "rest_override_rate": rest.rejected / rest.decided if rest and rest.decided else None,
            "p_value": p_value,
            "flagged": flagged,
            "computed_at": now,
        },
    )
    return row


def _outcome_compute(
    model_id: str, version: str, *, now: datetime, actor: Actor, summary: ComputeSummary
) -> None:
    today = timezone.localdate(now)
    this_monday = today - timedelta(days=today.weekday())
    first_monday = this_monday - timedelta(weeks=settings.MONITORING_OUTCOME_WEEKS - 1)
    window_start = today - timedelta(days=settings.MONITORING_OUTCOME_WINDOW_DAYS)
    since = min(first_monday, window_start)
    decisions = list(
        Decision.objects.filter(
            suggestion__model_id=model_id,
            suggestion__model_version=version,
            signed_at__date__gte=since,
            signed_at__lte=now,
        ).values_list(
            "outcome", "signed_at", "organization_id", "organization__slug", "suggestion__patient_pseudonym"
        )
    )
    if not decisions:
        return
    base = {"model_id": model_id, "model_version": version}

    weeks: dict[date, _Tally] = defaultdict(_Tally)
    for outcome, signed_at, *_ in decisions:
        signed_on = timezone.localdate(signed_at)
        if signed_on >= first_monday:
            weeks[signed_on - timedelta(days=signed_on.weekday())].add(outcome)
    for monday, tally in weeks.items():
        _outcome_row(
            key=base
            | {
                "period_kind": OutcomeStat.PeriodKind.WEEK,
                "period_start": monday,
                "period_end": monday + timedelta(days=6),
                "subgroup_kind": OutcomeStat.Subgroup.ALL,
                "subgroup_value": "",
            },
            tally=tally,
            now=now,
        )
        summary.outcome_rows += 1

    in_window = [d for d in decisions if timezone.localdate(d[1]) > window_start]
    if not in_window:
        return
    patients = _patients({(org_id, pseudonym) for _, _, org_id, _, pseudonym in in_window})
    total = _Tally()
    groups: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    for outcome, signed_at, org_id, org_slug, pseudonym in in_window:
        birth, sex = patients.get((org_id, pseudonym), (None, UNKNOWN))
        total.add(outcome)
        groups[(OutcomeStat.Subgroup.AGE_BAND, age_band(birth, on=timezone.localdate(signed_at)))].add(
            outcome
        )
        groups[(OutcomeStat.Subgroup.SEX, sex)].add(outcome)
        groups[(OutcomeStat.Subgroup.ORGANIZATION, str(org_slug)[:64])].add(outcome)
    window_key = base | {
        "period_kind": OutcomeStat.PeriodKind.WINDOW,
        "period_start": window_start,
        "period_end": today,
    }
    _outcome_row(
        key=window_key | {"subgroup_kind": OutcomeStat.Subgroup.ALL, "subgroup_value": ""},
        tally=total,
        now=now,
    )
    summary.outcome_rows += 1

    minimum = settings.MONITORING_SUBGROUP_MIN_DECIDED
    tests: dict[tuple[str, str], tuple[_Tally, float | None]] = {}
    for group, tally in groups.items():
        rest = _Tally(
            total.accepted - tally.accepted, total.modified - tally.modified, total.rejected - tally.rejected
        )
        testable = tally.decided >= minimum and rest.decided >= minimum
        tests[group] = (
            rest,
            stats.two_proportion_p_value(tally.rejected, tally.decided, rest.rejected, rest.decided)
            if testable
            else None,
        )
    tested = sum(1 for _, p in tests.values() if p is not None)
    # Bonferroni over every subgroup tested for this version and window: many subgroups, few false alarms.
    threshold = settings.MONITORING_SUBGROUP_ALPHA / tested if tested else 0.0
    for (kind, value), tally in sorted(groups.items()):
        rest, p_value = tests[(kind, value)]
        flagged = p_value is not None and p_value < threshold
        row = _outcome_row(
            key=window_key | {"subgroup_kind": kind, "subgroup_value": value},
            tally=tally,
            now=now,
            rest=rest,
            p_value=p_value,
            flagged=flagged,
        )
        summary.outcome_rows += 1
        if not flagged or row.flag_audited:
            continue
        previous = (
            OutcomeStat.objects.filter(
                **base,
                period_kind=OutcomeStat.PeriodKind.WINDOW,
                subgroup_kind=kind,
                subgroup_value=value,
                period_end__lt=today,
            )
            .order_by("-period_end")
            .first()
        )
        if previous is not None and previous.flagged:
            continue
        audit_record(
            actor=actor,
            action=SUBGROUP_FLAG_ACTION,
            object_type="monitoring.OutcomeStat",
            object_id=str(row.pk),
            detail={
                "model_id": model_id,
                "model_version": version,
                "subgroup": f"{kind}={value}",
                "decided": tally.decided,
                "rejected": tally.rejected,
                "override_rate": f"{row.override_rate:.3f}" if row.override_rate is not None else None,
                "rest_override_rate": f"{row.rest_override_rate:.3f}"
                if row.rest_override_rate is not None
                else None,
                "p_value": f"{p_value:.2g}" if p_value is not None else None,
                "period_end": today.isoformat(),
            },
        )
        OutcomeStat.objects.filter(pk=row.pk).update(flag_audited=True)
        summary.subgroup_flags_opened += 1
        summary.alerts.append(f"subgroup {model_id} {version} {kind}={value}")


# The job -----------------------------------------------------------------------------------------------


def monitored_versions() -> list[tuple[str, str]]:
    """Every (model id, version) that has run successfully, in order."""
    pairs = (
        InferenceRun.objects.filter(status=InferenceRun.Status.SUCCEEDED)
        .exclude(model_version="")
        .values_list("model_id", "model_version")
        .distinct()
    )
    return sorted(set(pairs))


def monitoring_compute(*, actor: Actor, now: datetime | None = None) -> ComputeSummary:
    """Computes and stores drift and outcome statistics for every model version; one transaction per
    version, so its rows and the audit rows of the alerts they open commit together."""
    now = now or timezone.now()
    summary = ComputeSummary()
    for model_id, version in monitored_versions():
        with transaction.atomic():
            _drift_compute(model_id, version, now=now, actor=actor, summary=summary)
            _outcome_compute(model_id, version, now=now, actor=actor, summary=summary)
        summary.versions += 1
    audit_record(
        actor=actor,
        action=COMPUTE_ACTION,
        detail={
            "versions": summary.versions,
            "references_fixed": summary.references_fixed,
            "drift_rows": summary.drift_rows,
            "drift_alerts_opened": summary.drift_alerts_opened,
            "outcome_rows": summary.outcome_rows,
            "subgroup_flags_opened": summary.subgroup_flags_opened,
        },
    )
    return summary
