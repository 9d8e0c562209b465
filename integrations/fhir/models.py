from __future__ import annotations

import uuid

from django.db import models

from clinical_ai.core.crypto import SealedValue


class PushJob(models.Model):
    """One push of signed results to an EHR's FHIR server: a transaction Bundle, sealed, built in the web
    process when the decision was signed (references already mapped back to the EHR's ids, so the worker
    that sends it never opens the pseudonym vault). Created in the sign-off's transaction and queued by id
    on commit; claimed with a conditional UPDATE; transient failures come back as ``queued`` with a later
    ``next_attempt_at``, permanent ones end as ``failed``."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Sending"
        SUCCEEDED = "succeeded", "Sent"
        FAILED = "failed", "Failed"
        SUPERSEDED = "superseded", "Superseded by a newer push of the same resources"

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    client = models.ForeignKey("smart.EhrClient", on_delete=models.PROTECT, related_name="push_jobs")
    patient_pseudonym = models.CharField(max_length=64, blank=True)
    # "Type/id" of each resource sent (our ids, no PHI), and the sha256 of their sorted list: a newer push
    # of the same resources supersedes an older one still waiting.
    resource_keys = models.JSONField(default=list)
    resources_sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    dispatched_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # The EHR's last HTTP status and a short reason (status line or error class, never a response body).
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    key_id = models.CharField(max_length=32)
    nonce = models.BinaryField()
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="pushjob_status_due"),
            models.Index(fields=["client", "resources_sha256", "status"], name="pushjob_same_resources"),
        ]

    def __str__(self) -> str:
        return f"PushJob {self.external_id} ({self.status})"

    @property
    def associated_data(self) -> str:
        return f"fhir.PushJob:{self.external_id}"

    @property
    def sealed(self) -> SealedValue:
        return SealedValue(self.key_id, bytes(self.nonce), bytes(self.ciphertext))
