from __future__ import annotations

import uuid

from django.db import models

from clinical_ai.core.crypto import SealedValue


class BulkBatch(models.Model):
    """One population sent as NDJSON: a Bulk Data export pulled from an EHR source, files given to
    ``manage.py ingest_ndjson`` or a body posted by an EHR client. Its lines are split per patient into
    ``IngestJob`` rows (kind ``bulk``) that stay ``staging`` until every line is in, then run through the same
    pipeline as a pushed Bundle. The counters are the progress an admin sees; no PHI is kept here (labels
    are source names or file names, error lines give a file label, a line number and a reason)."""

    class Origin(models.TextChoices):
        EXPORT = "export", "Bulk Data export"
        FILE = "file", "NDJSON file"
        POST = "post", "NDJSON posted by an EHR client"

    class Status(models.TextChoices):
        RECEIVING = "receiving", "Receiving"
        PROCESSING = "processing", "Processing"
        SUCCEEDED = "succeeded", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="bulk_batches"
    )
    origin = models.CharField(max_length=16, choices=Origin.choices)
    label = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVING)
    request_id = models.CharField(max_length=64, blank=True)
    lines_read = models.PositiveBigIntegerField(default=0)
    resources_staged = models.PositiveBigIntegerField(default=0)
    # Same resource, same version as one already stored: not processed twice.
    duplicates_skipped = models.PositiveBigIntegerField(default=0)
    # Resources of no patient (Practitioner, Organization, Location, ...) kept to resolve references.
    references_held = models.PositiveBigIntegerField(default=0)
    lines_refused = models.PositiveBigIntegerField(default=0)
    # Resources the source said were deleted since its last pull (a Bulk Data export's ``deleted`` files).
    deletions_read = models.PositiveBigIntegerField(default=0)
    errors = models.JSONField(default=dict)  # reason -> count
    error_lines = models.JSONField(default=list)  # the first ones: {"file": label, "line": n, "reason": r}
    patients_total = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    received_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "created_at"], name="bulkbatch_org_created")]

    def __str__(self) -> str:
        return f"BulkBatch {self.external_id} ({self.status})"


class IngestJob(models.Model):
    """One accepted intake request. Created in the same transaction as its raw resources and audit row,
    queued by id on commit, claimed by exactly one worker at a time through a conditional update."""

    class Status(models.TextChoices):
        # A bulk job still receiving its patient's lines: neither dispatched nor swept until its batch is in.
        STAGING = "staging", "Receiving"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Kind(models.TextChoices):
        TRANSACTION = "transaction", "Transaction bundle"
        BATCH = "batch", "Batch bundle"
        RESOURCE = "resource", "Single resource"
        BULK = "bulk", "Bulk data, one patient"

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="ingest_jobs"
    )
    # The EHR client that pushed it; None for a bulk job (its batch says where it came from).
    client = models.ForeignKey(
        "smart.EhrClient", on_delete=models.PROTECT, related_name="ingest_jobs", null=True, blank=True
    )
    batch = models.ForeignKey(BulkBatch, on_delete=models.PROTECT, related_name="jobs", null=True, blank=True)
    # A bulk job's patient: keyed HMAC of the patient reference (never the reference itself).
    patient_key_sha256 = models.CharField(max_length=64, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    request_id = models.CharField(max_length=64, blank=True)
    # sha256 of the idempotency key (Bundle.identifier, If-None-Exist or X-Request-Id), never the key itself.
    idempotency_key_sha256 = models.CharField(max_length=64, blank=True)
    input_sha256 = models.CharField(max_length=64)
    resource_count = models.PositiveIntegerField()
    # The answer given to the EHR, replayed verbatim for a repeated request. Ids and status lines only.
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    response_location = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    # The Celery task id of the claim: a redelivery of the same message (worker killed mid-task) may take the
    # job back at once; any other message must wait for the lease to expire.
    claimed_task_id = models.CharField(max_length=64, blank=True)
    # A fresh token per claim; only the holder of the current token may finish the job.
    claim_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client", "idempotency_key_sha256"],
                condition=~models.Q(idempotency_key_sha256=""),
                name="unique_ingest_idempotency_key_per_client",
            ),
            models.UniqueConstraint(
                fields=["batch", "patient_key_sha256"],
                condition=~models.Q(patient_key_sha256=""),
                name="unique_bulk_job_per_batch_patient",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "dispatched_at"], name="ingestjob_status_dispatched"),
            # A bulk job's patient across batches (the Patient an incremental export did not resend).
            models.Index(fields=["organization", "patient_key_sha256"], name="ingestjob_org_patient"),
        ]

    def __str__(self) -> str:
        return f"IngestJob {self.external_id} ({self.status})"


class RawResource(models.Model):
    """One received Bundle entry (fullUrl, request and resource) sealed with AES-256-GCM. The plaintext
    never touches the database; the associated data binds the ciphertext to this row's id."""

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    job = models.ForeignKey(IngestJob, on_delete=models.CASCADE, related_name="raw_resources")
    entry_index = models.PositiveIntegerField()
    resource_type = models.CharField(max_length=64)
    key_id = models.CharField(max_length=32)
    nonce = models.BinaryField()
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "entry_index"], name="unique_raw_resource_entry")
        ]

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.external_id}"

    @property
    def associated_data(self) -> str:
        return f"intake.RawResource:{self.external_id}"

    @property
    def sealed(self) -> SealedValue:
        return SealedValue(self.key_id, bytes(self.nonce), bytes(self.ciphertext))


class SeenResourceVersion(models.Model):
    """A resource version the bulk intake has stored once: the same resource (type and id) with the same
    version (``meta.versionId``, else ``meta.lastUpdated``, else its content) is not processed again. Both
    keys are keyed HMACs, so the table names no patient and no resource id."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    # The batch that first stored this version: a cancelled batch forgets its versions, so that a later
    # batch takes them again.
    batch = models.ForeignKey(
        BulkBatch, on_delete=models.CASCADE, related_name="seen_versions", null=True, blank=True
    )
    resource_key_sha256 = models.CharField(max_length=64)
    version_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "resource_key_sha256", "version_sha256"], name="unique_seen_version"
            )
        ]

    def __str__(self) -> str:
        return f"SeenResourceVersion {self.resource_key_sha256[:12]}"


class HeldResource(models.Model):
    """A resource of no patient (Practitioner, PractitionerRole, Organization, Location, Medication, ...)
    kept, sealed, so that references to it, conditional ones included, can be resolved later. The newest
    version wins."""

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    resource_type = models.CharField(max_length=64)
    resource_id = models.CharField(max_length=64)
    key_id = models.CharField(max_length=32)
    nonce = models.BinaryField()
    ciphertext = models.BinaryField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "resource_type", "resource_id"], name="unique_held_resource"
            )
        ]

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"

    @property
    def associated_data(self) -> str:
        return f"intake.HeldResource:{self.external_id}"

    @property
    def sealed(self) -> SealedValue:
        return SealedValue(self.key_id, bytes(self.nonce), bytes(self.ciphertext))


class HeldIdentifier(models.Model):
    """One business identifier (system|value, keyed HMAC) of a held resource: what a conditional
    reference (``Practitioner?identifier=system|value``) is resolved by."""

    held = models.ForeignKey(HeldResource, on_delete=models.CASCADE, related_name="identifiers")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    resource_type = models.CharField(max_length=64)
    identifier_sha256 = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["held", "identifier_sha256"], name="unique_held_identifier")
        ]
        indexes = [
            models.Index(
                fields=["organization", "resource_type", "identifier_sha256"], name="heldidentifier_lookup"
            )
        ]

    def __str__(self) -> str:
        return f"HeldIdentifier {self.identifier_sha256[:12]}"
