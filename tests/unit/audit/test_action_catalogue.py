"""Every audit action the code can write has its BALP codes: a new action without a mapping fails here."""

from __future__ import annotations

import ast
from pathlib import Path

from clinical_ai.audit.balp import EVENT_CODES

ROOT = Path(__file__).resolve().parents[3]


def _trees() -> list[ast.Module]:
    return [
        ast.parse(path.read_text(encoding="utf-8"))
        for package in ("clinical_ai", "integrations")
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    ]


def _written_actions() -> set[str]:
    """String literals passed as ``action=`` to ``audit_record``, directly or through a constant (module
    constants are resolved across the tree, so an imported ``PURGE_ACTION`` counts too)."""
    trees = _trees()
    constants = {
        target.id: node.value.value
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id.isupper()
    }
    actions: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "audit_record"):
                continue
            for keyword in node.keywords:
                if keyword.arg != "action":
                    continue
                if isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str):
                    actions.add(keyword.value.value)
                elif isinstance(keyword.value, ast.Name) and keyword.value.id in constants:
                    actions.add(constants[keyword.value.id])
    return actions


def test_every_written_action_has_balp_codes() -> None:
    written = _written_actions()
    assert {
        "intake.job.create",
        "deid.reidentify",
        "smart.token.issue",
        "auth.login",
        "audit.purge",
    } <= written
    missing = sorted(written - set(EVENT_CODES))
    assert not missing, f"audit actions without BALP codes in clinical_ai/audit/balp.py: {missing}"
