from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from clinical_ai.intake.models import IngestJob


@admin.register(IngestJob)
class IngestJobAdmin(admin.ModelAdmin[IngestJob]):
    """Operational view of the pipeline; jobs change only through the services, so this is read-only."""

    list_display = (
        "external_id",
        "organization",
        "client",
        "kind",
        "status",
        "resource_count",
        "attempts",
        "created_at",
    )
    list_filter = ("status", "kind", "organization")
    search_fields = ("external_id", "request_id")
    exclude = ("idempotency_key_sha256", "claim_token")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: IngestJob | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: IngestJob | None = None) -> bool:
        return False
