"""Evaluation labels: the entity types of gold data and of detectors, mapped onto one small set.

Datasets and detectors name the same thing differently (presidio-research's ``ADDRESS``, our
``STREET_ADDRESS``, Presidio's ``DATE_TIME``, the note generator's ``MRN``), so both sides are mapped onto
the labels below before spans are compared. Identifiers of every kind (record, account, plan, device, SSN,
licence and card numbers) share the one label ``ID``: what matters is that the number is caught, and the
detectors disagree on which kind of number a bare value is. Places and organisations are *compatible*
(a hospital is an ``ORG`` or a ``FAC`` to spaCy, a ``FACILITY`` to our recognizer).
"""

from __future__ import annotations

from collections.abc import Mapping

PERSON = "PERSON"
LOCATION = "LOCATION"
ORGANIZATION = "ORGANIZATION"
DATE = "DATE"
AGE_OVER_89 = "AGE_OVER_89"
PHONE = "PHONE"
EMAIL = "EMAIL"
URL = "URL"
IP_ADDRESS = "IP_ADDRESS"
ID = "ID"
OTHER = "OTHER"  # a predicted type that names no identifier (Presidio's NRP): counted against precision

LABELS = (PERSON, LOCATION, ORGANIZATION, DATE, AGE_OVER_89, PHONE, EMAIL, URL, IP_ADDRESS, ID, OTHER)

# Gold types of presidio-research's synthetic sentences. TITLE ("Mr.", "Dr.") is not an identifier and is
# dropped, like every type missing here.
RESEARCH_GOLD: Mapping[str, str] = {
    "PERSON": PERSON,
    "ADDRESS": LOCATION,
    "LOCATION": LOCATION,
    "GPE": LOCATION,
    "ORGANIZATION": ORGANIZATION,
    "DATE_TIME": DATE,
    "PHONE_NUMBER": PHONE,
    "EMAIL_ADDRESS": EMAIL,
    "DOMAIN_NAME": URL,
    "URL": URL,
    "IP_ADDRESS": IP_ADDRESS,
    "US_SSN": ID,
    "CREDIT_CARD": ID,
    "US_DRIVER_LICENSE": ID,
    "US_PASSPORT": ID,
    "US_BANK_NUMBER": ID,
    "IBAN_CODE": ID,
}

# Gold types of the generated clinical notes: the template placeholders.
CLINICAL_GOLD: Mapping[str, str] = {
    "PERSON": PERSON,
    "ADDRESS": LOCATION,
    "FACILITY": ORGANIZATION,
    "DATE": DATE,
    "AGE_OVER_89": AGE_OVER_89,
    "PHONE": PHONE,
    "FAX": PHONE,
    "EMAIL": EMAIL,
    "URL": URL,
    "IP": IP_ADDRESS,
    "MRN": ID,
    "ACCOUNT": ID,
    "HEALTH_PLAN_ID": ID,
    "DEVICE_ID": ID,
}

# Gold types of the general-text set (general_text.py): an address comes as its parts, so each can be scored.
GENERAL_GOLD: Mapping[str, str] = {
    "PERSON": PERSON,
    "STREET_ADDRESS": LOCATION,
    "CITY": LOCATION,
    "ZIP_CODE": LOCATION,
    "ORGANIZATION": ORGANIZATION,
    "DATE_TIME": DATE,
    "AGE_OVER_89": AGE_OVER_89,
    "PHONE_NUMBER": PHONE,
    "EMAIL_ADDRESS": EMAIL,
    "URL": URL,
    "IP_ADDRESS": IP_ADDRESS,
    "CREDIT_CARD": ID,
    "US_SSN": ID,
    "IBAN_CODE": ID,
    "US_DRIVER_LICENSE": ID,
}

# Entity types our scrubber and Presidio's built-ins report.
PREDICTED: Mapping[str, str] = {
    "PERSON": PERSON,
    "LOCATION": LOCATION,
    "STREET_ADDRESS": LOCATION,
    "POSTAL_CODE": LOCATION,
    "ORGANIZATION": ORGANIZATION,
    "FACILITY": ORGANIZATION,
    "DATE": DATE,
    "DATE_TIME": DATE,
    "AGE_OVER_89": AGE_OVER_89,
    "PHONE_NUMBER": PHONE,
    "FAX_NUMBER": PHONE,
    "EMAIL_ADDRESS": EMAIL,
    "URL": URL,
    "IP_ADDRESS": IP_ADDRESS,
    "MEDICAL_RECORD_NUMBER": ID,
    "ACCOUNT_NUMBER": ID,
    "HEALTH_PLAN_ID": ID,
    "DEVICE_ID": ID,
    "ID": ID,
    "US_SSN": ID,
    "US_ITIN": ID,
    "US_PASSPORT": ID,
    "US_DRIVER_LICENSE": ID,
    "US_BANK_NUMBER": ID,
    "US_MBI": ID,
    "US_HEALTH_INSURANCE_MEMBER_ID": ID,
    "CREDIT_CARD": ID,
    "IBAN_CODE": ID,
    "UK_NHS": ID,
    "MEDICAL_LICENSE": ID,
    "CRYPTO": ID,
    "UUID": ID,
    "MAC_ADDRESS": ID,
}

_COMPATIBLE = frozenset({(LOCATION, ORGANIZATION), (ORGANIZATION, LOCATION)})


def predicted_label(entity_type: str) -> str:
    """The evaluation label of a detector's entity type (``OTHER`` when it names no identifier)."""
    return PREDICTED.get(entity_type, OTHER)


def compatible(predicted: str, gold: str) -> bool:
    """Whether a prediction labelled ``predicted`` counts as finding a gold span labelled ``gold``."""
    return predicted == gold or (predicted, gold) in _COMPATIBLE
