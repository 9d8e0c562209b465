"""FHIR OperationOutcome: the one shape every FHIR error answer takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue. ``code`` is from the FHIR IssueType value set (invalid, structure,
    required, value, code-invalid, not-supported, too-long, too-costly, security, forbidden, duplicate,
    not-found, conflict, processing, exception, informational)."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: Sequence[str] = field(default_factory=tuple)

    def as_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


class FhirError(Exception):
    """A request the server refuses, with its HTTP status and the issues to report."""

    def __init__(self, status: int, issues: Sequence[Issue]) -> None:
        super().__init__("; ".join(i.diagnostics for i in issues))
        self.status = status
        self.issues = list(issues)

    @classmethod
    def single(cls, status: int, code: str, diagnostics: str, expression: str | None = None) -> FhirError:
        return cls(
            status,
            [Issue(code=code, diagnostics=diagnostics, expression=(expression,) if expression else ())],
        )


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [issue.as_fhir() for issue in issues]}


def informational_outcome(text: str) -> dict[str, Any]:
    return operation_outcome([Issue(code="informational", diagnostics=text, severity="information")])
