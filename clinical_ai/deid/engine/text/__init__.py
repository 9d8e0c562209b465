"""Free-text de-identification: Presidio over a hash-verified spaCy model, clinical recognizers and the
patient's own identifiers. See :class:`PresidioTextScrubber`.

Names are exported lazily: importing Presidio pulls in torch and takes seconds, which code that only
needs :func:`patient_identifiers_from_fhir` should not pay at import time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clinical_ai.deid.engine.text.nlp import ModelIntegrityError, get_analyzer, get_pipeline
    from clinical_ai.deid.engine.text.patient_terms import PatientTermMatcher, patient_identifiers_from_fhir
    from clinical_ai.deid.engine.text.scrubber import PresidioTextScrubber

_EXPORTS = {
    "ModelIntegrityError": "nlp",
    "get_analyzer": "nlp",
    "get_pipeline": "nlp",
    "PatientTermMatcher": "patient_terms",
    "patient_identifiers_from_fhir": "patient_terms",
    "PresidioTextScrubber": "scrubber",
}

__all__ = [
    "ModelIntegrityError",
    "PatientTermMatcher",
    "PresidioTextScrubber",
    "get_analyzer",
    "get_pipeline",
    "patient_identifiers_from_fhir",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
