from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from clinical_ai.core.crypto import SealedValue


class ModelDeployment(models.Model):
    """An admin's switch for one model id: on or off (the stop switch), and an optional pinned version.

    A model without a row follows its manifest's ``default_enabled`` and runs its newest version. Workers
    read this row before running and again inside the transaction that stores a run's suggestions, so
    switching a model off takes effect at once, in-flight runs included.

    ``shadow_version`` runs beside the running version on the same inputs and stores only its results
    (``ShadowRun``), never suggestions. ``previous_version`` is the version a promotion replaced: what a
    rollback pins back.
    """

    model_id = models.CharField(max_length=64, unique=True)
    enabled = models.BooleanField()
    pinned_version = models.CharField(max_length=32, blank=True)
    shadow_version = models.CharField(max_length=32, blank=True)
    previous_version = models.CharField(max_length=32, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"{self.model_id} ({state}{', pinned ' + self.pinned_version if self.pinned_version else ''})"


class InferenceRun(models.Model):
    """One model run on one patient's de-identified record: created with the de-identified copy, queued by
    id on commit, claimed by one worker through a conditional update, finished with its suggestions."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (model switched off)"

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    ingest_job = models.ForeignKey(
        "intake.IngestJob", on_delete=models.CASCADE, null=True, blank=True, related_name="inference_runs"
    )
    patient_pseudonym = models.CharField(max_length=64, db_index=True)
    model_id = models.CharField(max_length=64)
    # The version actually run, settled when the run starts (a pin changed meanwhile applies at once).
    model_version = models.CharField(max_length=32, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    input_sha256 = models.CharField(max_length=64, blank=True)
    input_resource_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    claimed_task_id = models.CharField(max_length=64, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Milliseconds: reading and opening the inputs, the model's predict for the batch, the batch size.
    timings = models.JSONField(default=dict, blank=True)
    # Input values the model used (numbers, flags; no identifiers): what drift monitoring compares.
    features = models.JSONField(default=dict, blank=True)
    messages = models.JSONField(default=list, blank=True)
    guidance_response = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["ingest_job", "model_id", "patient_pseudonym"],
                condition=models.Q(ingest_job__isnull=False),
                name="unique_inference_run_per_job_model_patient",
            )
        ]
        indexes = [
            models.Index(fields=["status", "dispatched_at"], name="inferencerun_status_dispatched"),
            models.Index(
                fields=["model_id", "model_version", "created_at"], name="inferencerun_model_created"
            ),
        ]

    def __str__(self) -> str:
        return f"InferenceRun {self.external_id} {self.model_id} {self.model_version} ({self.status})"


class RunRecord(models.Model):
    """The sealed record of one run of a declarative model: the feature vector exactly as the model received
    it, the prediction time, each value's window and source resources, and the explanation. Encrypted with the
    key ring (bound to the run by the associated data), its sha256 in the run's audit row: the result can be
    reproduced from it, and an edit shows. Written in the run's finishing transaction."""

    run = models.OneToOneField(InferenceRun, on_delete=models.CASCADE, related_name="record")
    key_id = models.CharField(max_length=32)
    nonce = models.BinaryField()
    ciphertext = models.BinaryField()
    sha256 = models.CharField(max_length=64)  # of the record's canonical JSON
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"record of run {self.run_id}"

    @property
    def associated_data(self) -> str:
        return f"inference.RunRecord:{self.run.external_id}"

    @property
    def sealed(self) -> SealedValue:
        return SealedValue(self.key_id, bytes(self.nonce), bytes(self.ciphertext))


class ShadowRun(models.Model):
    """A shadow version's run beside one active run, on the same de-identified inputs in the same batch.

    It keeps a summary of its result (finding keys, urgencies, bands, scores, features) and the same summary
    of the active run's result, for the agreement report; it never makes suggestions or FHIR outputs.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    active_run = models.ForeignKey(InferenceRun, on_delete=models.CASCADE, related_name="shadow_runs")
    model_id = models.CharField(max_length=64)
    model_version = models.CharField(max_length=32)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    input_sha256 = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # {"findings": [{"key", "kind", "urgency", "band", "score"}], "features": {...}}: no identifiers.
    result = models.JSONField(default=dict, blank=True)
    active_result = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["active_run", "model_version"], name="unique_shadow_run_per_active_run_version"
            )
        ]
        indexes = [
            models.Index(fields=["model_id", "model_version", "status"], name="shadowrun_model_version"),
        ]

    def __str__(self) -> str:
        return f"ShadowRun {self.external_id} {self.model_id} {self.model_version} ({self.status})"
