"""Sealing to a public key, so workers can write the pseudonym vault but never read it.

Workers hold only the vault's X25519 *public* key: values are sealed under an ephemeral key pair
(ECDH → HKDF-SHA256 → AES-256-GCM), one pair per de-identification job (``VaultSealer``) and a fresh random
nonce per value. Only the web app, which holds the private key, can open it, and it does
so only for an authorized user, audited. Pure Python; nothing here imports Django.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"clinical-ai pseudonym vault v1"
_RAW = serialization.Encoding.Raw
_PUBLIC_RAW = serialization.PublicFormat.Raw


class VaultKeyError(ValueError):
    """A vault key is missing or malformed."""


class VaultOpenError(ValueError):
    """A sealed value does not open with this private key (wrong key or tampered)."""


def _derive(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + ephemeral_public + recipient_public
    ).derive(shared)


def public_key_from_text(text: str) -> X25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return X25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise VaultKeyError("the vault public key must be 32 bytes of X25519, base64") from exc


def private_key_from_text(text: str) -> X25519PrivateKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return X25519PrivateKey.from_private_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise VaultKeyError("the vault private key must be 32 bytes of X25519, base64") from exc


def generate_vault_keys() -> tuple[str, str]:
    """(private, public), base64, for ``manage.py generate_keys`` and the demo."""
    private = X25519PrivateKey.generate()
    private_raw = private.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public_raw = private.public_key().public_bytes(_RAW, _PUBLIC_RAW)
    return base64.b64encode(private_raw).decode(), base64.b64encode(public_raw).decode()


class VaultSealer:
    """Seals values to one recipient under one ephemeral key pair: the key agreement and derivation are
    done once, each value then gets its own random 96-bit nonce (one job seals thousands of values; a fresh
    key pair for each cost more than the rest of the sealing together). The output is the format
    ``seal_to`` writes and ``open_with`` reads. Values sealed by one sealer can be told apart as sealed
    together (they share the ephemeral public key); they belong to one job, which the vault rows say anyway.
    Keep a sealer for one job's values: far fewer than the 2**32 messages one AES-GCM key may take with
    random nonces."""

    def __init__(self, recipient: X25519PublicKey) -> None:
        ephemeral = X25519PrivateKey.generate()
        self._ephemeral_public = ephemeral.public_key().public_bytes(_RAW, _PUBLIC_RAW)
        key = _derive(
            ephemeral.exchange(recipient), self._ephemeral_public, recipient.public_bytes(_RAW, _PUBLIC_RAW)
        )
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, *, associated_data: bytes) -> bytes:
        nonce = os.urandom(12)
        return self._ephemeral_public + nonce + self._aead.encrypt(nonce, plaintext, associated_data)


def seal_to(recipient: X25519PublicKey, plaintext: bytes, *, associated_data: bytes) -> bytes:
    """One value under a fresh ephemeral key pair."""
    return VaultSealer(recipient).seal(plaintext, associated_data=associated_data)


def open_with(private: X25519PrivateKey, sealed: bytes, *, associated_data: bytes) -> bytes:
    if len(sealed) < 32 + 12 + 16:
        raise VaultOpenError("sealed value is too short")
    ephemeral_public, nonce, ciphertext = sealed[:32], sealed[32:44], sealed[44:]
    recipient_public = private.public_key().public_bytes(_RAW, _PUBLIC_RAW)
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        return AESGCM(_derive(shared, ephemeral_public, recipient_public)).decrypt(
            nonce, ciphertext, associated_data
        )
    except (InvalidTag, ValueError) as exc:
        raise VaultOpenError("sealed value does not open with this key") from exc
