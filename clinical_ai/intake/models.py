from __future__ import annotations

import uuid

from django.db import models

from clinical_ai.core.crypto import SealedValue


class IngestJob(models.Model):
    """One accepted intake request. Created in the same transaction as its raw resources and audit row,
    queued by id on commit, claimed by exactly one worker at a time through a conditional update."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Kind(models.TextChoices):
        TRANSACTION = "transaction", "Transaction bundle"
        BATCH = "batch", "Batch bundle"
        RESOURCE = "resource", "Single resource"

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="ingest_jobs"
    )
    client = models.ForeignKey("smart.EhrClient", on_delete=models.PROTECT, related_name="ingest_jobs")
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
        ]
        indexes = [models.Index(fields=["status", "dispatched_at"], name="ingestjob_status_dispatched")]

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
