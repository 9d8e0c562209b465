from __future__ import annotations

import secrets
import uuid

from django.db import models


def new_client_id() -> str:
    return f"ehr-{secrets.token_hex(12)}"


class EhrClient(models.Model):
    """A registered SMART Backend Services client (an EHR system of one organization). It authenticates
    with a JWT signed by a private key whose public half is registered here, inline or by URL."""

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    client_id = models.CharField(max_length=128, unique=True, default=new_client_id)
    name = models.CharField(max_length=200)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="ehr_clients"
    )
    # Space-separated SMART system scopes; the most a token for this client can carry.
    allowed_scopes = models.TextField()
    # A JWK Set of public keys, or (when null) the URL the client publishes its JWK Set at.
    jwks = models.JSONField(null=True, blank=True)
    jwks_url = models.URLField(max_length=500, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Optional: where signed results are pushed back (integrations.fhir.push). The EHR's FHIR base URL; with
    # a token URL this gateway authenticates there with SMART Backend Services as ``push_client_id``, signing
    # with settings.FHIR_PUSH_PRIVATE_KEY; without one it sends settings.FHIR_PUSH_BEARER_TOKEN, if any.
    push_fhir_base_url = models.URLField(max_length=500, blank=True)
    push_token_url = models.URLField(max_length=500, blank=True)
    push_client_id = models.CharField(max_length=128, blank=True)
    push_scope = models.CharField(max_length=500, blank=True, default="system/*.write")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(jwks__isnull=False) | ~models.Q(jwks_url=""),
                name="smart_ehrclient_has_keys",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"


class AccessToken(models.Model):
    """An issued bearer token. Only its SHA-256 is kept: a database leak yields no usable token."""

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    token_sha256 = models.CharField(max_length=64, unique=True)
    client = models.ForeignKey(EhrClient, on_delete=models.CASCADE, related_name="access_tokens")
    scopes = models.TextField()
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"AccessToken {self.external_id} for client {self.client_id}"


class UsedAssertion(models.Model):
    """A client assertion's jti, kept until the assertion could no longer be accepted (its exp plus the
    clock skew), so that replaying the same assertion within its lifetime is refused."""

    client = models.ForeignKey(EhrClient, on_delete=models.CASCADE, related_name="used_assertions")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "jti"], name="smart_unique_assertion_jti")]

    def __str__(self) -> str:
        return f"UsedAssertion {self.pk} of client {self.client_id}"


class SmartLaunchIssuer(models.Model):
    """An EHR that may open clinical-ai from inside a patient's record (SMART App Launch 2.x, EHR launch).

    ``iss`` is the EHR's FHIR base URL: the ``iss`` of its launch requests, and the namespace of the
    ``fhirUser`` values it sends. A launch from any other ``iss`` is refused before anything is fetched from
    it. The EHR's authorization server is found from ``{iss}/.well-known/smart-configuration``; requests go
    to the host of ``iss`` and to ``extra_hosts`` only.

    The person is found through ``accounts.ExternalIdentity(issuer=iss, subject=<the staff claim's value,
    relative: "Practitioner/123">)``. A public client (PKCE alone, no secret) is the default; a confidential
    one keeps its secret sealed with the key ring (``secret_*``), never in clear in the database.
    """

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="smart_launch_issuers"
    )
    iss = models.URLField(max_length=500, unique=True)
    client_id = models.CharField(max_length=255)
    # The claim of the id_token naming the person in the EHR ("fhirUser": SMART's, a FHIR reference).
    staff_claim = models.CharField(max_length=64, default="fhirUser")
    # Hosts besides the host of ``iss`` that the EHR's authorization server lives on (space-separated).
    extra_hosts = models.CharField(max_length=500, blank=True)
    # The client secret of a confidential client, sealed (clinical_ai.core.sealing); empty for a public one.
    secret_key_id = models.CharField(max_length=32, blank=True)
    secret_nonce = models.BinaryField(blank=True, default=b"")
    secret_ciphertext = models.BinaryField(blank=True, default=b"")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["iss"]

    def __str__(self) -> str:
        return f"SMART launch from {self.iss}"
