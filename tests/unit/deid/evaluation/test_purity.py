"""The evaluation package is plain Python: importing it needs neither Django nor (outside ``detectors``)
Presidio, spaCy or torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
MODULES = ("labels", "metrics", "note_values", "notes", "datasets", "leaks", "runner", "report")

# ``clinical_ai/__init__.py`` starts Celery (and so Django settings); stand-in parent packages let the
# evaluation be imported on its own, as the engine's purity test does.
_PROGRAM = """
import importlib, json, sys, types
from pathlib import Path
root = Path({root!r})
for name, folder in (("clinical_ai", root / "clinical_ai"), ("clinical_ai.deid", root / "clinical_ai" / "deid")):
    package = types.ModuleType(name)
    package.__path__ = [str(folder)]
    sys.modules[name] = package
for module in {modules!r}:
    importlib.import_module("clinical_ai.deid.evaluation." + module)
heavy = ("django", "celery", "presidio_analyzer", "presidio_anonymizer", "spacy", "torch")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_evaluation_modules_import_nothing_heavy() -> None:
    program = _PROGRAM.format(root=str(REPO), modules=list(MODULES))
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
