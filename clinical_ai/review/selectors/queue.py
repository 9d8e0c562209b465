"""A page of the review queue: the filters a clinician may use, the rows, and the counts by urgency."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from clinical_ai.core.crypto import DecryptionError
from clinical_ai.core.sealing import open_json
from clinical_ai.inference.registry import catalogue
from clinical_ai.review.models import Decision, Suggestion
from clinical_ai.review.selectors.access import ReviewAccess
from clinical_ai.review.selectors.patient import SHORT_PSEUDONYM, PatientHeader
from clinical_ai.review.times import local_time_text

PAGE_SIZE = 25

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


# "Cannot be scored" (too few observations: no score, no band) apart from the results that have one.
RESULT_FILTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "not_scored": ("Cannot be scored", (Suggestion.Completeness.NOT_SCORED,)),
    "scored": (
        "Scored (full or partial)",
        (Suggestion.Completeness.COMPLETE, Suggestion.Completeness.LOWER_BOUND),
    ),
}


def short_pseudonym(pseudonym: str) -> str:
    return pseudonym[:SHORT_PSEUDONYM]


@dataclass(frozen=True)
class QueueFilters:
    patient: str = ""  # a pseudonym or its first characters; for a clinician also a name or an MRN
    model_id: str = ""
    urgency: str = ""
    age: str = ""  # a key of AGE_WINDOWS
    status: str = "pending"  # a key of STATUS_FILTERS
    result: str = ""  # a key of RESULT_FILTERS: results that cannot be scored, or the others
    # The patients whose name or MRN is ``patient`` (the vault's blind index, searched by the service).
    patients_found: frozenset[str] = field(default_factory=frozenset)

    def used(self) -> list[str]:
        """The names of the filters in use (for the audit row: names, never the values typed)."""
        values = {
            "patient": self.patient,
            "model": self.model_id,
            "urgency": self.urgency,
            "age": self.age,
            "status": self.status if self.status != "pending" else "",
            "result": self.result,
        }
        return [name for name, value in values.items() if value]


@dataclass(frozen=True)
class QueueRow:
    suggestion: Suggestion
    summary: str
    patient_short: str
    decision: Decision | None
    sealed_ok: bool = True
    created_text: str = ""  # in the site's time zone: "2026-12-05 13:40 GMT"
    decided_text: str = ""
    patient: PatientHeader | None = None  # who the patient is, where the viewer may know (the service's)
    model_name: str = ""  # the model as its card names it ("NEWS2 early warning score")


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
    not_scored: int = 0  # results that cannot be scored, within the other filters


def queue_fingerprint(page: QueuePage) -> str:
    """What the page shows, in 16 hex characters: rows, statuses, urgencies, counts. The queue's refresh
    sends back the one it holds, and an unchanged page is not sent (or re-identified, or put on record)
    again."""
    state = [
        page.total,
        page.not_scored,
        page.page.number,
        page.page.paginator.num_pages,
        [(count.value, count.count) for count in page.counts],
        [
            (str(row.suggestion.external_id), row.suggestion.status, row.suggestion.urgency)
            for row in page.rows
        ],
    ]
    return hashlib.sha256(json.dumps(state).encode("utf-8")).hexdigest()[:16]


def _queue_queryset(access: ReviewAccess, filters: QueueFilters, now: datetime) -> QuerySet[Suggestion]:
    found = Suggestion.objects.filter(organization_id__in=sorted(access.read))
    statuses = STATUS_FILTERS.get(filters.status, STATUS_FILTERS["pending"])[1]
    if statuses is not None:
        found = found.filter(status__in=statuses)
    if filters.patient:
        found = found.filter(
            Q(patient_pseudonym__startswith=filters.patient)
            | Q(patient_pseudonym__in=sorted(filters.patients_found))
        )
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
    groups = base.order_by().values_list("urgency", "completeness").annotate(n=Count("pk"))
    results = RESULT_FILTERS[filters.result][1] if filters.result in RESULT_FILTERS else None
    by_urgency: dict[str, int] = {}
    not_scored = 0
    for urgency, completeness, n in groups:
        if results is None or completeness in results:
            by_urgency[urgency] = by_urgency.get(urgency, 0) + n
        if completeness == Suggestion.Completeness.NOT_SCORED and filters.urgency in ("", urgency):
            not_scored += n
    counts = [
        UrgencyCount(value, str(label), by_urgency.get(value, 0))
        for value, label in Suggestion.Urgency.choices
    ]
    found = base.filter(urgency=filters.urgency) if filters.urgency else base
    found = found.filter(completeness__in=results) if results is not None else found
    found = found.select_related("decision", "organization").order_by("urgency_rank", "created_at", "pk")
    page = Paginator(found, PAGE_SIZE).get_page(page_number)
    names = model_names()
    rows = []
    for suggestion in page.object_list:
        summary, sealed_ok = _summary(suggestion)
        decision = getattr(suggestion, "decision", None)
        zone = suggestion.organization.zone
        rows.append(
            QueueRow(
                suggestion=suggestion,
                summary=summary,
                patient_short=short_pseudonym(suggestion.patient_pseudonym),
                decision=decision,
                sealed_ok=sealed_ok,
                created_text=local_time_text(suggestion.created_at, zone),
                decided_text=local_time_text(decision.signed_at, zone) if decision else "",
                model_name=names.get(suggestion.model_id, suggestion.model_id),
            )
        )
    return QueuePage(rows=rows, page=page, counts=counts, total=page.paginator.count, not_scored=not_scored)


def model_names() -> dict[str, str]:
    """Each catalogued model's name as its newest manifest gives it, by model id: what a clinician reads
    instead of the id."""
    return {model_id: versions[0].name for model_id, versions in catalogue().models.items() if versions}


def queue_model_ids(access: ReviewAccess) -> list[str]:
    """The models a queue filter may name: those in the catalogue and those with suggestions here."""
    stored = Suggestion.objects.filter(organization_id__in=sorted(access.read)).values_list(
        "model_id", flat=True
    )
    return sorted(set(catalogue().models) | set(stored.distinct()))
