"""CDS Hooks: the EHRs allowed to call (issuers of the JWTs), the JWT ids already seen, the cards handed out
and the feedback received on them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class CdsIssuer(models.Model):
    """An EHR allowed to call the CDS services: the ``iss`` of its JWTs and where its public keys are.

    Keys come from the inline JWK Set, else the configured ``jwks_url``; a JWT whose header names a ``jku``
    is verified with the set at that URL only when the URL is in ``allowed_jku``. Data the EHR sends is
    ingested as the SMART client ``ehr_client`` (the intake stage keeps jobs per client); feedback from its
    users is signed as ``feedback_user``, a service account that cannot sign in."""

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    iss = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=200)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    ehr_client = models.ForeignKey("smart.EhrClient", on_delete=models.PROTECT, related_name="cds_issuers")
    feedback_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    jwks = models.JSONField(null=True, blank=True)
    jwks_url = models.URLField(max_length=500, blank=True)
    allowed_jku = models.JSONField(default=list, blank=True)
    # fhirServer base URLs this gateway may fetch from with the access token the EHR hands over.
    fhir_servers = models.JSONField(default=list, blank=True)
    # The base the JWT's aud must start with, e.g. https://cds.example.org/cds-services (blank: settings).
    service_base_url = models.URLField(max_length=500, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.iss})"


class UsedJwt(models.Model):
    """A JWT id seen from an issuer, kept until the token could no longer be accepted, so that a replay
    within its lifetime is refused."""

    issuer = models.ForeignKey(CdsIssuer, on_delete=models.CASCADE, related_name="used_jwts")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "jti"], name="cds_unique_jwt_jti")]

    def __str__(self) -> str:
        return f"UsedJwt {self.pk} of issuer {self.issuer_id}"


class IssuedCard(models.Model):
    """A card handed to an issuer: maps the card's uuid (uuid5 of issuer and suggestion) back to the
    suggestion, so that feedback can be recorded against it, and only by the EHR that was shown it."""

    card_uuid = models.UUIDField(unique=True)
    issuer = models.ForeignKey(CdsIssuer, on_delete=models.CASCADE, related_name="issued_cards")
    suggestion = models.ForeignKey("review.Suggestion", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"IssuedCard {self.card_uuid}"


class CardFeedback(models.Model):
    """One feedback entry (accepted / overridden) on a card; one per card and outcome, so a repeated
    feedback POST changes nothing."""

    class Result(models.TextChoices):
        DECIDED = "decided", "Recorded as the suggestion's decision"
        ALREADY_DECIDED = "already-decided", "The suggestion was no longer pending"

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    card = models.ForeignKey(IssuedCard, on_delete=models.PROTECT, related_name="feedback")
    outcome = models.CharField(max_length=16)
    accepted_suggestions = models.JSONField(default=list, blank=True)
    override_reason_code = models.CharField(max_length=64, blank=True)
    outcome_timestamp = models.DateTimeField()
    result = models.CharField(max_length=16, choices=Result.choices)
    decision = models.ForeignKey(
        "review.Decision", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["card", "outcome"], name="cds_unique_feedback_per_outcome")
        ]

    def __str__(self) -> str:
        return f"CardFeedback {self.external_id} {self.outcome}"
