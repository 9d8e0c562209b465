"""The hash chain, as plain Python: how an event is serialized and hashed, and how a sequence is checked.

Each event's hash covers its own fields and the previous event's hash, so editing, deleting or reordering
any event breaks every hash after it. What the chain cannot prove on its own: that nobody rewrote the whole
tail *and* the head consistently. Exporting the head hash elsewhere from time to time closes that gap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64

# Detail values are limited to JSON scalars and flat lists of them (no floats: their text form is not
# stable across databases), so a row hashes the same after a round trip through any backend.
DetailValue = str | int | bool | None | list[str | int | bool | None]
MAX_DETAIL_STRING = 256
MAX_DETAIL_KEYS = 32


class AuditDetailError(ValueError):
    """Audit detail holds something it must not (nested objects, floats, long free text)."""


def check_detail(detail: Mapping[str, Any]) -> dict[str, DetailValue]:
    if len(detail) > MAX_DETAIL_KEYS:
        raise AuditDetailError(f"audit detail has {len(detail)} keys; at most {MAX_DETAIL_KEYS}")
    checked: dict[str, DetailValue] = {}
    for key, value in detail.items():
        if not isinstance(key, str) or not key:
            raise AuditDetailError("audit detail keys must be non-empty strings")
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, float) or not (item is None or isinstance(item, str | int | bool)):
                raise AuditDetailError(f"audit detail {key!r} holds a {type(item).__name__}")
            if isinstance(item, str) and len(item) > MAX_DETAIL_STRING:
                # Long strings are where free text (and so PHI) would creep in.
                raise AuditDetailError(f"audit detail {key!r} is longer than {MAX_DETAIL_STRING} characters")
        checked[key] = value
    return checked


@dataclass(frozen=True)
class ChainFields:
    seq: int
    occurred_at: datetime
    actor_type: str
    actor_id: str
    action: str
    outcome: str
    object_type: str
    object_id: str
    organization: str
    patient_pseudonym: str
    request_id: str
    detail: Mapping[str, Any]
    prev_hash: str


def canonical_timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(fields: ChainFields) -> str:
    payload = {
        "seq": fields.seq,
        "occurred_at": canonical_timestamp(fields.occurred_at),
        "actor_type": fields.actor_type,
        "actor_id": fields.actor_id,
        "action": fields.action,
        "outcome": fields.outcome,
        "object_type": fields.object_type,
        "object_id": fields.object_id,
        "organization": fields.organization,
        "patient_pseudonym": fields.patient_pseudonym,
        "request_id": fields.request_id,
        "detail": dict(fields.detail),
        "prev_hash": fields.prev_hash,
    }
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(encoded.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_id: int | None = None
    reason: str = ""


def verify_chain(
    events: Iterable[tuple[int, ChainFields, str]],
    *,
    head_seq: int,
    head_hash: str,
) -> VerifyResult:
    """Check ``(row id, fields, stored hash)`` in ``seq`` order against each other and the chain head."""
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for row_id, fields, stored_hash in events:
        if fields.seq != expected_seq:
            return VerifyResult(
                False, checked, fields.seq, row_id, f"expected event seq {expected_seq}, found {fields.seq}"
            )
        if fields.prev_hash != prev_hash:
            return VerifyResult(False, checked, fields.seq, row_id, "previous-hash link does not match")
        if event_hash(fields) != stored_hash:
            return VerifyResult(False, checked, fields.seq, row_id, "content does not match its hash")
        prev_hash = stored_hash
        expected_seq += 1
        checked += 1
    if checked != head_seq or prev_hash != head_hash:
        return VerifyResult(
            False,
            checked,
            checked + 1 if checked < head_seq else head_seq,
            None,
            f"chain head records {head_seq} events ending {head_hash[:12]}, found {checked} ending {prev_hash[:12]}",
        )
    return VerifyResult(True, checked)
