"""Validating one FHIR R4 resource: its type, the R4B model, required codes and local references.

Never raises: whatever the JSON, and whatever the library does with it, the answer is a list of Issues.
Diagnostics never quote values from the resource (they may be PHI); the expression says where to look.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from clinical_ai.fhir import resource_types
from clinical_ai.fhir.outcome import Issue
from clinical_ai.fhir.validation_walk import resource_type_issue, walk_resource

logger = logging.getLogger(__name__)

# More than this many issues for one resource are summarised: the first ones tell the sender enough.
MAX_ISSUES_PER_RESOURCE = 50

_FHIR_NAME = re.compile(r"_?[A-Za-z][A-Za-z0-9_]*")
# loc parts pydantic or fhir_core add for unions, wrappers and model-level checks: not FHIR elements
_INTERNAL_LOC_PARTS = frozenset({"root", "str", "int", "float", "bool", "list", "dict", "none", "bytes"})
_WHITESPACE = re.compile(r"\s+")


@dataclass
class ResourceCheck:
    issues: list[Issue] = field(default_factory=list)
    references: list[tuple[str, str]] = field(default_factory=list)


def _element_name(part: str) -> str:
    """The JSON name of a pydantic field name: ``class_fhir`` -> ``class``, ``status__ext`` -> ``_status``."""
    if part == "resource_type":
        return "resourceType"
    if part.endswith("__ext"):
        return "_" + _element_name(part[: -len("__ext")])
    if part.endswith("_fhir"):
        return part[: -len("_fhir")]
    return part


def loc_to_path(loc: Sequence[int | str], data: Any, root: str) -> str:
    """A FHIRPath-like path for a pydantic error location, following the input so that parts which are
    not elements (union tags, validator names) are dropped and list indexes attach to their element."""
    path = root
    node: Any = data
    for part in loc:
        if isinstance(part, int):
            if isinstance(node, list) and 0 <= part < len(node):
                path += f"[{part}]"
                node = node[part]
            continue
        name = _element_name(part)
        if isinstance(node, dict) and name in node:
            path += f".{name}"
            node = node[name]
        elif isinstance(node, dict) and name not in _INTERNAL_LOC_PARTS and _FHIR_NAME.fullmatch(name):
            path += f".{name}"  # an element that is required but absent
            node = None
    return path


def _issue_code(error_type: str, message: str) -> str:
    if error_type.endswith("missing"):
        return "required"
    if error_type == "extra_forbidden" or error_type.endswith("_type"):
        return "structure"
    if error_type == "fhir-validation-wrong-resource-type":
        return "invalid"
    if "Any of one field value" in message:
        return "invariant"
    return "value"


def _diagnostics(error_type: str, message: str) -> str:
    if error_type == "extra_forbidden":
        return "Unknown element: not defined for this type in FHIR R4"
    if error_type.endswith("missing"):
        return "Required element is missing"
    text = _WHITESPACE.sub(" ", message).strip()
    return text if len(text) <= 300 else text[:297] + "..."


def _model_issues(error: ValidationError, data: dict[str, Any], root: str) -> list[Issue]:
    issues = []
    for detail in error.errors(include_url=False, include_input=False):
        error_type = str(detail.get("type", ""))
        message = str(detail.get("msg", ""))
        issues.append(
            Issue(
                code=_issue_code(error_type, message),
                diagnostics=_diagnostics(error_type, message),
                expression=(loc_to_path(detail.get("loc", ()), data, root),),
            )
        )
    return issues


def _unique(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    unique = []
    for issue in issues:
        key = (issue.code, issue.diagnostics, tuple(issue.expression))
        if key not in seen:
            seen.add(key)
            unique.append(issue)
    if len(unique) > MAX_ISSUES_PER_RESOURCE:
        dropped = len(unique) - MAX_ISSUES_PER_RESOURCE
        unique = unique[:MAX_ISSUES_PER_RESOURCE]
        unique.append(
            Issue(
                code="too-costly", diagnostics=f"{dropped} further issues in this resource were not reported"
            )
        )
    return unique


def _check(resource: Any, prefix: str) -> ResourceCheck:
    if not isinstance(resource, dict):
        return ResourceCheck(
            issues=[
                Issue(
                    code="structure",
                    diagnostics="A resource must be a JSON object",
                    expression=(prefix,) if prefix else (),
                )
            ]
        )
    resource_type = resource.get("resourceType")
    problem = resource_type_issue(resource_type, prefix)
    if problem is not None or not isinstance(resource_type, str):
        return ResourceCheck(issues=[problem] if problem is not None else [])
    root = prefix or resource_type
    model = resource_types.model_class(resource_type)
    walk = walk_resource(resource, model, root)
    issues: list[Issue] = []
    if not walk.nested_type_error:
        # a nested resource of an unknown type makes the library raise instead of report: skip it then
        try:
            model.model_validate(resource)
        except ValidationError as error:
            issues.extend(
                issue
                for issue in _model_issues(error, resource, root)
                if not issue.expression or issue.expression[0] not in walk.type_error_paths
            )
        except Exception as exc:
            # The library breaks on some malformed input (it parses a string where an object belongs as
            # JSON text, then trips over the result). When the walk found the malformation, that is the
            # answer; otherwise say the resource could not be validated.
            logger.warning("FHIR model validation raised %s", type(exc).__name__)
            if not walk.issues:
                issues.append(_unvalidated(prefix))
    issues.extend(walk.issues)
    return ResourceCheck(issues=_unique(issues), references=walk.references)


def _unvalidated(prefix: str) -> Issue:
    return Issue(
        code="exception",
        diagnostics="The resource could not be validated against the FHIR R4 model",
        expression=(prefix,) if prefix else (),
    )


def check_resource(resource: Any, *, expression_prefix: str = "") -> ResourceCheck:
    """Validate one resource and collect its references. Never raises."""
    try:
        return _check(resource, expression_prefix)
    except Exception as exc:  # the last line of defence: any input must give an answer, not a 500
        logger.warning("FHIR validation failed unexpectedly: %s", type(exc).__name__)
        return ResourceCheck(issues=[_unvalidated(expression_prefix)])


def validate_resource(resource: dict[str, Any], *, expression_prefix: str = "") -> list[Issue]:
    """The issues of one FHIR R4 resource; empty when it is valid. Never raises.

    Paths start with the resource type ("Patient.gender"), or with ``expression_prefix`` when given
    ("Bundle.entry[3].resource.status")."""
    return check_resource(resource, expression_prefix=expression_prefix).issues
