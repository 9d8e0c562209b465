"""How long audit events are kept.

``AUDIT_RETENTION_DAYS`` (default 183) may be raised but not lowered below 183 days: the EU AI Act
(Art. 19 and 26(6)) requires the automatically generated logs of high-risk AI systems to be kept for at
least six months. A lower value is a configuration error, refused at start-up (system check ``audit.E001``)
and again by the purge itself, which never deletes on the strength of a bad setting.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

RETENTION_FLOOR_DAYS = 183
DEFAULT_RETENTION_DAYS = RETENTION_FLOOR_DAYS


class RetentionConfigurationError(ImproperlyConfigured):
    """``AUDIT_RETENTION_DAYS`` is not an integer of at least 183."""


def retention_problem(value: object) -> str | None:
    """Why ``value`` cannot be the retention period, or None when it can."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"AUDIT_RETENTION_DAYS must be a whole number of days, got {value!r}"
    if value < RETENTION_FLOOR_DAYS:
        return (
            f"AUDIT_RETENTION_DAYS={value} is below the floor of {RETENTION_FLOOR_DAYS} days: logs of high-risk "
            f"AI systems must be kept for at least six months (EU AI Act Art. 19, 26(6)); raise it to "
            f"{RETENTION_FLOOR_DAYS} or more"
        )
    return None


def audit_retention_days() -> int:
    """The configured retention period; raises ``RetentionConfigurationError`` when it is not allowed."""
    value = getattr(settings, "AUDIT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
    problem = retention_problem(value)
    if problem is not None:
        raise RetentionConfigurationError(problem)
    assert isinstance(value, int)
    return value
