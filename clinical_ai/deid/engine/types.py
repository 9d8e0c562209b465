"""Contracts shared by the de-identification engine's parts. Pure Python: nothing here imports Django.

- The structured rules engine (``rules.py``) walks FHIR JSON with FHIRPath rules and applies methods.
- The free-text scrubber (``text/``) removes identifiers from strings with Presidio plus the patient's own
  identifiers; the rules engine hands it every string a ``scrub`` rule selects, all at once, so it can batch.
- Pseudonyms that could be mapped back are reported to a ``PseudonymSink``; the Django layer seals them
  into the vault. The engine never stores anything itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

TextKind = Literal["plain", "xhtml"]
# What the scrubber does with a date in free text: shift it by ``date_shift_days`` (pseudonymised data that
# keeps intervals), or keep only its year, as Safe Harbor does (the rules engine sets this when the
# configuration reduces structured dates to the year).
FreeTextDates = Literal["shift", "year"]


@dataclass(frozen=True)
class TextItem:
    """One piece of free text to scrub. ``xhtml`` is a FHIR Narrative div: only its text nodes change."""

    text: str
    kind: TextKind = "plain"


@dataclass(frozen=True)
class PatientIdentifiers:
    """What the structured record says identifies this patient; scrubbed from their free text even where
    NER misses it. Strings as written in the record; the scrubber derives variants (initials, formats)."""

    names: Sequence[str] = ()  # full names as written, e.g. "Margaret Okafor-Lindqvist"
    given_names: Sequence[str] = ()
    family_names: Sequence[str] = ()
    identifiers: Sequence[str] = ()  # MRN, SSN, insurance, driver's licence ... values
    phones: Sequence[str] = ()
    emails: Sequence[str] = ()
    address_parts: Sequence[str] = ()  # lines, city, district, postal code
    birth_date: str | None = None  # ISO yyyy-mm-dd (or yyyy / yyyy-mm) as in Patient.birthDate
    other: Sequence[str] = ()  # contacts' names, etc.


@dataclass(frozen=True)
class PatientContext:
    """The patient a resource belongs to, as far as de-identification needs to know."""

    pseudonym: str  # keyed-HMAC pseudonym of the patient, stable across jobs
    date_shift_days: int  # the same offset for every date of this patient, structured and in text
    identifiers: PatientIdentifiers = field(default_factory=PatientIdentifiers)
    free_text_dates: FreeTextDates = "shift"


class TextScrubber(Protocol):
    def scrub_texts(self, items: Sequence[TextItem], *, patient: PatientContext | None) -> list[str]:
        """Return each item's text with identifiers replaced (same order, same length of list)."""
        ...


class PseudonymSink(Protocol):
    def record(self, *, kind: str, pseudonym: str, original: str) -> None:
        """A pseudonym (or hash) stands for ``original``; ``kind`` names what it is (name, identifier, ...)."""
        ...


class NullSink:
    """For offline use and tests: pseudonyms are not kept."""

    def record(self, *, kind: str, pseudonym: str, original: str) -> None:
        return None
