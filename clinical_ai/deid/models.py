from __future__ import annotations

import uuid

from django.db import models

from clinical_ai.core.crypto import SealedValue


class DeidentifiedResource(models.Model):
    """The de-identified copy of one received entry: what inference reads, and nothing else does.

    Sealed with the key ring like the raw copy (pseudonymized data is still personal data), bound to its row.
    """

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    job = models.ForeignKey(
        "intake.IngestJob", on_delete=models.CASCADE, related_name="deidentified_resources"
    )
    raw_resource = models.OneToOneField(
        "intake.RawResource", on_delete=models.CASCADE, related_name="deidentified"
    )
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    resource_type = models.CharField(max_length=64)
    patient_pseudonym = models.CharField(max_length=64, blank=True, db_index=True)
    config_name = models.CharField(max_length=64)
    key_id = models.CharField(max_length=32)
    nonce = models.BinaryField()
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"de-identified {self.resource_type}/{self.external_id}"

    @property
    def associated_data(self) -> str:
        return f"deid.DeidentifiedResource:{self.external_id}"

    @property
    def sealed(self) -> SealedValue:
        return SealedValue(self.key_id, bytes(self.nonce), bytes(self.ciphertext))


class PseudonymVaultEntry(models.Model):
    """What a pseudonym stands for, sealed to the vault's public key: workers write entries but cannot read
    them; the web app opens them for an authorized user, and every opening is audited."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    patient_pseudonym = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=64)
    pseudonym = models.CharField(max_length=128)
    sealed_original = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "patient_pseudonym", "kind", "pseudonym"], name="unique_vault_entry"
            )
        ]

    def __str__(self) -> str:
        return f"vault {self.patient_pseudonym}/{self.kind}/{self.pseudonym}"

    @property
    def associated_data(self) -> bytes:
        return f"vault:{self.organization_id}:{self.patient_pseudonym}:{self.kind}:{self.pseudonym}".encode()
