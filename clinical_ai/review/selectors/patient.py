"""Who a patient is, as the review pages show it, from what the vault opened for the viewer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from clinical_ai.review.times import age_in_years

SHORT_PSEUDONYM = 10
_SEX = {"female": "Female", "male": "Male", "other": "Other", "unknown": "Unknown"}


@dataclass(frozen=True)
class PatientHeader:
    """Who the patient is, as the review pages show it: re-identified for a clinician of the patient's
    site, the pseudonym for everyone else (and where the vault holds nothing for this patient)."""

    pseudonym: str
    reidentified: bool = False
    name: str = ""
    birth_date: str = ""
    reference: str = ""  # the EHR's Patient id or medical record number
    mrn: str = ""
    sex: str = ""  # as a person reads it: "Female"
    age: int | None = None  # whole years today, in the site's time zone
    ward: str = ""
    bed: str = ""
    room: str = ""

    @property
    def place(self) -> str:
        """Where the patient is, as the EHR's current Encounter says: "Ward 7B, bed 12" ("" if unsaid)."""
        spot = (f"bed {self.bed}" if self.bed else "") or (f"room {self.room}" if self.room else "")
        if (self.bed or self.room).casefold().startswith(("bed", "room")):
            spot = self.bed or self.room  # the EHR's own name says what it is: "Bed 12"
        return ", ".join(part for part in (self.ward, spot) if part)

    @property
    def short(self) -> str:
        return self.pseudonym[:SHORT_PSEUDONYM]


def patient_header(pseudonym: str, originals: dict[str, list[str]], today: date) -> PatientHeader:
    """The header of a patient from what the vault opened (``{kind: [originals]}``); the pseudonym
    alone when it opened nothing."""

    def first(kind: str) -> str:
        return next(iter(originals.get(kind, [])), "")

    birth_date = first("birth_date")
    return PatientHeader(
        pseudonym=pseudonym,
        reidentified=bool(originals),
        name=first("patient_name"),
        birth_date=birth_date,
        reference=first("patient_reference") or first("patient_identity"),
        mrn=first("patient_mrn"),
        sex=_SEX.get(first("administrative_sex"), first("administrative_sex").capitalize()),
        age=age_in_years(birth_date, today) if birth_date else None,
        ward=first("ward"),
        bed=first("bed"),
        room=first("room"),
    )
