"""Build a hospital's own TorchScript model and its manifest in a folder, as docs/models.md shows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch


class _Logistic(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)
        with torch.no_grad():
            # Heart rate and respiratory rate, centred on normal values: faster is riskier.
            self.linear.weight.copy_(torch.tensor([[0.05, 0.2]]))
            self.linear.bias.copy_(torch.tensor([-0.05 * 80 - 0.2 * 16 - 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(x))


def write_hospital_model(folder: Path, *, version: str = "1.0.0", default_enabled: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    module = torch.jit.script(_Logistic())
    module.save(str(folder / "model.pt"))
    digest = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    manifest: dict[str, Any] = {
        "id": "ward-deterioration",
        "version": version,
        "name": "Ward deterioration (St Elsewhere)",
        "kind": "torchscript",
        "entrypoint": "clinical_ai.inference.builtin.tabular:build",
        "default_enabled": default_enabled,
        "artifacts": [{"name": "model", "path": "model.pt", "sha256": digest}],
        "inputs": [
            {"name": "heart_rate", "resourceType": "Observation", "codes": ["http://loinc.org|8867-4"]},
            {"name": "respiratory_rate", "resourceType": "Observation", "codes": ["http://loinc.org|9279-1"]},
        ],
        "outputs": {"outcome": "unplanned ICU transfer within 24 hours"},
        "thresholds": {"warning": 0.3, "critical": 0.7},
        "parameters": {
            "features": [
                {"input": "heart_rate", "unit": "/min", "missing_value": 80},
                {"input": "respiratory_rate", "unit": "/min", "missing_value": 16},
            ]
        },
        "card": {
            "clinical_summary": "Flags adult ward patients who may need intensive care. A test model only.",
            "intended_use": "Flag adult ward patients at risk of unplanned ICU transfer.",
            "intended_users": "Ward nurses and doctors.",
            "inputs": "Latest heart rate and respiratory rate.",
            "development": "Logistic regression, written by hand for this test.",
            "validation": {"summary": "None: a test fixture.", "figures": []},
            "limitations": ["Not a real model."],
        },
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path
