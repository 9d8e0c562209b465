"""Keyed pseudonyms and per-patient date shifts. Pure Python: nothing here imports Django.

Both sides compute them: the de-identification stage when it writes the de-identified copy, the web app
when the EHR names a patient by its own id (a CDS Hooks call, a FHIR search) and the gateway must find the
same pseudonym without opening the vault.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

MR_CODES = {"MR", "MRN"}
SHIFT_MIN_DAYS = 30
SHIFT_SPAN_DAYS = 150  # shifts are in [-180, -30] or [30, 180] days: never trivially small

# The blind index of the EHR's own patient references. A pseudonym made from a medical record number cannot
# be recomputed from the EHR's ``Patient/<id>``, and opening every vault entry to find one does not scale:
# beside each ``patient_reference`` entry the stage writes one of this kind whose ``pseudonym`` is a keyed
# HMAC of the reference. The web app computes the same HMAC from the id the EHR searches by and finds the
# patient's pseudonyms with one indexed query, without opening the vault.
PATIENT_REFERENCE_INDEX_KIND = "patient_reference_index"

# The blind index a clinician searches the review queue by: one entry per token of the patient's name
# (case-folded, accents stripped) and one for the medical record number, each a keyed HMAC like the one
# above. The web process hashes what is typed the same way; it never holds a list of names or MRNs.
PATIENT_NAME_INDEX_KIND = "patient_name_index"
PATIENT_MRN_INDEX_KIND = "patient_mrn_index"
INDEX_KINDS = frozenset({PATIENT_REFERENCE_INDEX_KIND, PATIENT_NAME_INDEX_KIND, PATIENT_MRN_INDEX_KIND})
_NAME_SEPARATORS = re.compile(r"[^\w]+|_")
_MRN_SEPARATORS = re.compile(r"[\s\-/.]+")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def patient_pseudonym(*, key: bytes, organization: str, identity: str) -> str:
    return _hmac(key, f"patient|{organization}|{identity}").hex()[:32]


def date_shift_days(*, key: bytes, pseudonym: str) -> int:
    value = int.from_bytes(_hmac(key, f"date-shift|{pseudonym}")[:4], "big")
    magnitude = SHIFT_MIN_DAYS + value % (SHIFT_SPAN_DAYS + 1)
    return -magnitude if value & 0x80000000 else magnitude


def _mrn_identifier(resource: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The first identifier with a value typed as a medical record number (v2-0203 MR)."""
    for identifier in resource.get("identifier") or []:
        if not isinstance(identifier, dict) or not identifier.get("value"):
            continue
        codes = {
            c.get("code") for c in (identifier.get("type") or {}).get("coding") or [] if isinstance(c, dict)
        }
        if codes & MR_CODES:
            return identifier
    return None


def patient_identity(resource: Mapping[str, Any], full_url: str | None) -> str:
    """The most stable name the EHR gives this patient: a medical record number, else its id."""
    identifier = _mrn_identifier(resource)
    if identifier is not None:
        return f"identifier:{identifier.get('system', '')}|{identifier['value']}"
    if resource.get("id"):
        return f"Patient/{resource['id']}"
    return f"fullUrl:{full_url or ''}"


def patient_reference_index_key(*, key: bytes, organization: str, reference: str) -> str:
    """The blind index of ``reference`` (``Patient/<id>``) in ``organization`` (its slug)."""
    return hmac.new(key, f"ref|{organization}|{reference}".encode(), hashlib.sha256).hexdigest()


def name_tokens(text: str) -> list[str]:
    """The words of a name as the index keys them: accents stripped, case-folded, split at anything that
    is not a letter or digit ("Okafor-Lindqvist" gives "okafor" and "lindqvist"); each once, in order."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return list(dict.fromkeys(token for token in _NAME_SEPARATORS.split(plain) if token))


def normalized_mrn(text: str) -> str:
    """A medical record number as the index keys it: case-folded, without spaces, dashes, dots or slashes
    (a clinician may type "4471 2290" for "4471-2290")."""
    return _MRN_SEPARATORS.sub("", text.strip().casefold())


def patient_name_index_key(*, key: bytes, organization: str, token: str) -> str:
    """The blind index of one name token (from ``name_tokens``) in ``organization`` (its slug)."""
    return hmac.new(key, f"name|{organization}|{token}".encode(), hashlib.sha256).hexdigest()


def patient_mrn_index_key(*, key: bytes, organization: str, mrn: str) -> str:
    """The blind index of a medical record number (normalized here) in ``organization`` (its slug)."""
    return hmac.new(key, f"mrn|{organization}|{normalized_mrn(mrn)}".encode(), hashlib.sha256).hexdigest()


def patient_mrn(resource: Mapping[str, Any]) -> str:
    """The patient's medical record number (the first identifier typed MR), or ""."""
    identifier = _mrn_identifier(resource)
    return str(identifier["value"]) if identifier is not None else ""
