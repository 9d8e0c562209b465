"""Where a clinician goes after signing: the next suggestion waiting for them, in the queue's order."""

from __future__ import annotations

from clinical_ai.review.models import Suggestion
from clinical_ai.review.selectors.access import ReviewAccess


def next_pending(*, access: ReviewAccess, after: Suggestion) -> Suggestion | None:
    """The next pending suggestion at the sites ``access`` may decide for, as the queue orders them (most
    urgent, then oldest, first): of ``after``'s urgency while any is left, else of any urgency; None when
    nothing is pending."""
    pending = (
        Suggestion.objects.filter(organization_id__in=sorted(access.decide), status=Suggestion.Status.PENDING)
        .exclude(pk=after.pk)
        .order_by("urgency_rank", "created_at", "pk")
    )
    return pending.filter(urgency=after.urgency).first() or pending.first()
