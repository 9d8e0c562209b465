"""Who may see and decide what in the review UI: reading needs any role at the suggestion's organization,
deciding needs the clinician role there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clinical_ai.accounts.models import Membership, Role
from clinical_ai.review.models import Suggestion


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


def suggestion_visible(*, access: ReviewAccess, external_id: Any) -> Suggestion | None:
    """The suggestion if the user may see it (any role at its organization); None otherwise, so that
    another site's suggestions are indistinguishable from ones that do not exist."""
    return (
        Suggestion.objects.filter(external_id=external_id, organization_id__in=sorted(access.read))
        .select_related("organization", "run")
        .first()
    )
