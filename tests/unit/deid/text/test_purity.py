"""The text scrubber is a pure engine: nothing in it imports Django or Celery."""

from __future__ import annotations

import ast
from pathlib import Path

TEXT = Path(__file__).resolve().parents[4] / "clinical_ai" / "deid" / "engine" / "text"


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_django_or_celery_in_the_text_engine() -> None:
    modules = sorted(TEXT.glob("*.py"))
    assert len(modules) >= 8
    for module in modules:
        assert not imported_roots(module) & {"django", "celery", "kombu", "rest_framework"}, module.name
