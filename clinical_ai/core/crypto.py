"""Authenticated encryption of PHI at rest (AES-256-GCM) with named keys so keys can rotate.

Each stored value keeps the id of the key that sealed it beside the ciphertext. New values are sealed with
the active key (the first of the key ring); older keys stay in the ring to open what they sealed
(``manage.py reseal_raw_resources`` re-seals some tables, not all: docs/operations.md, "Keys"). The associated data binds a ciphertext to the row it
belongs to, so a ciphertext copied into another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
NONCE_BYTES = 12


class KeyRingError(ValueError):
    """The key ring configuration is malformed."""


class DecryptionError(ValueError):
    """A value could not be opened: unknown key id, wrong key, or tampered ciphertext."""


@dataclass(frozen=True)
class SealedValue:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class KeyRing:
    def __init__(self, keys: dict[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise KeyRingError(f"active key {active_key_id!r} is not in the key ring")
        for key_id, key in keys.items():
            if not _KEY_ID.match(key_id):
                raise KeyRingError(f"key id {key_id!r} must be 1-32 characters of A-Z a-z 0-9 _ . -")
            if len(key) != 32:
                raise KeyRingError(f"key {key_id!r} must be 32 bytes (AES-256), got {len(key)}")
        self._keys = dict(keys)
        self.active_key_id = active_key_id

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        """Parse ``"kid1:<base64 32 bytes>,kid0:<base64>"``; the first key is the active one."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            if not sep:
                raise KeyRingError("each key must be written as <key id>:<base64 key>")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise KeyRingError(f"key {key_id!r} is not valid base64") from exc
            if key_id in keys:
                raise KeyRingError(f"key id {key_id!r} appears twice")
            keys[key_id.strip()] = key
            order.append(key_id.strip())
        if not order:
            raise KeyRingError("the key ring is empty")
        return cls(keys, order[0])

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def seal(self, plaintext: bytes, *, associated_data: bytes) -> SealedValue:
        nonce = os.urandom(NONCE_BYTES)
        aead = AESGCM(self._keys[self.active_key_id])
        return SealedValue(self.active_key_id, nonce, aead.encrypt(nonce, plaintext, associated_data))

    def open(self, sealed: SealedValue, *, associated_data: bytes) -> bytes:
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise DecryptionError(f"key {sealed.key_id!r} is not in the key ring")
        try:
            return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, associated_data)
        except InvalidTag as exc:
            raise DecryptionError("ciphertext failed authentication") from exc


def generate_key_spec(key_id: str) -> str:
    """A fresh key ring entry, for ``manage.py generate_keys`` and the demo."""
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode('ascii')}"
