"""On the 11 Synthea patients, the full pipeline (inference configuration) leaves none of the patient's known
identifiers anywhere in its output, notes included."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinical_ai.deid.engine.pipeline import EntryInput, PipelineResult
from clinical_ai.deid.evaluation.leaks import PIPELINE_ANYWHERE, PIPELINE_NOTES, SYNTHEA_DIR, patient_bundles
from clinical_ai.deid.evaluation.runner import evaluate_leaks
from clinical_ai.deid.services import deidentify_documents

pytestmark = pytest.mark.shared_data


def deidentify(entries: list[EntryInput]) -> PipelineResult:
    return deidentify_documents(entries, organization="deid-eval-test", config="inference")


def test_the_pipeline_leaves_no_known_identifier(shared_data: Path) -> None:
    bundles = patient_bundles(shared_data / SYNTHEA_DIR)
    assert len(bundles) == 11
    evaluation = evaluate_leaks(bundles, deidentify=deidentify, redactors={})
    assert evaluation.columns == [PIPELINE_ANYWHERE, PIPELINE_NOTES]
    for patient in evaluation.patients:
        # the search finds the identifiers in the input: the zero below is not a search that finds nothing
        assert len(patient.named_in_input) >= 10, patient.bundle
        assert sum(patient.named_in_notes.values()) >= patient.notes > 0, patient.bundle
        assert dict(patient.survivors[PIPELINE_ANYWHERE]) == {}, patient.bundle
        assert dict(patient.survivors[PIPELINE_NOTES]) == {}, patient.bundle
    assert sum(patient.notes for patient in evaluation.patients) == 481
