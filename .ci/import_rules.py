#!/usr/bin/env python3
"""The project's import rules, checked from the source (run by ``make lint``; tests/unit/test_import_rules.py).

Reads every module of ``clinical_ai`` and ``integrations`` (migrations left out) and every import in it, at
any depth (imports deferred into functions count; only ``if TYPE_CHECKING:`` blocks are skipped), then checks:

1. **No import cycle** between the project's modules.
2. **Layers** (docs/architecture.md): ``core`` and ``fhir`` import nothing above them; the stages, in flow
   order intake → deid → inference → review → monitoring, never import a later stage or the pipeline (their
   edges may: tasks, views, urls, forms, selectors, admin, template tags, management commands); nothing in
   ``clinical_ai`` imports ``integrations`` except the pipeline, the demo set-up and management commands.
3. **The web side never imports the de-identification stage** (Presidio, spaCy): only ``clinical_ai.deid``
   itself, ``clinical_ai.pipeline.worker``, management commands and evaluation code import ``clinical_ai.deid``
   beyond its ``models``.
4. **Pure modules import no Django**: the engines and the other modules that are tested without a database.

Prints each violation and exits 1 when there is any. Usage: import_rules.py [REPO]
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

PACKAGES = ("clinical_ai", "integrations")
STAGES = ("intake", "deid", "inference", "review", "monitoring")
EDGE_PARTS = {"tasks", "views", "urls", "forms", "selectors", "admin", "templatetags", "management"}
# Modules that are plain Python: tested without Django, importable by any layer.
PURE = (
    "clinical_ai.fhir",
    "clinical_ai.deid.engine",
    "clinical_ai.inference.engine",
    "clinical_ai.vault.pseudonyms",
    "clinical_ai.vault.crypto",
    "clinical_ai.vault.dates",
    "clinical_ai.review.times",
    "clinical_ai.core.crypto",
    "clinical_ai.audit.chain",
    "clinical_ai.monitoring.stats",
    "clinical_ai.review.fhir_decision",
    "integrations.smart.scopes",
    "integrations.bulk.protocol",
)
CORE_MAY_IMPORT = ("clinical_ai.core", "clinical_ai.celery")


def modules(repo: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((repo / package).rglob("*.py")):
            parts = path.relative_to(repo).with_suffix("").parts
            if "migrations" in parts:
                continue
            name = ".".join(parts).removesuffix(".__init__")
            found[name] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
            ):
                skipped.update(id(sub) for child in node.body for sub in ast.walk(child))
    return skipped


def imported_names(name: str, path: Path) -> set[str]:
    """Every dotted name the module imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def project_edges(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the project modules it imports (the longest module each imported name lies in)."""
    graph: dict[str, set[str]] = {}
    for name, path in found.items():
        targets: set[str] = set()
        for imported in imported_names(name, path):
            target = imported
            while target and target not in found:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _within(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _stage_of(name: str) -> int | None:
    parts = name.split(".")
    if len(parts) > 1 and parts[0] == "clinical_ai" and parts[1] in STAGES:
        return STAGES.index(parts[1])
    return None


def _is_edge(name: str) -> bool:
    return bool(EDGE_PARTS & set(name.split(".")[2:]))


def violations(found: dict[str, Path]) -> list[str]:
    graph = project_edges(found)
    problems = [f"import cycle: {' -> '.join(component)}" for component in cycles(graph)]
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            why = _layer_rule_broken(module, target)
            if why:
                problems.append(f"{module} imports {target}: {why}")
        if _within(module, PURE):
            django = sorted(n for n in imported_names(module, found[module]) if _within(n, ("django",)))
            if django:
                problems.append(f"{module} is pure but imports {django[0]}")
    return problems


def _layer_rule_broken(module: str, target: str) -> str:
    if (
        _within(module, ("clinical_ai.core",))
        and not _is_edge(module)
        and _within(target, PACKAGES)
        and not _within(target, CORE_MAY_IMPORT)
    ):
        return "core imports nothing above it"
    if _within(module, ("clinical_ai.fhir",)) and not _within(target, ("clinical_ai.fhir",)):
        return "the FHIR package is pure and imports nothing above it"
    stage, target_stage = _stage_of(module), _stage_of(target)
    if stage is not None and not _is_edge(module):
        if target_stage is not None and target_stage > stage:
            return "a stage never imports a later stage (the pipeline hands its output over)"
        if _within(target, ("clinical_ai.pipeline",)):
            return "stages never import the pipeline"
    if (
        _within(module, ("clinical_ai",))
        and _within(target, ("integrations",))
        and not _within(module, ("clinical_ai.pipeline", "clinical_ai.demo"))
        and ".management." not in f".{module}."
    ):
        return "clinical_ai never imports integrations (integrations import the stages)"
    if (
        _within(target, ("clinical_ai.deid",))
        and target != "clinical_ai.deid.models"
        and not _within(module, ("clinical_ai.deid", "clinical_ai.pipeline.worker"))
        and ".management." not in f".{module}."
        and ".evaluation." not in f".{module}."
    ):
        return "only workers load the de-identification stage (the web side reads clinical_ai.vault)"
    return ""


def main(argv: list[str]) -> int:
    repo = Path(argv[1] if len(argv) > 1 else ".").resolve()
    found = modules(repo)
    problems = violations(found)
    for problem in problems:
        print(problem)  # noqa: T201 - a command-line check
    print(f"import rules: {len(problems)} violation(s) over {len(found)} modules")  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
