from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from clinical_ai.intake.models import BulkBatch, IngestJob


@admin.register(IngestJob)
class IngestJobAdmin(admin.ModelAdmin[IngestJob]):
    """Operational view of the pipeline; jobs change only through the services, so this is read-only."""

    list_display = (
        "external_id",
        "organization",
        "client",
        "batch",
        "kind",
        "status",
        "resource_count",
        "attempts",
        "created_at",
    )
    list_filter = ("status", "kind", "organization")
    search_fields = ("external_id", "request_id")
    exclude = ("idempotency_key_sha256", "claim_token", "patient_key_sha256")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: IngestJob | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: IngestJob | None = None) -> bool:
        return False


@admin.register(BulkBatch)
class BulkBatchAdmin(admin.ModelAdmin[BulkBatch]):
    """Bulk intake batches (NDJSON files, Bulk Data exports, posted NDJSON) and their counters; read-only, as
    batches change only through clinical_ai.intake.bulk."""

    list_display = (
        "external_id",
        "organization",
        "origin",
        "label",
        "status",
        "lines_read",
        "resources_staged",
        "duplicates_skipped",
        "references_held",
        "lines_refused",
        "patients_total",
        "created_at",
    )
    list_filter = ("status", "origin", "organization")
    search_fields = ("external_id", "label", "request_id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: BulkBatch | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: BulkBatch | None = None) -> bool:
        return False
