"""System checks of the audit configuration (``manage.py check`` and every command that runs checks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error

from clinical_ai.audit.retention import DEFAULT_RETENTION_DAYS, retention_problem


def check_retention(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    problem = retention_problem(getattr(settings, "AUDIT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS))
    if problem is None:
        return []
    return [Error(problem, id="audit.E001")]
