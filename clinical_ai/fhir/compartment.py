"""Whose a resource is: the elements through which a resource names its patient, and the patient reference
a resource belongs to. Plain Python, no Django (used by the de-identification engine and the bulk intake)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Elements through which a resource says whose it is, in the order they are tried.
PATIENT_LINKS = ("subject", "patient", "beneficiary", "individual", "who", "for", "focus")

# A literal reference to a patient on the sender's server: "Patient/<id>" (FHIR id syntax), no version.
_PATIENT_REFERENCE = re.compile(r"Patient/[A-Za-z0-9\-.]{1,64}")


def linked_reference(resource: Mapping[str, Any]) -> str | None:
    """The reference of the first patient link that holds one (whatever it points at), or None."""
    for link in PATIENT_LINKS:
        value = resource.get(link)
        candidates = value if isinstance(value, list) else [value]
        for candidate in candidates:
            if isinstance(candidate, dict) and isinstance(candidate.get("reference"), str):
                return str(candidate["reference"])
    return None


def patient_reference_of(resource: Mapping[str, Any]) -> str | None:
    """``Patient/<id>`` of the patient this resource belongs to: the Patient itself, else what its first
    patient link names when that is a ``Patient/<id>`` reference; None for a resource of no patient (a
    Practitioner, an Organization, a Medication, or one whose link names a Group or a conditional query)."""
    if resource.get("resourceType") == "Patient":
        resource_id = resource.get("id")
        own = f"Patient/{resource_id}" if isinstance(resource_id, str) else ""
        return own if _PATIENT_REFERENCE.fullmatch(own) else None
    linked = linked_reference(resource)
    if linked is not None and _PATIENT_REFERENCE.fullmatch(linked):
        return linked
    return None
