from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from clinical_ai.core.crypto import SealedValue


class Suggestion(models.Model):
    """One finding of one model run, waiting for (or carrying) a named clinician's decision.

    What the clinician reviews (summary, evidence, the proposed resource and the FHIR resources of the
    finding) is sealed like the de-identified copy it came from; the fields the queue filters and orders on
    are in the clear and hold no identifiers.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending review"
        ACCEPTED = "accepted", "Accepted"
        MODIFIED = "modified", "Accepted with changes"
        REJECTED = "rejected", "Rejected"
        SUPERSEDED = "superseded", "Superseded by a newer run"
        WITHDRAWN = "withdrawn", "Withdrawn (model switched off)"

    class Urgency(models.TextChoices):
        CRITICAL = "critical", "Critical"
        WARNING = "warning", "Warning"
        INFO = "info", "Info"

    class Completeness(models.TextChoices):
        """Whether the model had what it needs (``clinical_ai.inference.engine.types.Completeness``)."""

        COMPLETE = "complete", "Scored"
        LOWER_BOUND = "lower_bound", "Incomplete data"
        NOT_SCORED = "not_scored", "Cannot be scored"

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    run = models.ForeignKey("inference.InferenceRun", on_delete=models.PROTECT, related_name="suggestions")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    patient_pseudonym = models.CharField(max_length=64, db_index=True)
    model_id = models.CharField(max_length=64)
    model_version = models.CharField(max_length=32)
    finding_key = models.CharField(max_length=128)
    kind = models.CharField(max_length=16)
    urgency = models.CharField(max_length=16, choices=Urgency.choices)
    # 0 is the most urgent: the queue orders by it without a CASE expression.
    urgency_rank = models.PositiveSmallIntegerField()
    score = models.FloatField(null=True, blank=True)
    # In the clear so the queue can count and filter results that cannot be scored; no identifier.
    completeness = models.CharField(
        max_length=16, choices=Completeness.choices, default=Completeness.COMPLETE
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    key_id = models.CharField(max_length=32)
    nonce = models.BinaryField()
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "finding_key"], name="unique_suggestion_per_run_finding")
        ]
        indexes = [
            models.Index(
                fields=["organization", "status", "urgency_rank", "created_at"], name="suggestion_queue"
            ),
            models.Index(fields=["model_id", "model_version", "status"], name="suggestion_model_status"),
        ]

    def __str__(self) -> str:
        return f"Suggestion {self.external_id} {self.model_id} {self.finding_key} ({self.status})"

    @property
    def associated_data(self) -> str:
        return f"review.Suggestion:{self.external_id}"

    @property
    def sealed(self) -> SealedValue:
        return SealedValue(self.key_id, bytes(self.nonce), bytes(self.ciphertext))


class OutputResource(models.Model):
    """A FHIR resource this gateway produced for the EHR (GuidanceResponse, RiskAssessment, DetectedIssue,
    RequestGroup, Condition, Provenance, Device), as it stands now: what ``GET /fhir/{type}/{id}`` and
    searches serve. Stored with pseudonymous references; the web app maps them back to the EHR's ids when
    serving. A decision replaces a resource's body (new ``version``), never its id."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    patient_pseudonym = models.CharField(max_length=64, blank=True, db_index=True)
    resource_type = models.CharField(max_length=64)
    resource_id = models.CharField(max_length=64)
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=32, blank=True)
    suggestion = models.ForeignKey(
        Suggestion, on_delete=models.PROTECT, null=True, blank=True, related_name="output_resources"
    )
    run = models.ForeignKey(
        "inference.InferenceRun", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    key_id = models.CharField(max_length=32)
    nonce = models.BinaryField()
    ciphertext = models.BinaryField()
    last_updated = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "resource_type", "resource_id"], name="unique_output_resource"
            )
        ]
        indexes = [
            models.Index(
                fields=["organization", "resource_type", "patient_pseudonym", "last_updated"],
                name="output_resource_search",
            )
        ]

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.resource_id} v{self.version}"

    @property
    def associated_data(self) -> str:
        return f"review.OutputResource:{self.organization_id}:{self.resource_type}/{self.resource_id}"

    @property
    def sealed(self) -> SealedValue:
        return SealedValue(self.key_id, bytes(self.nonce), bytes(self.ciphertext))


class Decision(models.Model):
    """A named clinician's signed decision on one suggestion: immutable once written.

    One per suggestion (the one-to-one is the database's guard against a second decision; the service also
    locks the suggestion row). There is no update path: the service only inserts, and a database trigger
    (migration 0002) refuses any UPDATE of a row. What was signed (comment, changes, the final FHIR
    resources and their Provenance) is sealed like a suggestion's payload; ``signature_sha256`` is the
    sha256 of the canonical JSON of that signed content, so an edit of the sealed payload is detectable.
    The free-text comment lives only in the sealed payload: it may name the patient.
    """

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        MODIFIED = "modified", "Accepted with changes"
        REJECTED = "rejected", "Rejected"

    class SignatureMethod(models.TextChoices):
        """How the signer was authenticated at the moment of signing (``fhir_decision.SIGNATURE_METHODS``)."""

        PASSWORD = "password", "Password typed when signing"
        OIDC_STEP_UP = "oidc-step-up", "Signed in again with the hospital login"
        CDS_HOOKS_FEEDBACK = "cds-hooks-feedback", "Accepted in the EHR (the EHR vouched for the user)"

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    suggestion = models.OneToOneField(Suggestion, on_delete=models.PROTECT, related_name="decision")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    clinician = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # The name shown and signed at the time: a later change of the user's name does not rewrite history.
    clinician_display = models.CharField(max_length=200)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason_code = models.CharField(max_length=64, blank=True)
    key_id = models.CharField(max_length=32)
    nonce = models.BinaryField()
    ciphertext = models.BinaryField()
    signed_at = models.DateTimeField()
    signature_sha256 = models.CharField(max_length=64)
    # No default: every signing path says how it authenticated the signer (rows before migration 0004 were
    # all signed with a password, and say so).
    signature_method = models.CharField(max_length=32, choices=SignatureMethod.choices)
    # When the signer proved who they were: the password check, the identity provider's auth_time, the
    # EHR's JWT check. Empty for decisions signed before migration 0004 (password, at ``signed_at``).
    authenticated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # A rejection carries a coded reason; an acceptance carries none.
            models.CheckConstraint(
                condition=(
                    (models.Q(outcome="rejected") & ~models.Q(reason_code=""))
                    | (models.Q(outcome__in=["accepted", "modified"]) & models.Q(reason_code=""))
                ),
                name="decision_reason_matches_outcome",
            ),
        ]
        indexes = [models.Index(fields=["organization", "signed_at"], name="decision_org_signed")]

    def __str__(self) -> str:
        return f"Decision {self.external_id} {self.outcome} on suggestion {self.suggestion_id}"

    @property
    def associated_data(self) -> str:
        return f"review.Decision:{self.external_id}"

    @property
    def sealed(self) -> SealedValue:
        return SealedValue(self.key_id, bytes(self.nonce), bytes(self.ciphertext))
