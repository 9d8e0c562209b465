"""Reads for the clinician review UI: who may see and decide what, a page of the queue, and one suggestion
with its basis, its model's card and its decision, shaped for the templates.

The sealed payloads are opened here, for the rows shown only. Evidence is whatever a model wrote: every
reader below takes what it finds and leaves out what is missing or of the wrong shape, never raising.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import Count, QuerySet
from django.utils import timezone

from clinical_ai.accounts.models import Membership, Role
from clinical_ai.core.crypto import DecryptionError
from clinical_ai.core.sealing import canonical_json, open_json
from clinical_ai.inference.registry import catalogue
from clinical_ai.review.fhir_decision import (
    CLINICAL_STATUSES,
    REJECTION_REASONS,
    VERIFICATION_STATUSES,
)
from clinical_ai.review.models import Decision, Suggestion

PAGE_SIZE = 25
SHORT_PSEUDONYM = 10

AGE_WINDOWS: dict[str, str] = {
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "older": "Older than 7 days",
}
_DECIDED = (Suggestion.Status.ACCEPTED, Suggestion.Status.MODIFIED, Suggestion.Status.REJECTED)
STATUS_FILTERS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "pending": ("Pending review", (Suggestion.Status.PENDING,)),
    "decided": ("Decided (any outcome)", _DECIDED),
    "accepted": ("Accepted", (Suggestion.Status.ACCEPTED,)),
    "modified": ("Accepted with changes", (Suggestion.Status.MODIFIED,)),
    "rejected": ("Rejected", (Suggestion.Status.REJECTED,)),
    "closed": (
        "Superseded or withdrawn",
        (Suggestion.Status.SUPERSEDED, Suggestion.Status.WITHDRAWN),
    ),
    "all": ("All", None),
}


def short_pseudonym(pseudonym: str) -> str:
    return pseudonym[:SHORT_PSEUDONYM]


# --- access ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewAccess:
    """The organizations a user may review at: ``decide`` as a clinician, ``read`` in any role (auditors
    and admins read only). A superuser without a membership has none: the queue holds patients' data."""

    decide: frozenset[int] = frozenset()
    read: frozenset[int] = frozenset()

    def may_read(self, organization_id: int) -> bool:
        return organization_id in self.read

    def may_decide(self, organization_id: int) -> bool:
        return organization_id in self.decide


def review_access(user: Any) -> ReviewAccess:
    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return ReviewAccess()
    roles = list(Membership.objects.filter(user=user).values_list("organization_id", "role"))
    return ReviewAccess(
        decide=frozenset(org for org, role in roles if role == Role.CLINICIAN),
        read=frozenset(org for org, _ in roles),
    )


# --- the queue ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilters:
    patient: str = ""  # a pseudonym, or its first characters as the queue shows them
    model_id: str = ""
    urgency: str = ""
    age: str = ""  # a key of AGE_WINDOWS
    status: str = "pending"  # a key of STATUS_FILTERS

    def used(self) -> list[str]:
        """The names of the filters in use (for the audit row: names, never the values typed)."""
        values = {
            "patient": self.patient,
            "model": self.model_id,
            "urgency": self.urgency,
            "age": self.age,
            "status": self.status if self.status != "pending" else "",
        }
        return [name for name, value in values.items() if value]


@dataclass(frozen=True)
class QueueRow:
    suggestion: Suggestion
    summary: str
    patient_short: str
    decision: Decision | None
    sealed_ok: bool = True


@dataclass(frozen=True)
class UrgencyCount:
    value: str
    label: str
    count: int


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    page: Page[Suggestion]
    counts: list[UrgencyCount]  # within the other filters, so each says what choosing it would show
    total: int


def _queue_queryset(access: ReviewAccess, filters: QueueFilters, now: datetime) -> QuerySet[Suggestion]:
    found = Suggestion.objects.filter(organization_id__in=sorted(access.read))
    statuses = STATUS_FILTERS.get(filters.status, STATUS_FILTERS["pending"])[1]
    if statuses is not None:
        found = found.filter(status__in=statuses)
    if filters.patient:
        found = found.filter(patient_pseudonym__startswith=filters.patient)
    if filters.model_id:
        found = found.filter(model_id=filters.model_id)
    if filters.age == "24h":
        found = found.filter(created_at__gte=now - timedelta(hours=24))
    elif filters.age == "7d":
        found = found.filter(created_at__gte=now - timedelta(days=7))
    elif filters.age == "older":
        found = found.filter(created_at__lt=now - timedelta(days=7))
    return found


def _summary(suggestion: Suggestion) -> tuple[str, bool]:
    try:
        payload = open_json(suggestion.sealed, associated_data=suggestion.associated_data)
    except DecryptionError:
        return "", False
    summary = payload.get("summary") if isinstance(payload, Mapping) else None
    return (summary if isinstance(summary, str) else ""), True


def review_queue(
    *, access: ReviewAccess, filters: QueueFilters, page_number: Any = 1, now: datetime | None = None
) -> QueuePage:
    """One page of suggestions, most urgent first and then oldest first. A fixed number of queries
    whatever the page holds; only the page's payloads are opened."""
    now = now or timezone.now()
    base = _queue_queryset(access, filters, now)
    by_urgency = dict(base.order_by().values_list("urgency").annotate(n=Count("pk")))
    counts = [
        UrgencyCount(value, str(label), by_urgency.get(value, 0))
        for value, label in Suggestion.Urgency.choices
    ]
    found = base.filter(urgency=filters.urgency) if filters.urgency else base
    found = found.select_related("decision").order_by("urgency_rank", "created_at", "pk")
    page = Paginator(found, PAGE_SIZE).get_page(page_number)
    rows = []
    for suggestion in page.object_list:
        summary, sealed_ok = _summary(suggestion)
        rows.append(
            QueueRow(
                suggestion=suggestion,
                summary=summary,
                patient_short=short_pseudonym(suggestion.patient_pseudonym),
                decision=getattr(suggestion, "decision", None),
                sealed_ok=sealed_ok,
            )
        )
    return QueuePage(rows=rows, page=page, counts=counts, total=page.paginator.count)


def queue_model_ids(access: ReviewAccess) -> list[str]:
    """The models a queue filter may name: those in the catalogue and those with suggestions here."""
    stored = Suggestion.objects.filter(organization_id__in=sorted(access.read)).values_list(
        "model_id", flat=True
    )
    return sorted(set(catalogue().models) | set(stored.distinct()))


def suggestion_visible(*, access: ReviewAccess, external_id: Any) -> Suggestion | None:
    """The suggestion if the user may see it (any role at its organization); None otherwise, so that
    another site's suggestions are indistinguishable from ones that do not exist."""
    return (
        Suggestion.objects.filter(external_id=external_id, organization_id__in=sorted(access.read))
        .select_related("organization", "run")
        .first()
    )


# --- reading evidence defensively -----------------------------------------------------------------


def _text(value: Any) -> str:
    """A value as the page shows it; "" for nothing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, Mapping):
        for key in ("display", "text", "code"):
            if isinstance(value.get(key), str) and value[key]:
                return str(value[key])
    return json.dumps(value, ensure_ascii=False, default=str)[:200]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, Sequence):
        return [_text(item) for item in value if _text(item)]
    if isinstance(value, Mapping):
        return [f"{key}: {_text(item)}" for key, item in value.items() if _text(item)]
    return []


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


# --- risk findings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterRow:
    name: str
    label: str
    value: str
    unit: str
    original: str
    effective: str
    age_hours: str
    score: str
    range: str
    status: str
    reason: str


@dataclass(frozen=True)
class RiskBasis:
    parameters: list[ParameterRow]
    missing: list[str]
    stale: list[str]
    aggregate: str
    score: str
    band: str
    qualitative_risk: str
    outcome: str
    complete: bool | None
    note: str
    red_score_parameters: list[str]
    thresholds: list[tuple[str, str]]
    clinical_response: str
    reference_time: str
    scale: str


def _parameter_row(item: Mapping[str, Any]) -> ParameterRow:
    original = " ".join(p for p in (_text(item.get("original_value")), _text(item.get("original_unit"))) if p)
    age = item.get("age_hours")
    name = _text(item.get("name"))
    return ParameterRow(
        name=name,
        label=_text(item.get("label")) or _label(name),
        value=_text(item.get("value")),
        unit=_display_unit(_text(item.get("unit"))),
        original=original,
        effective=_text(item.get("effective")),
        age_hours=f"{age:g} h" if isinstance(age, int | float) and not isinstance(age, bool) else "",
        score=_text(item.get("score")),
        range=_text(item.get("range")),
        status=_text(item.get("status")) or "unknown",
        reason=_text(item.get("reason")),
    )


def risk_basis(evidence: Mapping[str, Any], risk: Mapping[str, Any] | None) -> RiskBasis:
    risk = risk if isinstance(risk, Mapping) else {}
    rows = [_parameter_row(item) for item in _dicts(evidence.get("parameters"))]
    labels = {row.name: row.label for row in rows}

    def named(key: str, status: str) -> list[str]:
        listed = [labels.get(name, _label(name)) for name in _strings(evidence.get(key))]
        return listed or [row.label for row in rows if row.status == status]

    thresholds = evidence.get("thresholds")
    complete = evidence.get("complete")
    return RiskBasis(
        parameters=rows,
        missing=named("missing", "missing"),
        stale=named("stale", "stale"),
        aggregate=_text(evidence.get("aggregate")),
        score=_text(risk.get("score")),
        band=_text(evidence.get("band")) or _text(risk.get("band")),
        qualitative_risk=_text(risk.get("qualitative_risk")),
        outcome=_text(risk.get("outcome")),
        complete=complete if isinstance(complete, bool) else None,
        note=_text(evidence.get("note")),
        red_score_parameters=[
            labels.get(name, _label(name)) for name in _strings(evidence.get("red_score_parameters"))
        ],
        thresholds=[(_label(str(k)), _text(v)) for k, v in thresholds.items()]
        if isinstance(thresholds, Mapping)
        else [],
        clinical_response=_text(evidence.get("clinical_response")),
        reference_time=_text(evidence.get("reference_time")),
        scale=_text(evidence.get("scale")),
    )


# --- problem findings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExcerptView:
    segments: list[tuple[str, bool]]  # (text, highlighted); the template escapes each part
    note_date: str
    section: str
    similarity: str
    match: str


@dataclass(frozen=True)
class ProblemBasis:
    concept_display: str
    concept_code: str
    concept_system: str
    excerpts: list[ExcerptView]
    threshold: str
    skipped: list[tuple[str, int]]
    affirmed_mentions: str
    notes_with_mentions: str
    matching: str


def highlight_segments(text: str, highlight: Any) -> list[tuple[str, bool]]:
    """``text`` cut around ``highlight`` ([start, end], character offsets) into (part, highlighted)
    pieces; the whole text unhighlighted when the offsets are not a span inside it."""
    if (
        isinstance(highlight, Sequence)
        and not isinstance(highlight, str)
        and len(highlight) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) for i in highlight)
        and 0 <= highlight[0] < highlight[1] <= len(text)
    ):
        start, end = highlight[0], highlight[1]
        pieces = [(text[:start], False), (text[start:end], True), (text[end:], False)]
        return [(part, marked) for part, marked in pieces if part]
    return [(text, False)] if text else []


def _excerpt(item: Mapping[str, Any]) -> ExcerptView:
    text = item.get("text") if isinstance(item.get("text"), str) else ""
    highlight = item.get("highlight")
    if highlight is None and "start" in item and "end" in item:
        highlight = [item.get("start"), item.get("end")]
    similarity = item.get("similarity")
    return ExcerptView(
        segments=highlight_segments(str(text), highlight),
        note_date=_text(item.get("note_date") or item.get("date")),
        section=_text(item.get("section")),
        similarity=f"{similarity:.2f}"
        if isinstance(similarity, int | float) and not isinstance(similarity, bool)
        else "",
        match=_text(item.get("match")),
    )


def _skipped(value: Any) -> list[tuple[str, int]]:
    if isinstance(value, Mapping):
        return [
            (str(kind), count)
            for kind, count in value.items()
            if isinstance(count, int) and not isinstance(count, bool) and count > 0
        ]
    counted: dict[str, int] = {}
    for item in _dicts(value):
        kind = _text(item.get("assertion") or item.get("kind") or item.get("reason")) or "other"
        counted[kind] = counted.get(kind, 0) + 1
    return list(counted.items())


def problem_basis(evidence: Mapping[str, Any]) -> ProblemBasis:
    concept = evidence.get("concept")
    concept = concept if isinstance(concept, Mapping) else {"display": _text(concept)}
    return ProblemBasis(
        concept_display=_text(concept.get("display")) or _text(concept.get("code")),
        concept_code=_text(concept.get("code")),
        concept_system=_text(concept.get("system")),
        excerpts=[_excerpt(item) for item in _dicts(evidence.get("excerpts"))],
        threshold=_text(evidence.get("threshold")),
        skipped=_skipped(evidence.get("skipped")),
        affirmed_mentions=_text(evidence.get("affirmed_mentions")),
        notes_with_mentions=_text(evidence.get("notes_with_mentions")),
        matching=_text(evidence.get("matching")),
    )


# --- the proposal, the model card, the decision ---------------------------------------------------


@dataclass(frozen=True)
class ProposedCondition:
    display: str
    system: str
    code: str
    clinical_status: str
    verification_status: str


def _first_coding(concept: Any) -> Mapping[str, Any]:
    if isinstance(concept, Mapping):
        codings = _dicts(concept.get("coding"))
        if codings:
            return codings[0]
    return {}


def proposed_condition(proposal: Any) -> ProposedCondition | None:
    if not isinstance(proposal, Mapping) or proposal.get("resourceType", "Condition") != "Condition":
        return None
    code = _mapping(proposal.get("code"))
    coding = _first_coding(code)
    return ProposedCondition(
        display=_text(code.get("text")) or _text(coding.get("display")) or _text(coding.get("code")),
        system=_text(coding.get("system")),
        code=_text(coding.get("code")),
        clinical_status=_text(_first_coding(proposal.get("clinicalStatus")).get("code")) or "active",
        verification_status=_text(_first_coding(proposal.get("verificationStatus")).get("code")),
    )


def suggestion_proposal(suggestion: Suggestion) -> ProposedCondition | None:
    """The Condition a suggestion proposes (what the sign-off form edits), if any."""
    payload = _mapping(open_json(suggestion.sealed, associated_data=suggestion.associated_data))
    return proposed_condition(payload.get("proposal"))


@dataclass(frozen=True)
class ModelCardView:
    model_id: str
    version: str
    name: str
    found: bool
    intended_use: str = ""
    intended_users: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    development: list[str] = field(default_factory=list)
    validation_summary: str = ""
    figures: list[dict[str, str]] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)


def model_card(model_id: str, version: str, name: str = "") -> ModelCardView:
    manifest = catalogue().manifest(model_id, version)
    if manifest is None:
        return ModelCardView(model_id, version, name or model_id, found=False)
    card = manifest.card
    validation = card.get("validation")
    validation = validation if isinstance(validation, Mapping) else {"summary": validation}
    return ModelCardView(
        model_id=model_id,
        version=version,
        name=manifest.name,
        found=True,
        intended_use=_text(card.get("intended_use")),
        intended_users=_strings(card.get("intended_users")),
        inputs=_strings(card.get("inputs")),
        development=_strings(card.get("development")),
        validation_summary=_text(validation.get("summary")),
        figures=[
            {key: _text(figure.get(key)) for key in ("name", "value", "source")}
            for figure in _dicts(validation.get("figures"))
        ],
        limitations=_strings(card.get("limitations")),
        references=_strings(card.get("references")),
    )


@dataclass(frozen=True)
class DecisionView:
    decision: Decision
    outcome_label: str
    reason_label: str
    comment: str  # "" unless asked for: it is free text and may name the patient
    changes: list[tuple[str, str]]
    signature_intact: bool


def decision_payload(decision: Decision) -> dict[str, Any]:
    """What the clinician signed: outcome, reason, comment, changes, the final resources, the Provenance."""
    payload: dict[str, Any] = open_json(decision.sealed, associated_data=decision.associated_data)
    return payload


def decision_signature_intact(decision: Decision, payload: Mapping[str, Any]) -> bool:
    return hashlib.sha256(canonical_json(payload)).hexdigest() == decision.signature_sha256


def _changes(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, Mapping):
        return []
    labels = {
        "code": "Condition",
        "clinical_status": "Clinical status",
        "verification_status": "Verification status",
        "onset": "Onset",
    }
    shown = []
    for key, label in labels.items():
        item = value.get(key)
        if key == "clinical_status":
            item = CLINICAL_STATUSES.get(str(item), item)
        elif key == "verification_status":
            item = VERIFICATION_STATUSES.get(str(item), item)
        if _text(item):
            shown.append((label, _text(item)))
    return shown


def decision_view(decision: Decision, *, with_comment: bool) -> DecisionView:
    payload = decision_payload(decision)
    return DecisionView(
        decision=decision,
        outcome_label=Decision.Outcome(decision.outcome).label,
        reason_label=REJECTION_REASONS.get(decision.reason_code, decision.reason_code),
        comment=_text(payload.get("comment")) if with_comment else "",
        changes=_changes(payload.get("changes")),
        signature_intact=decision_signature_intact(decision, payload),
    )


# --- one suggestion -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuggestionReview:
    suggestion: Suggestion
    summary: str
    patient_short: str
    risk: RiskBasis | None
    problem: ProblemBasis | None
    proposal: ProposedCondition | None
    model: ModelCardView
    decision: DecisionView | None
    messages: list[str]  # the run's messages ("no vital signs recorded"): never PHI


def suggestion_review(suggestion: Suggestion, *, with_comment: bool = False) -> SuggestionReview:
    """A suggestion as the review page shows it: its summary and basis, the proposal, the model's card,
    and the decision when there is one."""
    payload = _mapping(open_json(suggestion.sealed, associated_data=suggestion.associated_data))
    evidence = _mapping(payload.get("evidence"))
    model = _mapping(payload.get("model"))
    decision = Decision.objects.filter(suggestion=suggestion).first()
    run_messages = suggestion.run.messages if isinstance(suggestion.run.messages, list) else []
    return SuggestionReview(
        suggestion=suggestion,
        summary=_text(payload.get("summary")),
        patient_short=short_pseudonym(suggestion.patient_pseudonym),
        risk=risk_basis(evidence, payload.get("risk")) if suggestion.kind == "risk" else None,
        problem=problem_basis(evidence) if suggestion.kind == "problem" else None,
        proposal=proposed_condition(payload.get("proposal")),
        model=model_card(suggestion.model_id, suggestion.model_version, _text(model.get("name"))),
        decision=decision_view(decision, with_comment=with_comment) if decision else None,
        messages=[_text(m) for m in run_messages if _text(m)],
    )


# --- the condition vocabulary ---------------------------------------------------------------------


@dataclass(frozen=True)
class VocabularyConcept:
    system: str
    code: str
    display: str

    @property
    def key(self) -> str:
        return f"{self.system}|{self.code}"


def _vocabulary_path() -> Path:
    configured = getattr(settings, "REVIEW_CONDITION_VOCABULARY", None)
    return (
        Path(configured) if configured else Path(settings.BASE_DIR) / "fixtures/vocabularies/conditions.json"
    )


@cache
def _vocabulary_at(path: Path) -> tuple[VocabularyConcept, ...]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return ()
    items = data.get("concepts") if isinstance(data, Mapping) else data
    concepts: dict[str, VocabularyConcept] = {}
    for item in _dicts(items):
        system, code, display = (item.get(k) for k in ("system", "code", "display"))
        if all(isinstance(v, str) and v.strip() for v in (system, code)):
            concept = VocabularyConcept(str(system), str(code), _text(display) or str(code))
            concepts.setdefault(concept.key, concept)
    return tuple(sorted(concepts.values(), key=lambda c: c.display.lower()))


def condition_vocabulary() -> tuple[VocabularyConcept, ...]:
    """The concepts a clinician may choose for a Condition (``fixtures/vocabularies/conditions.json``, a
    list or ``{"concepts": [...]}`` of ``{system, code, display}``); empty when the file is unreadable."""
    return _vocabulary_at(_vocabulary_path())


# UCUM codes as a clinician reads them (the stored evidence keeps the codes).
_UNIT_DISPLAY = {"Cel": "°C", "[degF]": "°F", "mm[Hg]": "mmHg", "/min": "/min", "%": "%", "L/min": "L/min"}


def _display_unit(unit: str) -> str:
    return _UNIT_DISPLAY.get(unit, unit)
