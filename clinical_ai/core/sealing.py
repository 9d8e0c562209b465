"""Seal and open JSON documents with the configured key ring (see clinical_ai.core.crypto)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from clinical_ai.core.crypto import KeyRing, SealedValue


def keyring() -> KeyRing:
    ring: KeyRing = settings.ENCRYPTION_KEYRING
    return ring


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")


def seal_json(document: Any, *, associated_data: str) -> SealedValue:
    return keyring().seal(canonical_json(document), associated_data=associated_data.encode("utf-8"))


def open_json(sealed: SealedValue, *, associated_data: str) -> Any:
    return json.loads(keyring().open(sealed, associated_data=associated_data.encode("utf-8")))
