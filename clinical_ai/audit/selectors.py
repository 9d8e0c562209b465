"""Reading the audit log: verification, search, one event, one patient's timeline, what a purge would take."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from clinical_ai.audit.actors import actors_find
from clinical_ai.audit.chain import GENESIS_HASH, ChainFields, VerifyResult, verify_chain
from clinical_ai.audit.filters import AuditFilters
from clinical_ai.audit.models import AuditChainHead, AuditEvent
from clinical_ai.audit.retention import audit_retention_days

PAGE_SIZE = 50
# A patient's timeline shows at most this many events (its own plus those sharing their jobs or requests).
TIMELINE_LIMIT = 2000


def chain_fields(event: AuditEvent) -> ChainFields:
    return ChainFields(
        seq=event.seq,
        occurred_at=event.occurred_at,
        actor_type=event.actor_type,
        actor_id=event.actor_id,
        action=event.action,
        outcome=event.outcome,
        object_type=event.object_type,
        object_id=event.object_id,
        organization=event.organization,
        patient_pseudonym=event.patient_pseudonym,
        request_id=event.request_id,
        detail=event.detail,
        prev_hash=event.prev_hash,
    )


def chain_rows(*, up_to_seq: int | None = None) -> Iterator[tuple[int, ChainFields, str]]:
    """``(row id, chain fields, stored hash)`` in sequence order, as ``chain.verify_*`` take them."""
    events = AuditEvent.objects.order_by("seq")
    if up_to_seq is not None:
        events = events.filter(seq__lte=up_to_seq)
    for event in events.iterator(chunk_size=2000):
        yield event.pk, chain_fields(event), event.hash


def audit_chain_verify() -> VerifyResult:
    """Verify the whole stored chain against the head, read in one consistent snapshot of head and rows (so
    that events appended meanwhile are not taken for rows missing from the head)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            # Must be the transaction's first statement; inside a caller's transaction we read what it sees.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        head = AuditChainHead.objects.filter(pk=1).first()
        if head is None:
            return verify_chain(chain_rows(), head_seq=0, head_hash=GENESIS_HASH)
        return verify_chain(
            chain_rows(),
            head_seq=head.last_seq,
            head_hash=head.last_hash,
            first_seq=head.first_seq,
            first_prev_hash=head.first_prev_hash,
        )


def audit_events_filter(filters: AuditFilters) -> QuerySet[AuditEvent]:
    """The events that match every filter in use, in no particular order."""
    query = Q()
    if filters.occurred_from is not None:
        query &= Q(occurred_at__gte=filters.occurred_from)
    if filters.occurred_before is not None:
        query &= Q(occurred_at__lt=filters.occurred_before)
    exact = {
        "actor_type": filters.actor_type,
        "actor_id": filters.actor_id,
        "action": filters.action,
        "outcome": filters.outcome,
        "object_type": filters.object_type,
        "object_id": filters.object_id,
        "request_id": filters.request_id,
        "organization": filters.organization,
    }
    for field, value in exact.items():
        if value:
            query &= Q(**{field: value})
    if filters.actors_in is not None:
        actors = Q(pk__in=[])
        for actor_type, actor_id in sorted(filters.actors_in):
            actors |= Q(actor_type=actor_type, actor_id=actor_id)
        query &= actors
    if filters.patient_pseudonym:
        query &= _naming_patient(filters.patient_pseudonym)
    if filters.patient_prefix:
        query &= Q(patient_pseudonym__startswith=filters.patient_prefix)
    if filters.action_prefix:
        query &= Q(action__startswith=filters.action_prefix)
    if filters.actions_in is not None:
        query &= Q(action__in=sorted(filters.actions_in))
    if filters.actions_excluded:
        query &= ~Q(action__in=sorted(filters.actions_excluded))
    if filters.entity:
        query &= Q(object_id=filters.entity) | Q(request_id=filters.entity)
    return AuditEvent.objects.filter(query)


def audit_filters_by_actor(filters: AuditFilters, *, who: str) -> AuditFilters | None:
    """``filters`` narrowed to the actors that ``who`` (a username, a registered name or a recorded id)
    means; None when it means nobody, for the caller to say so. At most three queries."""
    if not who:
        return filters
    found = actors_find(who, actor_type=filters.actor_type)
    if not found:
        return None
    return replace(filters, actors_in=frozenset(found))


@dataclass(frozen=True)
class EventPage:
    """One page of events, newest first, found by sequence number (keyset paging: constant cost however
    long the log, and pages do not shift as events are appended)."""

    events: list[AuditEvent]
    newer_than: int | None  # pass as ``after`` for the page of newer events; None when there is none
    older_than: int | None  # pass as ``before`` for the page of older events; None when there is none


def audit_events_page(
    filters: AuditFilters, *, before: int | None = None, after: int | None = None, size: int = PAGE_SIZE
) -> EventPage:
    """At most ``size`` matching events, newest first: the newest of all, those just older than seq
    ``before``, or those just newer than seq ``after``. One query."""
    matching = audit_events_filter(filters)
    if after is not None:
        rows = list(matching.filter(seq__gt=after).order_by("seq")[: size + 1])
        more_newer = len(rows) > size
        events = list(reversed(rows[:size]))
        more_older = True  # we came from there
    else:
        if before is not None:
            matching = matching.filter(seq__lt=before)
        rows = list(matching.order_by("-seq")[: size + 1])
        more_older = len(rows) > size
        events = rows[:size]
        more_newer = before is not None
    return EventPage(
        events=events,
        newer_than=events[0].seq if events and more_newer else None,
        older_than=events[-1].seq if events and more_older else None,
    )


@dataclass(frozen=True)
class EventWithNeighbours:
    event: AuditEvent
    previous_seq: int | None
    next_seq: int | None


def audit_event_get(*, seq: int) -> EventWithNeighbours | None:
    event = AuditEvent.objects.filter(seq=seq).first()
    if event is None:
        return None
    around = set(AuditEvent.objects.filter(seq__in=[seq - 1, seq + 1]).values_list("seq", flat=True))
    return EventWithNeighbours(
        event=event,
        previous_seq=seq - 1 if seq - 1 in around else None,
        next_seq=seq + 1 if seq + 1 in around else None,
    )


@dataclass(frozen=True)
class TimelineGroup:
    """Events of one request (or a single event without a request id), in sequence order."""

    request_id: str
    events: list[AuditEvent]


@dataclass(frozen=True)
class PatientTimeline:
    patient_pseudonym: str
    groups: list[TimelineGroup]
    event_count: int
    truncated: bool


def _naming_patient(patient_pseudonym: str) -> Q:
    """The events about one patient: those that name them, and those about a page of several patients
    that list them in ``detail["patients"]`` (a review queue page re-identified: one row for the page).
    The list is matched as JSON text, quotes included, so that one pseudonym never matches inside another."""
    listed = (
        AuditEvent.objects.filter(patient_pseudonym="")
        .annotate(detail_text=Cast("detail", TextField()))
        .filter(detail_text__contains=f'"{patient_pseudonym}"')
        .values("pk")
    )
    return Q(patient_pseudonym=patient_pseudonym) | Q(pk__in=listed)


def audit_patient_timeline(*, patient_pseudonym: str, limit: int = TIMELINE_LIMIT) -> PatientTimeline:
    """Everything that happened to one patient's data, in order: the events that name the patient, plus
    the events that share their object (the ingest job a de-identification ran on) or their request id
    (the intake request that brought the data in). One hop only: jobs and requests of those are not
    followed further. Three queries."""
    naming = _naming_patient(patient_pseudonym)
    own = AuditEvent.objects.filter(naming)
    keys = list(own.values_list("object_id", "request_id")[:limit])
    object_ids = sorted({object_id for object_id, _ in keys if object_id})
    request_ids = sorted({request_id for _, request_id in keys if request_id})
    related = naming
    if object_ids:
        related |= Q(object_id__in=object_ids)
    if request_ids:
        related |= Q(request_id__in=request_ids)
    events = list(AuditEvent.objects.filter(related).order_by("seq")[: limit + 1]) if keys else []
    truncated = len(events) > limit
    events = events[:limit]
    groups: list[TimelineGroup] = []
    by_request: dict[str, TimelineGroup] = {}
    for event in events:
        if event.request_id and event.request_id in by_request:
            by_request[event.request_id].events.append(event)
            continue
        group = TimelineGroup(request_id=event.request_id, events=[event])
        groups.append(group)
        if event.request_id:
            by_request[event.request_id] = group
    return PatientTimeline(
        patient_pseudonym=patient_pseudonym, groups=groups, event_count=len(events), truncated=truncated
    )


def audit_patient_known(*, patient_pseudonym: str) -> bool:
    return AuditEvent.objects.filter(_naming_patient(patient_pseudonym)).exists()


@dataclass(frozen=True)
class PurgePlan:
    """What a purge at ``now`` would remove: the events ``first_seq``..``last_seq`` (``count`` of them), the
    longest run from the start of the chain whose events are all older than ``cutoff``."""

    now: datetime
    retention_days: int
    cutoff: datetime
    count: int
    first_seq: int | None
    last_seq: int | None


def audit_purge_plan(*, now: datetime | None = None) -> PurgePlan:
    """Events older than the retention period, from the start of the chain up to (not including) the first
    event that is still young. Stopping there keeps the chain one unbroken run even if the clock ever
    stepped back. Raises ``RetentionConfigurationError`` for a retention below the floor."""
    now = now or timezone.now()
    retention_days = audit_retention_days()
    cutoff = now - timedelta(days=retention_days)
    first_young = (
        AuditEvent.objects.filter(occurred_at__gte=cutoff)
        .order_by("seq")
        .values_list("seq", flat=True)
        .first()
    )
    old = AuditEvent.objects.all() if first_young is None else AuditEvent.objects.filter(seq__lt=first_young)
    span = old.aggregate(count=Count("pk"), first=Min("seq"), last=Max("seq"))
    return PurgePlan(
        now=now,
        retention_days=retention_days,
        cutoff=cutoff,
        count=span["count"],
        first_seq=span["first"],
        last_seq=span["last"],
    )
