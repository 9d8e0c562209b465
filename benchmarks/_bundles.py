"""The Synthea patient bundles the benchmarks send: one patient each, in the shared data folder."""

from __future__ import annotations

from pathlib import Path

from _harness import ROOT

DEFAULT_DATA = ROOT.parent / "shared" / "data"
SYNTHEA_DIR = "synthea_r4_ms_anonymizer_samples"
# The hospital and practitioner bundles of a Synthea export hold no patient.
NOT_PATIENT_BUNDLES = ("hospitalInformation", "practitionerInformation")


def patient_bundles(data_dir: Path) -> list[Path]:
    """The patient bundles under ``data_dir``, sorted; none when the folder is absent."""
    folder = data_dir / SYNTHEA_DIR
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob("*.json") if p.is_file() and not p.name.startswith(NOT_PATIENT_BUNDLES)
    )
