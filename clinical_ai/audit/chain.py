"""The hash chain, as plain Python: how an event is serialized and hashed, and how a sequence is checked.

Each event's hash covers its own fields and the previous event's hash, so editing, deleting or reordering
any event breaks every hash after it. What the chain cannot prove on its own: that nobody rewrote the whole
tail *and* the head consistently. Exporting the head hash elsewhere from time to time closes that gap.

After a retention purge the chain starts later: at the first kept event, which must link to the hash of
the last removed one, as recorded by the purge's own event further on in the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
# The retention purge's own event; it alone may vouch for a chain that no longer starts at event 1.
PURGE_ACTION = "audit.purge"

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


@dataclass(frozen=True)
class _Walk:
    failure: VerifyResult | None
    checked: int
    last_seq: int
    last_hash: str
    start_vouched: bool


def _walk(events: Iterable[tuple[int, ChainFields, str]], first_seq: int, first_prev_hash: str) -> _Walk:
    expected_seq = first_seq
    prev_hash = first_prev_hash
    checked = 0
    start_vouched = first_seq == 1 and first_prev_hash == GENESIS_HASH
    for row_id, fields, stored_hash in events:
        failure = None
        if fields.seq != expected_seq:
            failure = f"expected event seq {expected_seq}, found {fields.seq}"
        elif fields.prev_hash != prev_hash:
            failure = "previous-hash link does not match"
        elif event_hash(fields) != stored_hash:
            failure = "content does not match its hash"
        if failure is not None:
            result = VerifyResult(False, checked, fields.seq, row_id, failure)
            return _Walk(result, checked, expected_seq - 1, prev_hash, start_vouched)
        if not start_vouched and _vouches_for_start(fields, first_seq, first_prev_hash):
            start_vouched = True
        prev_hash = stored_hash
        expected_seq += 1
        checked += 1
    return _Walk(None, checked, expected_seq - 1, prev_hash, start_vouched)


def verify_chain(
    events: Iterable[tuple[int, ChainFields, str]],
    *,
    head_seq: int,
    head_hash: str,
    first_seq: int = 1,
    first_prev_hash: str = GENESIS_HASH,
) -> VerifyResult:
    """Check ``(row id, fields, stored hash)`` in ``seq`` order against each other and the chain's ends.

    The chain starts at ``first_seq``, whose row must link to ``first_prev_hash`` (event 1 and the genesis
    hash until a retention purge moves the start). A moved start must be vouched for by an ``audit.purge``
    event in the kept chain that names the last removed row and its hash: moving the start is the purge's
    privilege, and the purge is always on record.
    """
    walk = _walk(events, first_seq, first_prev_hash)
    if walk.failure is not None:
        return walk.failure
    if not walk.start_vouched:
        return VerifyResult(
            False,
            walk.checked,
            first_seq,
            None,
            f"the chain starts at event {first_seq} but no {PURGE_ACTION} event records removing the events "
            f"before it",
        )
    if walk.last_seq != head_seq or walk.last_hash != head_hash:
        return VerifyResult(
            False,
            walk.checked,
            walk.last_seq + 1 if walk.last_seq < head_seq else head_seq,
            None,
            f"chain head ends at event {head_seq} ({head_hash[:12]}), the stored events end at "
            f"{walk.last_seq} ({walk.last_hash[:12]})",
        )
    return VerifyResult(True, walk.checked)


def verify_segment(
    events: Iterable[tuple[int, ChainFields, str]], *, first_seq: int, first_prev_hash: str, last_seq: int
) -> VerifyResult:
    """Check the run of events ``first_seq``..``last_seq`` from the chain's start: each present, unedited
    and linked, the first to ``first_prev_hash``. What a purge checks before removing those events, so that
    it never erases the evidence of tampering. (The start's voucher may lie beyond the segment: not checked.)"""
    walk = _walk(events, first_seq, first_prev_hash)
    if walk.failure is not None:
        return walk.failure
    if walk.last_seq != last_seq:
        return VerifyResult(
            False,
            walk.checked,
            walk.last_seq + 1,
            None,
            f"expected events up to {last_seq}, found {walk.last_seq}",
        )
    return VerifyResult(True, walk.checked)


def _vouches_for_start(fields: ChainFields, first_seq: int, first_prev_hash: str) -> bool:
    return (
        fields.action == PURGE_ACTION
        and fields.detail.get("last_removed_seq") == first_seq - 1
        and fields.detail.get("last_removed_hash") == first_prev_hash
    )
