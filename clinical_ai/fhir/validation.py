"""FHIR R4 intake validation: the pure core behind the FHIR endpoints (no Django here).

- ``parse_json_body``: request bytes -> JSON object, or FhirError 415 / 413 / 400;
- ``validate_resource``: one resource -> issues (type, R4B model, required codes, local references);
- ``check_intake_bundle``: a transaction or batch Bundle for ``POST /fhir`` -> per-entry and
  whole-bundle issues, or FhirError 422 / 413 for a bundle this endpoint does not take at all.

Views turn FhirError and issues into an OperationOutcome (``outcome.operation_outcome``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from clinical_ai.fhir import resource_types
from clinical_ai.fhir.outcome import FhirError, Issue
from clinical_ai.fhir.validation_body import Limits, parse_json_body
from clinical_ai.fhir.validation_resource import check_resource, validate_resource

__all__ = [
    "BundleCheck",
    "EntryResult",
    "Limits",
    "check_intake_bundle",
    "parse_json_body",
    "supported_resource_types",
    "validate_resource",
]

INTAKE_BUNDLE_TYPES = frozenset({"transaction", "batch"})
ACCEPTED_METHODS = frozenset({"POST", "PUT"})
REFUSED_METHODS = frozenset({"GET", "HEAD", "DELETE", "PATCH"})
BUNDLE_LOCAL_PREFIXES = ("urn:uuid:", "urn:oid:")

_ENTRY_PATH = re.compile(r"Bundle\.entry\[(\d+)\]")


def supported_resource_types() -> frozenset[str]:
    """The FHIR R4 4.0.1 resource types that can be validated here (those the R4B models describe)."""
    return resource_types.R4B_SUPPORTED_RESOURCE_TYPES


@dataclass(frozen=True)
class EntryResult:
    index: int
    resource_type: str | None  # entry.resource.resourceType when it names an R4 resource type
    full_url: str | None
    method: str | None  # entry.request.method as sent (POST / PUT when acceptable)
    issues: list[Issue]


@dataclass(frozen=True)
class BundleCheck:
    bundle_type: str  # "transaction" or "batch"
    entries: list[EntryResult]
    bundle_issues: list[Issue]  # problems with the bundle as a whole

    @property
    def ok(self) -> bool:
        """No issue anywhere. A transaction is refused as a whole unless ``ok``; a batch is not."""
        return not self.bundle_issues and all(not entry.issues for entry in self.entries)

    @property
    def issues(self) -> list[Issue]:
        """Every issue, the bundle's own first, then the entries' in order."""
        return [*self.bundle_issues, *(issue for entry in self.entries for issue in entry.issues)]


def _issue(code: str, diagnostics: str, expression: str) -> Issue:
    return Issue(code=code, diagnostics=diagnostics, expression=(expression,))


def _bundle_shell(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Bundle with each entry's resource left out: those are validated one by one, with their own
    paths, instead of a second time inside the whole Bundle model."""
    shell = dict(bundle)
    entries = bundle.get("entry")
    if isinstance(entries, list):
        shell["entry"] = [
            {key: value for key, value in entry.items() if key != "resource"}
            if isinstance(entry, dict)
            else entry
            for entry in entries
        ]
    return shell


def _request_url_issues(
    method: str, url: str, resource: dict[str, Any], resource_type: str, path: str
) -> list[Issue]:
    """request.url must name the entry's own resource type (and for an update, its id)."""
    if "://" in url:
        return []  # an absolute URL: whether it is this server is for the caller to judge
    target, _, query = url.partition("?")
    segments = target.strip("/").split("/")
    url_path = f"{path}.request.url"
    if any(segment.startswith("$") for segment in segments):
        return [_issue("not-supported", "Operations ($name) are not accepted in an intake Bundle", url_path)]
    if segments[0] != resource_type:
        return [_issue("invalid", "request.url names another resource type than entry.resource", url_path)]
    if method == "POST" and len(segments) != 1:
        return [_issue("invalid", "A POST entry's request.url must be the resource type", url_path)]
    if method == "PUT" and not query:
        if len(segments) != 2 or not segments[1]:
            return [
                _issue(
                    "invalid", "A PUT entry's request.url must be [type]/[id] or [type]?[search]", url_path
                )
            ]
        if resource.get("id") != segments[1]:
            return [
                _issue("invalid", "entry.resource.id must equal the id in request.url", f"{path}.resource.id")
            ]
    return []


def _full_url_issue(full_url: str, path: str) -> Issue | None:
    if full_url.startswith("urn:uuid:"):
        try:
            uuid.UUID(full_url[len("urn:uuid:") :])
        except ValueError:
            return _issue("value", "fullUrl urn:uuid: must be followed by a UUID", f"{path}.fullUrl")
    return None


def check_intake_bundle(bundle: dict[str, Any], *, limits: Limits) -> BundleCheck:
    """Check a transaction or batch Bundle posted to the system endpoint.

    Raises FhirError 422 when it is not a transaction or batch Bundle and 413 when it has too many
    entries; everything else is reported as issues, per entry where an entry is at fault."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError.single(
            422,
            "not-supported",
            "This endpoint accepts a Bundle of type transaction or batch",
            "resourceType",
        )
    bundle_type = bundle.get("type")
    if not isinstance(bundle_type, str) or bundle_type not in INTAKE_BUNDLE_TYPES:
        raise FhirError.single(
            422, "not-supported", "Bundle.type must be transaction or batch", "Bundle.type"
        )
    raw_entries = bundle.get("entry", [])
    entries: list[Any] = raw_entries if isinstance(raw_entries, list) else []
    if len(entries) > limits.max_bundle_entries:
        raise FhirError.single(
            413, "too-costly", f"The Bundle has more than {limits.max_bundle_entries} entries", "Bundle.entry"
        )

    bundle_issues: list[Issue] = []
    entry_issues: list[list[Issue]] = [[] for _ in entries]
    for issue in check_resource(_bundle_shell(bundle), expression_prefix="Bundle").issues:
        match = _ENTRY_PATH.match(issue.expression[0]) if issue.expression else None
        if match is not None and int(match.group(1)) < len(entries):
            entry_issues[int(match.group(1))].append(issue)
        else:
            bundle_issues.append(issue)

    results: list[tuple[str | None, str | None, str | None]] = []
    references: list[list[tuple[str, str]]] = []
    first_index_of_full_url: dict[str, int] = {}
    for index, entry in enumerate(entries):
        path = f"Bundle.entry[{index}]"
        issues = entry_issues[index]
        entry_references: list[tuple[str, str]] = []
        references.append(entry_references)
        if not isinstance(entry, dict):
            if not issues:
                issues.append(_issue("structure", "A Bundle entry must be a JSON object", path))
            results.append((None, None, None))
            continue

        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        if full_url is not None:
            if full_url in first_index_of_full_url:
                issues.append(
                    _issue("duplicate", "fullUrl is already used by an earlier entry", f"{path}.fullUrl")
                )
            else:
                first_index_of_full_url[full_url] = index
            full_url_problem = _full_url_issue(full_url, path)
            if full_url_problem is not None:
                issues.append(full_url_problem)

        request = entry.get("request")
        method: str | None = None
        url: str | None = None
        if request is None:
            issues.append(
                _issue("required", "entry.request is required in a transaction or batch", f"{path}.request")
            )
        elif isinstance(request, dict):
            method = request.get("method") if isinstance(request.get("method"), str) else None
            url = request.get("url") if isinstance(request.get("url"), str) else None
            if method in REFUSED_METHODS:
                issues.append(
                    _issue(
                        "not-supported", "Only POST and PUT entries are accepted", f"{path}.request.method"
                    )
                )
            if url is not None and not url.strip():
                issues.append(
                    _issue("required", "entry.request.url must not be empty", f"{path}.request.url")
                )

        resource = entry.get("resource")
        resource_type: str | None = None
        if resource is None:
            if method not in REFUSED_METHODS:  # a refused method is reason enough
                issues.append(
                    _issue("required", "entry.resource is required for POST and PUT", f"{path}.resource")
                )
        else:
            check = check_resource(resource, expression_prefix=f"{path}.resource")
            issues.extend(check.issues)
            entry_references.extend(check.references)
            if isinstance(resource, dict) and resource_types.is_r4_resource_type(
                resource.get("resourceType")
            ):
                resource_type = resource["resourceType"]
                if method in ACCEPTED_METHODS and url and url.strip():
                    issues.extend(_request_url_issues(method, url, resource, resource_type, path))
        results.append((resource_type, full_url, method))

    # urn:uuid: / urn:oid: name resources of this Bundle only: each one must be some entry's fullUrl.
    # Relative references ("Patient/123") point at the sender's own server and stay as they are.
    for index, entry_references in enumerate(references):
        for reference_path, reference in entry_references:
            target = reference.partition("#")[0]
            if target.startswith(BUNDLE_LOCAL_PREFIXES) and target not in first_index_of_full_url:
                entry_issues[index].append(
                    _issue(
                        "not-found", "The reference does not match the fullUrl of any entry", reference_path
                    )
                )

    return BundleCheck(
        bundle_type=bundle_type,
        entries=[
            EntryResult(index=i, resource_type=rt, full_url=fu, method=m, issues=entry_issues[i])
            for i, (rt, fu, m) in enumerate(results)
        ],
        bundle_issues=bundle_issues,
    )
