"""Patients read from FHIR files for the offline commands (``run_model``, ``model_check``): each file is
de-identified with the ``inference`` configuration exactly as the pipeline does, and the de-identified
resources are grouped by patient, so a model is checked on what it will see in service. Nothing is stored.
It sits with the commands because, like them, it loads the de-identification stage, which the web side
never does."""

from __future__ import annotations

from pathlib import Path

from clinical_ai.deid.files import fhir_files, read_fhir_file
from clinical_ai.deid.services import deidentify_documents
from clinical_ai.inference.engine.types import PatientContext, SourceResource


class OfflineInputError(ValueError):
    """A file is not FHIR JSON or NDJSON."""


def patient_contexts(source: Path, *, organization: str) -> list[PatientContext]:
    """De-identify every file under ``source`` and group the de-identified resources by patient."""
    grouped: dict[str, list[SourceResource]] = {}
    for path in fhir_files(source):
        try:
            _kind, entries, _bundle = read_fhir_file(path)
        except (OSError, ValueError, KeyError) as exc:
            raise OfflineInputError(f"{path}: not a FHIR JSON or NDJSON file ({exc})") from exc
        result = deidentify_documents(entries, organization=organization, config="inference")
        for output in result.outputs:
            if output.patient_pseudonym:
                ref = f"{path.name}#{output.index}"
                grouped.setdefault(output.patient_pseudonym, []).append(SourceResource(ref, output.resource))
    return [PatientContext(patient, tuple(resources)) for patient, resources in sorted(grouped.items())]
