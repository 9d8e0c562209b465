"""The structured engine is pure Python: it imports nothing from Django (or Celery)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[4] / "clinical_ai" / "deid" / "engine"
STRUCTURED_MODULES = [
    "config",
    "dates",
    "fhir_types",
    "fhirpath",
    "fhirpath_functions",
    "fhirpath_operators",
    "fhirpath_values",
    "methods",
    "nodes",
    "rules",
    "scrub",
    "substitute",
    "types",
]
ALLOWED_THIRD_PARTY = {"antlr4", "cryptography", "fhir", "fhirpathpy"}

# ``clinical_ai/__init__.py`` starts Celery (and so Django settings); the engine must not need it.
# Stand-in parent packages let the engine be imported on its own, as a worker-free library would.
_PROGRAM = """
import importlib, json, sys, types
from pathlib import Path
root = Path({root!r})
for name, folder in (("clinical_ai", root / "clinical_ai"), ("clinical_ai.deid", root / "clinical_ai" / "deid")):
    package = types.ModuleType(name)
    package.__path__ = [str(folder)]
    sys.modules[name] = package
for module in {modules!r}:
    importlib.import_module("clinical_ai.deid.engine." + module)
from clinical_ai.deid.engine.rules import StructuredAnonymizer
out = StructuredAnonymizer({{"fhirPathRules": [{{"path": "Resource.id", "method": "cryptoHash"}}]}}).anonymize(
    {{"resourceType": "Patient", "id": "x"}}
)
assert out["id"] != "x"
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("django", "celery", "kombu"))))
"""


def test_engine_imports_and_runs_without_django() -> None:
    program = _PROGRAM.format(root=str(ENGINE.parents[2]), modules=STRUCTURED_MODULES)
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_engine_sources_import_only_the_standard_library_and_known_packages() -> None:
    stdlib = set(sys.stdlib_module_names)
    for name in STRUCTURED_MODULES:
        tree = ast.parse((ENGINE / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.startswith("clinical_ai.deid.engine"):
                    continue
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in stdlib or root in ALLOWED_THIRD_PARTY or root == "__future__", (
                    f"{name}.py imports {root}"
                )
