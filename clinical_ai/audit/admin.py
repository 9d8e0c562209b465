from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from clinical_ai.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    """Read-only: the audit log is append-only and written only by audit_record()."""

    list_display = (
        "seq",
        "occurred_at",
        "actor_type",
        "actor_id",
        "action",
        "outcome",
        "object_type",
        "object_id",
    )
    list_filter = ("action", "outcome", "actor_type")
    search_fields = ("request_id", "object_id", "actor_id", "patient_pseudonym")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
