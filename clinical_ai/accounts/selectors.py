"""Who may do what, by role. Reads only; imports nothing from the stages or the audit app."""

from __future__ import annotations

from typing import Any

from clinical_ai.accounts.models import Membership, Role

AUDIT_ROLES = (Role.AUDITOR, Role.ADMIN)


def user_can_audit(user: Any) -> bool:
    """Whether ``user`` may use the audit console: a superuser, or an auditor or admin at any site."""
    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user=user, role__in=AUDIT_ROLES).exists()
