"""Reads for the models pages: the catalogue with each model's switch, one model's card and versions, and
how its suggestions fared (made, accepted, modified, rejected and why), per version and over time.

Every count is one aggregate query (``values`` + ``annotate(Count)``): the number of queries a page makes
does not grow with the number of runs, suggestions or versions. The counts span every site: the switch
they inform is global too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.apps import apps
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from clinical_ai.accounts.models import Membership
from clinical_ai.inference.engine.manifest import ModelManifest
from clinical_ai.inference.models import InferenceRun, ModelDeployment, ShadowRun
from clinical_ai.inference.registry import (
    DeploymentState,
    catalogue,
    catalogue_refusals,
    deployment_state,
    manifest_refusal,
)
from clinical_ai.review.fhir_decision import REJECTION_REASONS
from clinical_ai.review.models import Suggestion

# Suggestions older than this are left out of the chart over time (the per-version table counts them all).
MONITORING_WINDOW_DAYS = 182
# Spans up to this many days are charted per day, longer ones per ISO week.
DAILY_SPAN_DAYS = 31
# Rejection reasons come from the review app's decisions; without that model the page counts outcomes by
# the suggestions' status alone (and says that reasons are not recorded).
DECISION_MODEL: str = "review.Decision"


def user_may_view_models(user: Any) -> bool:
    """Model cards are for everyone who works here: a superuser, or anyone with a role at any site."""
    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user=user).exists()


@dataclass(frozen=True)
class SwitchRecord:
    """The admins' last change of a model's switch; absent while the manifest's default applies."""

    enabled: bool
    pinned_version: str
    reason: str
    changed_by: str
    changed_at: datetime


@dataclass(frozen=True)
class ModelSummary:
    model_id: str
    name: str
    newest_version: str
    running_version: str  # "" when the pinned version is no longer in the catalogue
    enabled: bool
    pinned_version: str
    default_enabled: bool
    switch: SwitchRecord | None

    @property
    def pin_missing(self) -> bool:
        return bool(self.pinned_version) and not self.running_version


def _switch_record(row: ModelDeployment | None) -> SwitchRecord | None:
    if row is None:
        return None
    return SwitchRecord(
        enabled=row.enabled,
        pinned_version=row.pinned_version,
        reason=row.reason,
        changed_by=row.updated_by.get_username() if row.updated_by else "",
        changed_at=row.updated_at,
    )


def _summary(
    versions: Sequence[ModelManifest], state: DeploymentState, row: ModelDeployment | None
) -> ModelSummary:
    newest = versions[0]
    return ModelSummary(
        model_id=newest.id,
        name=newest.name,
        newest_version=newest.version,
        running_version=state.manifest.version if state.manifest else "",
        enabled=state.enabled,
        pinned_version=state.pinned_version,
        default_enabled=newest.default_enabled,
        switch=_switch_record(row),
    )


def model_list() -> list[ModelSummary]:
    """Every model in the catalogue, by id, with its switch: one query."""
    rows = {row.model_id: row for row in ModelDeployment.objects.select_related("updated_by")}
    found = catalogue()
    return [
        _summary(
            found.versions(model_id),
            deployment_state(model_id, row=rows.get(model_id), lookup=False),
            rows.get(model_id),
        )
        for model_id in sorted(found.models)
    ]


def catalogue_errors() -> list[str]:
    """Manifests that failed to load, or found ones that refuse to (a changed file, a model file that does
    not fit its features). They name files on the server: for admins only."""
    return catalogue_refusals()


@dataclass(frozen=True)
class Figure:
    name: str
    value: str
    source: str


@dataclass(frozen=True)
class ModelCard:
    """A manifest's card, every section as text or a list of texts, whatever shape the manifest used."""

    clinical_summary: str
    intended_use: str
    intended_users: str
    inputs: str
    development: str
    validation_summary: str
    figures: list[Figure]
    limitations: list[str]
    references: list[str]
    explanation_method: str = ""  # declarative models: how each result's explanation is computed, its limits


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(_as_text(v) for v in value)
    return str(value)


def _as_texts(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    return [_as_text(value)]


def model_card(card: Mapping[str, Any]) -> ModelCard:
    validation = card.get("validation")
    if isinstance(validation, Mapping):
        summary = _as_text(validation.get("summary"))
        raw_figures = validation.get("figures") or []
    else:
        summary, raw_figures = _as_text(validation), []
    figures = [
        Figure(_as_text(item.get("name")), _as_text(item.get("value")), _as_text(item.get("source")))
        if isinstance(item, Mapping)
        else Figure(_as_text(item), "", "")
        for item in (raw_figures if isinstance(raw_figures, list) else [raw_figures])
    ]
    return ModelCard(
        clinical_summary=_as_text(card.get("clinical_summary")),
        intended_use=_as_text(card.get("intended_use")),
        intended_users=_as_text(card.get("intended_users")),
        inputs=_as_text(card.get("inputs")),
        development=_as_text(card.get("development")),
        validation_summary=summary,
        figures=figures,
        limitations=_as_texts(card.get("limitations")),
        references=_as_texts(card.get("references")),
        explanation_method=_as_text(card.get("explanation_method")),
    )


@dataclass(frozen=True)
class ModelDetail:
    summary: ModelSummary
    card: ModelCard  # of the version that runs now, else the newest
    card_version: str
    versions: list[ModelManifest]  # newest first

    @property
    def version_names(self) -> list[str]:
        return [m.version for m in self.versions]


def model_detail(*, model_id: str) -> ModelDetail | None:
    versions = catalogue().versions(model_id)
    if not versions:
        return None
    row = ModelDeployment.objects.select_related("updated_by").filter(model_id=model_id).first()
    state = deployment_state(model_id, row=row, lookup=False)
    shown = state.manifest or versions[0]
    return ModelDetail(
        summary=_summary(versions, state, row),
        card=model_card(shown.card),
        card_version=shown.version,
        versions=list(versions),
    )


# Monitoring ------------------------------------------------------------------------------------------


@dataclass
class OutcomeCounts:
    """Suggestions by what became of them, and the override rate: rejected among those decided."""

    made: int = 0
    pending: int = 0
    accepted: int = 0
    modified: int = 0
    rejected: int = 0
    superseded: int = 0
    withdrawn: int = 0

    def add(self, status: str, count: int) -> None:
        self.made += count
        if status in Suggestion.Status.values:
            setattr(self, status, getattr(self, status) + count)

    def merge(self, other: OutcomeCounts) -> None:
        for name in ("made", *Suggestion.Status.values):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def decided(self) -> int:
        return self.accepted + self.modified + self.rejected

    @property
    def override_rate(self) -> float | None:
        return self.rejected / self.decided if self.decided else None


@dataclass(frozen=True)
class ReasonCount:
    code: str
    label: str
    count: int


@dataclass
class VersionStats(OutcomeCounts):
    version: str = ""
    in_catalogue: bool = False
    running: bool = False
    runs: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def runs_total(self) -> int:
        return sum(self.runs.values())

    @property
    def runs_succeeded(self) -> int:
        return self.runs[InferenceRun.Status.SUCCEEDED]

    @property
    def runs_failed(self) -> int:
        return self.runs[InferenceRun.Status.FAILED]

    @property
    def runs_skipped(self) -> int:
        return self.runs[InferenceRun.Status.SKIPPED]

    @property
    def runs_in_progress(self) -> int:
        return self.runs[InferenceRun.Status.QUEUED] + self.runs[InferenceRun.Status.RUNNING]

    @property
    def reasons_ranked(self) -> list[ReasonCount]:
        ranked = sorted(self.reasons.items(), key=lambda item: (-item[1], item[0]))
        return [ReasonCount(code, reason_label(code) if code else "(none given)", n) for code, n in ranked]


@dataclass
class Bucket(OutcomeCounts):
    label: str = ""
    start: date = date.min


@dataclass(frozen=True)
class Monitoring:
    versions: list[VersionStats]  # newest first; versions no longer in the catalogue included
    totals: VersionStats
    buckets: list[Bucket]
    unit: str  # "day" or "week"
    reasons_recorded: bool  # whether decisions carry reason codes (the review app's Decision model)


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (-1,)


def _decision_model() -> Any | None:
    """The review app's Decision model, when it exists with a suggestion, an outcome and a reason code."""
    try:
        model = apps.get_model(DECISION_MODEL)
    except LookupError:
        return None
    names = {f.name for f in model._meta.get_fields()}
    return model if {"suggestion", "outcome", "reason_code"} <= names else None


def reason_label(code: str) -> str:
    """The words for a rejection reason code (the code itself for one the review stage does not know)."""
    return REJECTION_REASONS.get(code, code)


def _rejection_reasons(model_id: str) -> list[tuple[str, str, int]] | None:
    """(version, reason code, decisions) of the rejections of a model's suggestions; None when decisions
    are not recorded with reasons."""
    decision = _decision_model()
    if decision is None:
        return None
    rows = (
        decision.objects.filter(suggestion__model_id=model_id, outcome=Suggestion.Status.REJECTED)
        .values("suggestion__model_version", "reason_code")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [(r["suggestion__model_version"], r["reason_code"] or "", r["n"]) for r in rows]


def _buckets(days: Mapping[date, Mapping[str, int]], *, today: date) -> tuple[list[Bucket], str]:
    """Per-day counts folded into a continuous run of days (short spans) or ISO weeks, empty ones included."""
    first = min(days, default=today)
    if (today - first).days < DAILY_SPAN_DAYS:
        start = min(first, today - timedelta(days=13))
        step, unit = timedelta(days=1), "day"
    else:
        start = first - timedelta(days=first.weekday())
        step, unit = timedelta(weeks=1), "week"
    buckets: list[Bucket] = []
    cursor = start
    while cursor <= today:
        if unit == "day":
            label = cursor.isoformat()
        else:
            year, week, _ = cursor.isocalendar()
            label = f"{year}-W{week:02d}"
        buckets.append(Bucket(label=label, start=cursor))
        cursor += step
    for day, statuses in days.items():
        index = (day - start) // step
        if 0 <= index < len(buckets):
            for status, count in statuses.items():
                buckets[index].add(status, count)
    return buckets, unit


def model_monitoring(*, model_id: str, running_version: str = "", now: datetime | None = None) -> Monitoring:
    """Runs and suggestions of a model per version, rejection reasons, and suggestions over time by the
    day (or week) they were made. Three or four aggregate queries, whatever the volume."""
    stats: dict[str, VersionStats] = {
        m.version: VersionStats(version=m.version, in_catalogue=True, running=m.version == running_version)
        for m in catalogue().versions(model_id)
    }

    def version(name: str) -> VersionStats:
        if name not in stats:
            stats[name] = VersionStats(version=name)
        return stats[name]

    runs = (
        InferenceRun.objects.filter(model_id=model_id)
        .values("model_version", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in runs:
        version(row["model_version"]).runs[row["status"]] += row["n"]
    suggestions = (
        Suggestion.objects.filter(model_id=model_id)
        .values("model_version", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in suggestions:
        version(row["model_version"]).add(row["status"], row["n"])
    reasons = _rejection_reasons(model_id)
    for name, code, count in reasons or ():
        version(name).reasons[code] += count

    now = now or timezone.now()
    today = timezone.localdate(now)
    per_day: dict[date, dict[str, int]] = defaultdict(dict)
    series = (
        Suggestion.objects.filter(
            model_id=model_id, created_at__gte=now - timedelta(days=MONITORING_WINDOW_DAYS)
        )
        .annotate(day=TruncDate("created_at"))
        .values("day", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for day_row in series:
        per_day[day_row["day"]][day_row["status"]] = day_row["n"]
    buckets, unit = _buckets(per_day, today=today)

    ordered = sorted(stats.values(), key=lambda s: _version_key(s.version), reverse=True)
    totals = VersionStats(version="all")
    for one in ordered:
        totals.merge(one)
        totals.runs.update(one.runs)
        totals.reasons.update(one.reasons)
    return Monitoring(
        versions=ordered, totals=totals, buckets=buckets, unit=unit, reasons_recorded=reasons is not None
    )


# Shadow versions ---------------------------------------------------------------------------------------

# The agreement report lists at most this many disagreeing pairs (ids only); the counts cover them all.
SHADOW_DISAGREEMENTS_SHOWN = 50
_NO_FINDING = ("none", "")


def _top_level(summary: Mapping[str, Any]) -> tuple[str, str]:
    """The most urgent finding's urgency and band; ("none", "") when the result has no finding."""
    findings = list(summary.get("findings") or [])
    if not findings:
        return _NO_FINDING
    order = {"critical": 0, "warning": 1, "info": 2}
    top = min(findings, key=lambda f: (order.get(str(f.get("urgency")), 3), str(f.get("key"))))
    return str(top.get("urgency", "")), str(top.get("band", ""))


def _keys(summary: Mapping[str, Any]) -> set[str]:
    return {str(f.get("key")) for f in summary.get("findings") or []}


def _jaccard(a: set[str], b: set[str]) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def _score_differences(shadow: Mapping[str, Any], active: Mapping[str, Any]) -> list[float]:
    scores = {f.get("key"): f.get("score") for f in active.get("findings") or []}
    return [
        abs(float(f["score"]) - float(scores[f.get("key")]))
        for f in shadow.get("findings") or []
        if f.get("score") is not None and scores.get(f.get("key")) is not None
    ]


@dataclass(frozen=True)
class ShadowDisagreement:
    shadow_run: str  # external ids only: the report shows no patient
    active_run: str
    active_top: str
    shadow_top: str
    jaccard: float


@dataclass
class ShadowAgreement:
    """How a shadow version's results compare with the running version's on the same inputs."""

    model_id: str
    version: str
    pairs: int = 0
    same_top: int = 0
    same_keys: int = 0
    jaccard_sum: float = 0.0
    score_diff_sum: float = 0.0
    score_diff_count: int = 0
    failed: int = 0
    skipped: int = 0
    queued: int = 0
    disagreements: list[ShadowDisagreement] = field(default_factory=list)

    @property
    def same_top_rate(self) -> float | None:
        return self.same_top / self.pairs if self.pairs else None

    @property
    def same_keys_rate(self) -> float | None:
        return self.same_keys / self.pairs if self.pairs else None

    @property
    def jaccard_mean(self) -> float | None:
        return self.jaccard_sum / self.pairs if self.pairs else None

    @property
    def mean_abs_score_difference(self) -> float | None:
        return self.score_diff_sum / self.score_diff_count if self.score_diff_count else None


def shadow_agreement(model_id: str, version: str) -> ShadowAgreement:
    """The agreement report of a shadow version: each succeeded shadow run paired with its active run (the
    same ingest job and patient, the same de-identified input), compared on the most urgent finding's
    urgency and band, the set of finding keys (Jaccard), and the scores of the findings both made.
    Two queries, whatever the number of runs."""
    report = ShadowAgreement(model_id=model_id, version=version)
    by_status = dict(
        ShadowRun.objects.filter(model_id=model_id, model_version=version)
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    report.failed = by_status.get(ShadowRun.Status.FAILED, 0)
    report.skipped = by_status.get(ShadowRun.Status.SKIPPED, 0)
    report.queued = by_status.get(ShadowRun.Status.QUEUED, 0)
    pairs = (
        ShadowRun.objects.filter(
            model_id=model_id,
            model_version=version,
            status=ShadowRun.Status.SUCCEEDED,
            active_run__status=InferenceRun.Status.SUCCEEDED,
        )
        .order_by("pk")
        .values_list("external_id", "active_run__external_id", "result", "active_result")
    )
    for shadow_id, active_id, result, active_result in pairs.iterator(chunk_size=500):
        report.pairs += 1
        shadow_top, active_top = _top_level(result), _top_level(active_result)
        jaccard = _jaccard(_keys(result), _keys(active_result))
        report.same_top += shadow_top == active_top
        report.same_keys += jaccard == 1.0
        report.jaccard_sum += jaccard
        differences = _score_differences(result, active_result)
        report.score_diff_sum += sum(differences)
        report.score_diff_count += len(differences)
        if (shadow_top != active_top or jaccard < 1.0) and len(
            report.disagreements
        ) < SHADOW_DISAGREEMENTS_SHOWN:
            report.disagreements.append(
                ShadowDisagreement(
                    shadow_run=str(shadow_id),
                    active_run=str(active_id),
                    active_top=" ".join(filter(None, active_top)),
                    shadow_top=" ".join(filter(None, shadow_top)),
                    jaccard=round(jaccard, 3),
                )
            )
    return report


@dataclass(frozen=True)
class ShadowState:
    """The shadow section of a model's page: the shadow version and its report, the rollback target."""

    shadow_version: str
    previous_version: str
    report: ShadowAgreement | None


def model_shadow_state(*, model_id: str) -> ShadowState:
    row = ModelDeployment.objects.filter(model_id=model_id).first()
    shadow = row.shadow_version if row else ""
    return ShadowState(
        shadow_version=shadow,
        previous_version=row.previous_version if row else "",
        report=shadow_agreement(model_id, shadow) if shadow else None,
    )


# --- models that cannot run -----------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """One manifest that cannot run, as the models page lists it for admins: what was refused (its file on
    the server, or the model and version) and why, in the loader's own words."""

    subject: str
    is_file: bool
    reason: str


def refusal_shown(message: str) -> Refusal:
    """``"<file or model>: <why>"`` split in two; a message without a subject is all reason."""
    subject, separator, reason = message.partition(": ")
    if not separator or not subject.strip() or not reason.strip():
        return Refusal(subject="", is_file=False, reason=message)
    is_file = "/" in subject or "\\" in subject or subject.endswith(".json")
    return Refusal(subject=subject, is_file=is_file, reason=reason)


def catalogue_refusals_shown() -> list[Refusal]:
    return [refusal_shown(message) for message in catalogue_errors()]


def running_refusals(models: Sequence[ModelSummary]) -> set[str]:
    """The listed models whose running version refuses to load (a changed file, a model file that does not
    fit its features): switched on or not, they run nothing."""
    found = catalogue()
    refused = set()
    for model in models:
        manifest = found.manifest(model.model_id, model.running_version) if model.running_version else None
        if manifest is not None and manifest_refusal(manifest):
            refused.add(model.model_id)
    return refused
