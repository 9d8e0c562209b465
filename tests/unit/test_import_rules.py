"""The layer rules of docs/architecture.md hold, and the checker behind ``make lint`` can tell when they don't."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_rules", REPO / ".ci" / "import_rules.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_project_keeps_its_import_rules() -> None:
    rules = _rules()
    assert rules.violations(rules.modules(REPO)) == []


def test_a_cycle_through_a_deferred_import_is_found(tmp_path: Path) -> None:
    rules = _rules()
    _write(
        tmp_path,
        {
            "clinical_ai/__init__.py": "",
            "clinical_ai/intake/__init__.py": "",
            "clinical_ai/intake/services.py": "from clinical_ai.intake import jobs\n",
            "clinical_ai/intake/jobs.py": "def f():\n    from clinical_ai.intake.services import g\n",
            "integrations/__init__.py": "",
        },
    )
    problems = rules.violations(rules.modules(tmp_path))
    assert problems == ["import cycle: clinical_ai.intake.jobs -> clinical_ai.intake.services"]


def test_a_stage_importing_the_next_stage_or_the_pipeline_is_refused(tmp_path: Path) -> None:
    rules = _rules()
    _write(
        tmp_path,
        {
            "clinical_ai/__init__.py": "",
            "clinical_ai/pipeline/__init__.py": "",
            "clinical_ai/pipeline/worker.py": "",
            "clinical_ai/deid/__init__.py": "",
            "clinical_ai/deid/services.py": "import clinical_ai.inference.services\n",
            "clinical_ai/deid/tasks.py": "from clinical_ai.pipeline import worker\n",  # an edge: allowed
            "clinical_ai/inference/__init__.py": "",
            "clinical_ai/inference/services.py": "from clinical_ai.pipeline.worker import x\n",
            "clinical_ai/review/__init__.py": "",
            "clinical_ai/review/services.py": "from clinical_ai.deid.services import y\n",
            "clinical_ai/fhir/__init__.py": "import django\n",
            "integrations/__init__.py": "",
        },
    )
    problems = "\n".join(rules.violations(rules.modules(tmp_path)))
    assert (
        "clinical_ai.deid.services imports clinical_ai.inference.services: a stage never imports" in problems
    )
    assert "clinical_ai.inference.services imports clinical_ai.pipeline.worker: stages never" in problems
    assert "clinical_ai.review.services imports clinical_ai.deid.services: only workers" in problems
    assert "clinical_ai.fhir is pure but imports django" in problems
    assert "clinical_ai.deid.tasks" not in problems


def test_the_web_process_loads_no_de_identification_engine() -> None:
    """Every URL's view imported, as gunicorn would: Presidio, spaCy and the deid stage stay out."""
    script = (
        "import sys, django; django.setup()\n"
        "from django.urls import get_resolver\n"
        "import clinical_ai.wsgi\n"
        "def walk(patterns):\n"
        "    for p in patterns:\n"
        "        walk(getattr(p, 'url_patterns', []))\n"
        "walk(get_resolver().url_patterns)\n"
        "loaded = [m for m in ('presidio_analyzer', 'presidio_anonymizer', 'spacy', 'clinical_ai.deid.services',"
        " 'clinical_ai.deid.runtime') if m in sys.modules]\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
