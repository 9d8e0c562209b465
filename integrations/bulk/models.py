"""EHR sources this gateway pulls from with FHIR Bulk Data ``$export`` as a SMART Backend Services client,
and the exports themselves (jobs are rows: claimed, leased, swept, resumed)."""

from __future__ import annotations

import uuid

from django.db import models

from clinical_ai.core.crypto import SealedValue


class EhrSource(models.Model):
    """A FHIR server of one organization that this gateway pulls from. The gateway signs its client
    assertions with its own private key (sealed here); the public half is served as a JWK Set at a stable
    URL for the EHR to register (``/bulk/sources/<external_id>/jwks.json``)."""

    class Level(models.TextChoices):
        SYSTEM = "system", "All patients ([base]/$export)"
        PATIENT = "patient", "All patients ([base]/Patient/$export)"
        GROUP = "group", "One group ([base]/Group/[id]/$export)"

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    name = models.SlugField(max_length=64, unique=True)
    fhir_base_url = models.URLField(max_length=500)
    # Blank: read from [base]/.well-known/smart-configuration at each token request.
    token_url = models.URLField(max_length=500, blank=True)
    client_id = models.CharField(max_length=200)
    key_id = models.CharField(max_length=64)
    algorithm = models.CharField(max_length=8, default="ES384")  # RS384 or ES384
    # The PEM private key, sealed with the installation's key ring (associated data binds it to this row).
    private_key_key_id = models.CharField(max_length=32)
    private_key_nonce = models.BinaryField()
    private_key_ciphertext = models.BinaryField()
    scopes = models.CharField(max_length=500, default="system/*.rs")
    level = models.CharField(max_length=16, choices=Level.choices, default=Level.SYSTEM)
    group_id = models.CharField(max_length=200, blank=True)
    resource_types = models.CharField(max_length=1000, blank=True)  # _type, comma separated; blank: all
    type_filters = models.JSONField(default=list)  # _typeFilter values
    # Hosts other than the base URL's that the manifest may name for its files (a storage service).
    file_hosts = models.JSONField(default=list)
    # Pull every N minutes (beat); 0: only when asked (``manage.py pull_source`` or the sources page).
    interval_minutes = models.PositiveIntegerField(default=0)
    enabled = models.BooleanField(default=True)
    # The transactionTime of the last export that succeeded: the next one asks for ``_since`` this.
    last_transaction_time = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(level="group") | ~models.Q(group_id=""), name="bulk_source_group_has_id"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def private_key_associated_data(self) -> str:
        return f"bulk.EhrSource.private_key:{self.external_id}"

    @property
    def private_key_sealed(self) -> SealedValue:
        return SealedValue(
            self.private_key_key_id, bytes(self.private_key_nonce), bytes(self.private_key_ciphertext)
        )


class BulkExport(models.Model):
    """One ``$export`` of a source, from kick-off to the last file ingested. A job row: claimed by one
    worker at a time with a lease it renews as it goes; a worker that dies leaves the row to the sweep,
    and the next claim resumes where the row says (status URL kept, files done skipped, a file's lines
    already ingested skipped)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Phase(models.TextChoices):
        KICKOFF = "kickoff", "Asking the EHR to start the export"
        WAITING = "waiting", "Waiting for the EHR to prepare the files"
        DOWNLOADING = "downloading", "Downloading and storing the files"
        DONE = "done", "Files stored"

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    source = models.ForeignKey(EhrSource, on_delete=models.PROTECT, related_name="exports")
    batch = models.OneToOneField(
        "intake.BulkBatch", on_delete=models.PROTECT, related_name="export", null=True, blank=True
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.KICKOFF)
    requested_by = models.CharField(max_length=200)  # "schedule" or the staff member / command that asked
    since = models.DateTimeField(null=True, blank=True)
    status_url = models.CharField(max_length=1000, blank=True)
    transaction_time = models.DateTimeField(null=True, blank=True)
    progress = models.CharField(max_length=200, blank=True)  # the EHR's X-Progress, as given
    polls = models.PositiveIntegerField(default=0)
    requires_access_token = models.BooleanField(default=True)
    # [{"url", "type", "kind": "output"|"error", "status": "pending"|"done"|"failed", "lines_done",
    #   "bytes", "error"}]: what the manifest listed, and how far each file got.
    files = models.JSONField(default=list)
    attempts = models.PositiveIntegerField(default=0)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    claimed_task_id = models.CharField(max_length=64, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "dispatched_at"], name="bulkexport_status_dispatched")]

    def __str__(self) -> str:
        return f"BulkExport {self.external_id} ({self.status})"
