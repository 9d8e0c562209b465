"""Reads for the EHR sources page: which sources an admin may see, and each one's last export in words a
hospital admin reads (what is happening, how far it got, what was stored, skipped and refused, and why)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from clinical_ai.accounts.models import Membership, Organization, Role
from clinical_ai.core.http import url_host
from clinical_ai.intake.models import BulkBatch
from clinical_ai.intake.selectors import BatchProgress, batch_progress, batch_refresh_status
from integrations.bulk.models import BulkExport, EhrSource

RECENT_EXPORTS = 10
RECENT_BATCHES = 10


def admin_organization_ids(user: Any) -> set[int] | None:
    """The organizations whose sources ``user`` administers; None for a superuser (all of them)."""
    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return set()
    if user.is_superuser:
        return None
    return set(
        Membership.objects.filter(user=user, role=Role.ADMIN).values_list("organization_id", flat=True)
    )


def sources_visible(user: Any) -> QuerySet[EhrSource]:
    organizations = admin_organization_ids(user)
    sources = EhrSource.objects.select_related("organization").order_by("organization__name", "name")
    return sources if organizations is None else sources.filter(organization_id__in=organizations)


def source_for_admin(user: Any, source_id: str) -> EhrSource | None:
    """The source if ``user`` administers its organization (None otherwise, and for an unknown id)."""
    return sources_visible(user).filter(external_id=source_id).first()


def upload_sites(user: Any) -> list[Organization]:
    """The sites ``user`` may send an NDJSON file for: those they administer (every site for a superuser)."""
    organizations = admin_organization_ids(user)
    sites = Organization.objects.order_by("name")
    return list(sites if organizations is None else sites.filter(pk__in=organizations))


def upload_site_for_admin(user: Any, slug: str) -> Organization | None:
    """The site named ``slug`` if ``user`` administers it (None otherwise, and for an unknown slug)."""
    return next((site for site in upload_sites(user) if site.slug == slug), None)


def schedule_words(minutes: int) -> str:
    if minutes <= 0:
        return "Only when asked (Pull now, or manage.py pull_source)"
    if minutes % 1440 == 0:
        days = minutes // 1440
        return "Every day" if days == 1 else f"Every {days} days"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "Every hour" if hours == 1 else f"Every {hours} hours"
    return f"Every {minutes} minutes"


@dataclass(frozen=True)
class Bar:
    """A progress bar: ``value`` of ``maximum``, with the words that say the same for those not seeing it."""

    value: int
    maximum: int
    words: str

    @property
    def percent(self) -> int:
        return round(100 * self.value / self.maximum) if self.maximum else 0


# The bulk intake's refusal codes (clinical_ai.fhir.ndjson, clinical_ai.intake.bulk) in an admin's words.
REFUSAL_WORDS = {
    "not_json": "not readable (not JSON)",
    "not_an_object": "not a FHIR record",
    "no_resource_type": "no record type given",
    "unknown_resource_type": "a kind of record FHIR R4 does not have",
    "invalid": "not valid FHIR",
    "no_id": "no record id",
    "too_long": "a single record too large to take",
    "file_too_large": "the file was larger than allowed; the rest of it was not read",
}


def refusals_in_words(progress: BatchProgress) -> list[tuple[str, int]]:
    """Lines refused, by reason in words, most frequent first."""
    counts = [
        (REFUSAL_WORDS.get(reason, reason), count) for reason, count in progress.refused_by_reason.items()
    ]
    return sorted(counts, key=lambda item: (-item[1], item[0]))


def batch_words(progress: BatchProgress) -> str:
    """A batch's status in words for a hospital admin."""
    status = progress.status
    if status == BulkBatch.Status.RECEIVING:
        return "Receiving records"
    if status == BulkBatch.Status.PROCESSING:
        finished = progress.patients_done + progress.patients_failed
        return f"Preparing the patients' records: {finished:,} of {progress.patients_total:,} done"
    if status == BulkBatch.Status.SUCCEEDED:
        return "Done"
    if status == BulkBatch.Status.FAILED:
        return (
            f"Done, but {progress.patients_failed:,} of {progress.patients_total:,} patients could not be "
            "prepared"
        )
    return f"Cancelled: {progress.error}" if progress.error else "Cancelled"


def rate_words(progress: BatchProgress) -> str:
    """How fast records came in and patients were prepared, in words ("" before there is a figure)."""
    parts = []
    if progress.resources_per_second:
        records = f"{progress.resources_per_second:,.0f}"
        parts.append(f"{records} {'record' if records == '1' else 'records'} a second received")
    if progress.patients_per_second:
        parts.append(f"{progress.patients_per_second:,.1f} patients a second prepared")
    return "; ".join(parts)


@dataclass(frozen=True)
class ExportView:
    export: BulkExport
    status_words: str
    bar: Bar | None
    progress: BatchProgress | None
    failed: bool
    running: bool

    @property
    def rate(self) -> str:
        return rate_words(self.progress) if self.progress is not None else ""

    @property
    def refusals(self) -> list[tuple[str, int]]:
        return refusals_in_words(self.progress) if self.progress is not None else []

    @property
    def started_at(self) -> datetime:
        return self.export.created_at


def _download_bar(export: BulkExport) -> Bar | None:
    files = [f for f in export.files or [] if f.get("kind") == "output"]
    if not files:
        return None
    done = sum(1 for f in files if f.get("status") == "done")
    counts = [f.get("count") for f in files]
    lines = sum(int(f.get("lines_done") or 0) for f in files)
    if all(isinstance(c, int) for c in counts) and sum(counts):
        expected = sum(int(c) for c in counts)
        return Bar(min(lines, expected), expected, f"{lines:,} of {expected:,} records received")
    return Bar(done, len(files), f"{done} of {len(files)} files received")


def export_view(export: BulkExport) -> ExportView:
    """The export in words, with its bar: the download while it runs, then the patients de-identified."""
    batch = export.batch
    progress: BatchProgress | None = None
    if batch is not None:
        if batch.status == BulkBatch.Status.PROCESSING:
            batch_refresh_status(batch)
        progress = batch_progress(batch)
    status, phase = export.status, export.phase
    bar: Bar | None = None
    if status == BulkExport.Status.QUEUED:
        words = "Waiting for a worker to start it" if not export.status_url else "Waiting to go on"
    elif status == BulkExport.Status.RUNNING and phase == BulkExport.Phase.KICKOFF:
        words = "Asking the EHR to start the export"
    elif status == BulkExport.Status.RUNNING and phase == BulkExport.Phase.WAITING:
        words = "The EHR is preparing the files"
        if export.progress:
            words += f" (it says: {export.progress})"
    elif status == BulkExport.Status.RUNNING:
        words = "Receiving and storing the files"
        bar = _download_bar(export)
    elif status == BulkExport.Status.FAILED:
        words = f"Failed: {export.error}" if export.error else "Failed"
    elif status == BulkExport.Status.CANCELLED:
        words = export.error or "Cancelled"  # "Cancelled: <the reason given>"
    elif progress is not None:
        words = batch_words(progress)
        if progress.status == BulkBatch.Status.PROCESSING:
            words = "Files stored. " + words
    else:
        words = "Done"
    if (
        bar is None
        and progress is not None
        and progress.patients_total
        and status == BulkExport.Status.SUCCEEDED
    ):
        bar = Bar(
            progress.patients_done,
            progress.patients_total,
            f"{progress.patients_done:,} of {progress.patients_total:,} patients prepared",
        )
    return ExportView(
        export=export,
        status_words=words,
        bar=bar,
        progress=progress,
        failed=status == BulkExport.Status.FAILED,
        running=status in (BulkExport.Status.QUEUED, BulkExport.Status.RUNNING),
    )


@dataclass(frozen=True)
class SourceView:
    source: EhrSource
    fhir_host: str
    schedule: str
    last: ExportView | None

    @property
    def what(self) -> str:
        """What the source's export asks for, in words."""
        levels: dict[str, str] = {
            EhrSource.Level.SYSTEM: "All patients",
            EhrSource.Level.PATIENT: "All patients",
            EhrSource.Level.GROUP: f"The patients of group {self.source.group_id}",
        }
        level = levels.get(self.source.level, self.source.level)
        types = [t for t in self.source.resource_types.split(",") if t]
        return f"{level}: {', '.join(types)}" if types else f"{level}, every kind of record"


@dataclass(frozen=True)
class BatchView:
    batch: BulkBatch
    progress: BatchProgress

    @property
    def words(self) -> str:
        return batch_words(self.progress)


@dataclass(frozen=True)
class SourcesPage:
    sources: list[SourceView]
    exports: list[ExportView]
    batches: list[BatchView]
    upload_sites: list[Organization]


def sources_page(user: Any) -> SourcesPage:
    """Everything the sources page shows to ``user``, limited to the organizations they administer."""
    sources = list(sources_visible(user))
    views: list[SourceView] = []
    for source in sources:
        last = source.exports.select_related("batch", "source").order_by("-created_at").first()
        views.append(
            SourceView(
                source=source,
                fhir_host=url_host(source.fhir_base_url),
                schedule=schedule_words(source.interval_minutes),
                last=export_view(last) if last is not None else None,
            )
        )
    exports = [
        export_view(export)
        for export in BulkExport.objects.filter(source__in=sources)
        .select_related("source", "batch")
        .order_by("-created_at")[:RECENT_EXPORTS]
    ]
    organizations = admin_organization_ids(user)
    batches = BulkBatch.objects.select_related("organization").order_by("-created_at")
    if organizations is not None:
        batches = batches.filter(organization_id__in=organizations)
    batch_views = []
    for batch in batches[:RECENT_BATCHES]:
        if batch.status == BulkBatch.Status.PROCESSING:
            batch_refresh_status(batch)
        batch_views.append(BatchView(batch=batch, progress=batch_progress(batch)))
    return SourcesPage(sources=views, exports=exports, batches=batch_views, upload_sites=upload_sites(user))
