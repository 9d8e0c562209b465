from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.checks import Error, register

from clinical_ai.vault.crypto import VaultKeyError, private_key_from_text, public_key_from_text


@register()
def vault_keys_check(app_configs: Any, **kwargs: Any) -> list[Error]:
    """The vault's public key (which workers seal to) must belong to the private key (which opens it), or
    every re-identification would fail long after the data was written."""
    try:
        public = public_key_from_text(settings.VAULT_PUBLIC_KEY)
        if not settings.VAULT_PRIVATE_KEY:
            return []
        private = private_key_from_text(settings.VAULT_PRIVATE_KEY)
    except VaultKeyError as exc:
        return [Error(str(exc), id="deid.E001")]
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    if private.public_key().public_bytes(*raw) != public.public_bytes(*raw):
        expected = base64.b64encode(private.public_key().public_bytes(*raw)).decode()
        return [
            Error(
                "CLINICAL_AI_VAULT_PUBLIC_KEY does not belong to CLINICAL_AI_VAULT_PRIVATE_KEY",
                hint=f"the private key's public key is {expected}",
                id="deid.E002",
            )
        ]
    return []
