"""Serving what this gateway produced: ``GET [base]/{type}/{id}`` and ``GET [base]/{type}?...``.

The stored resources (clinical_ai.review OutputResource) carry pseudonymous references: the patient as a
logical reference by pseudonym (``PSEUDONYM_SYSTEM``) and each cited record by the id of its de-identified
copy (``SOURCE_SYSTEM``). Served to the EHR that sent the data, both are mapped back to the EHR's own ids:

- the patient from the pseudonym vault (``patient_reference`` entries: ``Patient/<EHR id>``; failing that the
  ``patient_identity`` the pseudonym was made from, a ``Patient/<id>`` or an MRN identifier), opened with the
  vault's private key, which only the web process holds. Each request that opens the vault is one audit row
  naming the pseudonyms it opened.
- each cited record from the sealed original entry it was received as (``resource.id``, or the id of a
  ``PUT Type/id``); a record that came without an id keeps its identifier form.

``reference_maps_gather`` collects both maps for a whole page in two queries, whatever its size.

Search parameters (each at most once, except ``_lastUpdated``):

- ``patient`` / ``subject`` (where the type has them): ``Patient/<id>``, ``<id>`` or an absolute URL ending in
  ``/Patient/<id>``: the EHR's own id. Mapped to every pseudonym that id may have here: the one computed
  from ``Patient/<id>`` and, for patients whose pseudonym came from a medical record number, those the blind
  index finds (clinical_ai.deid.services ``patient_pseudonyms_for_reference``). ``patient:identifier`` /
  ``subject:identifier``: ``system|value`` of the patient's MRN (or of the pseudonym system).
- ``_id`` and ``status`` (where the type has a status): tokens, comma lists allowed.
- ``_lastUpdated``: ``[eq|ge|gt|le|lt]`` + a FHIR date or dateTime; repeatable, all must hold.
- ``_count`` (0..200, default 50; 0 answers the total only), ``_cursor`` (from a ``next`` link), ``_format``.

Unknown parameters are refused with a 400 OperationOutcome naming them (strict handling: a client that
believes it filtered must not receive unfiltered results), unless the request says
``Prefer: handling=lenient``, in which case unknown names are ignored and left out of the ``self`` link.
Results are ordered by ``lastUpdated`` then row id, and paged by a keyset cursor, so pages are stable.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils.http import http_date

from clinical_ai.audit.fhir_search import SearchParameterError
from clinical_ai.audit.fhir_search import _date_range as fhir_date_range
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.sealing import open_json
from clinical_ai.deid.engine.pipeline import patient_pseudonym
from clinical_ai.deid.models import DeidentifiedResource, PseudonymVaultEntry
from clinical_ai.deid.vault_crypto import VaultOpenError, open_with, private_key_from_text
from clinical_ai.inference.engine.fhir_output import PSEUDONYM_SYSTEM, SOURCE_SYSTEM
from clinical_ai.review.models import OutputResource
from integrations.fhir.outcome import Issue, operation_outcome
from integrations.fhir.services import FhirResponse
from integrations.smart.principal import SmartPrincipal

logger = logging.getLogger(__name__)

READ_ACTION = "fhir.output.read"
SEARCH_ACTION = "fhir.output.search"

# The types served, with the names of their patient search parameters (R4) and whether ``status`` applies.
PATIENT_PARAMETERS: dict[str, tuple[str, ...]] = {
    "GuidanceResponse": ("patient", "subject"),
    "RiskAssessment": ("patient", "subject"),
    "DetectedIssue": ("patient",),
    "RequestGroup": ("patient", "subject"),
    "Condition": ("patient", "subject"),
    "Provenance": ("patient",),
    "Device": (),  # the model: one per version, for every patient
}
OUTPUT_TYPES: tuple[str, ...] = tuple(PATIENT_PARAMETERS)
TYPES_WITH_STATUS = frozenset({"GuidanceResponse", "RiskAssessment", "DetectedIssue", "RequestGroup"})
COMMON_PARAMETERS = ("_id", "_lastUpdated", "_count", "_cursor", "_format")
DEFAULT_COUNT = 50
MAX_COUNT = 200
MAX_VALUE_LENGTH = 256
MAX_LIST_VALUES = 50
_FORMATS = {"json", "application/json", "application/fhir+json"}
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_PATIENT_URL = re.compile(r"^(?:.*/)?Patient/(?P<id>[A-Za-z0-9\-.]{1,64})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- search parameters (plain Python) ---------------------------------------------------------------


def search_parameters(resource_type: str) -> tuple[str, ...]:
    """Every parameter name a search of ``resource_type`` accepts (for the CapabilityStatement too)."""
    names: list[str] = list(COMMON_PARAMETERS)
    for name in PATIENT_PARAMETERS[resource_type]:
        names.extend((name, f"{name}:identifier"))
    if resource_type in TYPES_WITH_STATUS:
        names.append("status")
    return tuple(names)


@dataclass(frozen=True)
class PatientCriterion:
    """Whose resources: the EHR's ``Patient/<id>``, or the identity (MRN) a pseudonym is made from, or a
    pseudonym itself."""

    reference: str | None = None  # "Patient/123"
    identity: str | None = None  # "identifier:<system>|<value>"
    pseudonym: str | None = None


@dataclass(frozen=True)
class OutputSearch:
    resource_type: str
    patient: PatientCriterion | None = None
    ids: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    updated_from: datetime | None = None  # inclusive
    updated_before: datetime | None = None  # exclusive
    count: int = DEFAULT_COUNT
    cursor: tuple[datetime, int] | None = None
    # The parameters understood, as given (for the self and next links), and the names ignored.
    used: tuple[tuple[str, str], ...] = ()
    ignored: tuple[str, ...] = field(default_factory=tuple)


def _single(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name) or []
    if not values:
        return None
    if len(values) > 1:
        raise SearchParameterError(name, f"{name} may appear only once")
    value = values[0]
    if not value:
        raise SearchParameterError(name, f"{name} is empty")
    if len(value) > MAX_VALUE_LENGTH:
        raise SearchParameterError(name, f"{name} is longer than {MAX_VALUE_LENGTH} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL: the query would fail (a 500), not match nothing
        raise SearchParameterError(name, f"{name} contains a NUL character")
    return value


def _token_list(params: Mapping[str, Sequence[str]], name: str) -> tuple[str, ...]:
    value = _single(params, name)
    if value is None:
        return ()
    tokens = tuple(v.strip() for v in value.split(","))
    if len(tokens) > MAX_LIST_VALUES or not all(tokens):
        raise SearchParameterError(name, f"{name} takes 1 to {MAX_LIST_VALUES} non-empty values")
    return tokens


def _patient(name: str, value: str) -> PatientCriterion:
    if name.endswith(":identifier"):
        system, bar, code = value.partition("|")
        if not bar or not code:
            raise SearchParameterError(name, f"{name} takes system|value (the system is required)")
        if system == PSEUDONYM_SYSTEM:
            return PatientCriterion(pseudonym=code)
        return PatientCriterion(identity=f"identifier:{system}|{code}")
    match = _PATIENT_URL.match(value)
    if match is not None:
        return PatientCriterion(reference=f"Patient/{match['id']}")
    if FHIR_ID.match(value):
        return PatientCriterion(reference=f"Patient/{value}")
    raise SearchParameterError(name, f"{name} must be Patient/<id>, <id> or a Patient URL")


def _updated_bounds(values: Sequence[str]) -> tuple[datetime | None, datetime | None]:
    lower: datetime | None = None
    upper: datetime | None = None
    for value in values:
        if not value or len(value) > 64:
            raise SearchParameterError("_lastUpdated", "_lastUpdated is empty or too long")
        prefix, start, end = fhir_date_range("_lastUpdated", value)
        # lastUpdated is an instant: each prefix becomes an inclusive lower or an exclusive upper bound.
        low, high = {
            "eq": (start, end),
            "ge": (start, None),
            "gt": (end, None),
            "le": (None, end),
            "lt": (None, start),
        }[prefix]
        if low is not None:
            lower = low if lower is None else max(lower, low)
        if high is not None:
            upper = high if upper is None else min(upper, high)
    return lower, upper


def cursor_text(last_updated: datetime, pk: int) -> str:
    return f"{(last_updated - _EPOCH) // timedelta(microseconds=1)}.{pk}"


def _cursor(value: str) -> tuple[datetime, int]:
    micros, dot, pk = value.partition(".")
    if not dot or not micros.isdigit() or not pk.isdigit() or len(micros) > 20 or len(pk) > 20:
        raise SearchParameterError("_cursor", "_cursor must be taken from a next link")
    return _EPOCH + timedelta(microseconds=int(micros)), int(pk)


def parse_output_search(
    resource_type: str, params: Mapping[str, Sequence[str]], *, lenient: bool = False
) -> OutputSearch:
    """Read the query of a search of ``resource_type`` (one of ``OUTPUT_TYPES``). Raises
    ``SearchParameterError`` on the first parameter that is unknown (unless ``lenient``), repeated or
    unreadable."""
    known = search_parameters(resource_type)
    unknown = tuple(name for name in params if name not in known)
    if unknown and not lenient:
        raise SearchParameterError(unknown[0], f"the search parameter {unknown[0][:64]!r} is not supported")
    patient_names = [
        name for name in known if name.split(":")[0] in ("patient", "subject") and params.get(name)
    ]
    if len(patient_names) > 1:
        raise SearchParameterError(patient_names[1], "give the patient once (patient or subject)")
    patient = None
    if patient_names:
        value = _single(params, patient_names[0])
        patient = _patient(patient_names[0], value or "")
    ids = _token_list(params, "_id")
    if any(not FHIR_ID.match(i) for i in ids):
        raise SearchParameterError("_id", "_id takes FHIR ids ([A-Za-z0-9-.], at most 64 characters)")
    updated_from, updated_before = _updated_bounds(params.get("_lastUpdated") or [])
    count = DEFAULT_COUNT
    raw_count = _single(params, "_count")
    if raw_count is not None:
        if not raw_count.isdigit() or len(raw_count) > 9:
            raise SearchParameterError("_count", "_count must be a whole number")
        count = min(int(raw_count), MAX_COUNT)
    raw_cursor = _single(params, "_cursor")
    response_format = _single(params, "_format")
    if response_format is not None and response_format not in _FORMATS:
        raise SearchParameterError("_format", "only JSON is offered (_format=json)")
    return OutputSearch(
        resource_type=resource_type,
        patient=patient,
        ids=ids,
        statuses=_token_list(params, "status") if "status" in known else (),
        updated_from=updated_from,
        updated_before=updated_before,
        count=count,
        cursor=_cursor(raw_cursor) if raw_cursor is not None else None,
        used=tuple((name, value) for name in params if name in known for value in params[name]),
        ignored=unknown,
    )


# --- restoring references (plain Python) ------------------------------------------------------------


def _identifier_of(node: Mapping[str, Any], system: str) -> str | None:
    identifier = node.get("identifier")
    if "resourceType" in node or not isinstance(identifier, Mapping):
        return None
    value = identifier.get("value")
    return value if identifier.get("system") == system and isinstance(value, str) else None


def references_restore(
    resource: Mapping[str, Any],
    patient_refs: Mapping[str, Mapping[str, Any]],
    source_refs: Mapping[str, str],
) -> dict[str, Any]:
    """A copy of ``resource`` whose pseudonymous references point at the EHR's own records again.

    ``patient_refs``: pseudonym -> the Reference to serve instead (``{"reference": "Patient/123", ...}``);
    keyed by pseudonym so that a reference is only ever rewritten to the patient it names.
    ``source_refs``: de-identified row id -> ``"<Type>/<EHR id>"``. A reference with no entry in its map
    is kept as it is. Works anywhere in the tree, contained resources included.
    """

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        pseudonym = _identifier_of(node, PSEUDONYM_SYSTEM)
        if pseudonym is not None and pseudonym in patient_refs:
            restored = dict(patient_refs[pseudonym])
            if isinstance(node.get("display"), str):
                restored["display"] = node["display"]
            return restored
        source = _identifier_of(node, SOURCE_SYSTEM)
        if source is not None and source in source_refs:
            target = source_refs[source]
            restored = {"reference": target, "type": target.split("/", 1)[0]}
            if isinstance(node.get("display"), str):
                restored["display"] = node["display"]
            return restored
        return {key: walk(value) for key, value in node.items()}

    result: dict[str, Any] = walk(resource)
    return result


def _identifier_values(node: Any, system: str) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _identifier_values(item, system)
    elif isinstance(node, Mapping):
        value = _identifier_of(node, system)
        if value is not None:
            yield value
        for child in node.values():
            yield from _identifier_values(child, system)


def patient_reference_from_vault(kind: str, original: str) -> dict[str, Any] | None:
    """The Reference to serve for one opened vault entry (``patient_reference`` or ``patient_identity``)."""
    if original.startswith("Patient/") and FHIR_ID.match(original.removeprefix("Patient/")):
        return {"reference": original, "type": "Patient"}
    if kind == "patient_identity" and original.startswith("identifier:"):
        system, _, value = original.removeprefix("identifier:").partition("|")
        identifier = {"system": system, "value": value} if system else {"value": value}
        return {"type": "Patient", "identifier": identifier}
    return None  # a fullUrl identity: nothing the EHR can resolve


def output_resource_body(row: OutputResource) -> dict[str, Any]:
    """The stored body (as clinical_ai.review.services has it; not imported from there, which would make an
    import cycle once the review service imports the push)."""
    body: dict[str, Any] = open_json(row.sealed, associated_data=row.associated_data)
    return body


# --- selectors ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceMaps:
    patients: dict[str, dict[str, Any]]  # pseudonym -> Reference
    sources: dict[str, str]  # de-identified row external id -> "Type/id"
    opened: tuple[str, ...]  # the pseudonyms whose vault entries were opened (for the audit row)


def _original_reference(resource_type: str, document: Mapping[str, Any]) -> str | None:
    resource = document.get("resource")
    resource_id = resource.get("id") if isinstance(resource, Mapping) else None
    if not isinstance(resource_id, str):
        request = document.get("request")
        url = request.get("url") if isinstance(request, Mapping) else None
        method = request.get("method") if isinstance(request, Mapping) else None
        if method == "PUT" and isinstance(url, str) and url.startswith(f"{resource_type}/"):
            resource_id = url.removeprefix(f"{resource_type}/").split("?", 1)[0]
    if isinstance(resource_id, str) and FHIR_ID.match(resource_id):
        return f"{resource_type}/{resource_id}"
    return None


def reference_maps_gather(*, organization_id: int, bodies: Sequence[Mapping[str, Any]]) -> ReferenceMaps:
    """Both maps for ``references_restore`` over a page of resources: one query for the vault, one for the
    cited records. Patients stay pseudonymous where this process holds no vault private key."""
    pseudonyms = sorted({p for body in bodies for p in _identifier_values(body, PSEUDONYM_SYSTEM)})
    source_ids: set[uuid.UUID] = set()
    for body in bodies:
        for value in _identifier_values(body, SOURCE_SYSTEM):
            try:
                source_ids.add(uuid.UUID(value))
            except ValueError:
                continue
    patients: dict[str, dict[str, Any]] = {}
    opened: list[str] = []
    if pseudonyms and settings.VAULT_PRIVATE_KEY:
        private = private_key_from_text(settings.VAULT_PRIVATE_KEY)
        found: dict[str, dict[str, dict[str, Any]]] = {}
        entries = PseudonymVaultEntry.objects.filter(
            organization_id=organization_id,
            patient_pseudonym__in=pseudonyms,
            kind__in=("patient_reference", "patient_identity"),
        ).order_by("pk")
        for entry in entries:
            try:
                original = open_with(
                    private, bytes(entry.sealed_original), associated_data=entry.associated_data
                ).decode("utf-8")
            except VaultOpenError:
                logger.warning("vault entry %s does not open with this key", entry.pk)
                continue
            reference = patient_reference_from_vault(entry.kind, original)
            if reference is not None:
                # The latest entry of a kind wins (the EHR may have renumbered the patient).
                found.setdefault(entry.patient_pseudonym, {})[entry.kind] = reference
        for pseudonym, by_kind in found.items():
            patients[pseudonym] = by_kind.get("patient_reference") or by_kind["patient_identity"]
        opened = [p for p in pseudonyms if p in found]
    sources: dict[str, str] = {}
    if source_ids:
        rows = DeidentifiedResource.objects.filter(
            organization_id=organization_id, external_id__in=source_ids
        ).select_related("raw_resource")
        for row in rows:
            raw = row.raw_resource
            document = open_json(raw.sealed, associated_data=raw.associated_data)
            target = _original_reference(raw.resource_type, document) if isinstance(document, dict) else None
            if target is not None:
                sources[str(row.external_id)] = target
    return ReferenceMaps(patients=patients, sources=sources, opened=tuple(opened))


def patient_pseudonyms_resolve(
    *, organization_id: int, organization_slug: str, criterion: PatientCriterion
) -> list[str]:
    if criterion.pseudonym is not None:
        return [criterion.pseudonym]
    if criterion.identity is not None:
        key = settings.PSEUDONYM_KEY.encode("utf-8")
        return [patient_pseudonym(key=key, organization=organization_slug, identity=criterion.identity)]
    # deid.services imports the inference stage, which imports review.services, which may import the push
    # (and so this module): imported on use.
    from clinical_ai.deid.services import patient_pseudonyms_for_reference

    return patient_pseudonyms_for_reference(
        organization_id=organization_id,
        organization_slug=organization_slug,
        reference=criterion.reference or "",
    )


@dataclass(frozen=True)
class OutputPage:
    rows: list[OutputResource]
    total: int
    next_cursor: str | None


def output_resources_filter(
    *, organization_id: int, search: OutputSearch, patient_pseudonyms: Sequence[str] | None
) -> QuerySet[OutputResource]:
    rows = OutputResource.objects.filter(organization_id=organization_id, resource_type=search.resource_type)
    if patient_pseudonyms is not None:
        rows = rows.filter(patient_pseudonym__in=list(patient_pseudonyms))
    if search.ids:
        rows = rows.filter(resource_id__in=search.ids)
    if search.statuses:
        rows = rows.filter(status__in=search.statuses)
    if search.updated_from is not None:
        rows = rows.filter(last_updated__gte=search.updated_from)
    if search.updated_before is not None:
        rows = rows.filter(last_updated__lt=search.updated_before)
    return rows


def output_resources_page(
    *, organization_id: int, search: OutputSearch, patient_pseudonyms: Sequence[str] | None
) -> OutputPage:
    """One page in (lastUpdated, id) order after the cursor, and the total. Two queries."""
    matching = output_resources_filter(
        organization_id=organization_id, search=search, patient_pseudonyms=patient_pseudonyms
    )
    total = matching.count()
    if search.count == 0:
        return OutputPage(rows=[], total=total, next_cursor=None)
    after = matching
    if search.cursor is not None:
        moment, pk = search.cursor
        after = matching.filter(Q(last_updated__gt=moment) | Q(last_updated=moment, pk__gt=pk))
    rows = list(after.order_by("last_updated", "pk")[: search.count + 1])
    more = len(rows) > search.count
    rows = rows[: search.count]
    next_cursor = cursor_text(rows[-1].last_updated, rows[-1].pk) if more and rows else None
    return OutputPage(rows=rows, total=total, next_cursor=next_cursor)


# --- services ----------------------------------------------------------------------------------------


def _json_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> FhirResponse:
    return FhirResponse(status, body, dict(headers or {}))


def _outcome(status: int, code: str, text: str, expression: str | None = None) -> FhirResponse:
    issue = Issue(code=code, diagnostics=text, expression=(expression,) if expression else ())
    return _json_response(status, operation_outcome([issue]))


def _only(pseudonyms: Sequence[str]) -> str:
    return pseudonyms[0] if len(pseudonyms) == 1 else ""


def output_read(
    *, principal: SmartPrincipal, resource_type: str, resource_id: str, request_id: str
) -> FhirResponse:
    """``GET [base]/{type}/{id}`` of a resource of the caller's organization, references restored. Another
    organization's resource is as absent as one that never existed (404). Audited either way."""
    actor = Actor.ehr_client(principal.client_id)

    def refuse(status: int, code: str, text: str) -> FhirResponse:
        audit_record(
            actor=actor,
            action=READ_ACTION,
            outcome=Outcome.FAILURE,
            object_type=resource_type,
            object_id=resource_id,
            organization=principal.organization_slug,
            request_id=request_id,
            detail={"status": status, "issue_code": code},
        )
        return _outcome(status, code, text)

    if not principal.can(resource_type, "read"):
        return refuse(403, "forbidden", f"The access token's scopes do not allow read of {resource_type}")
    row = OutputResource.objects.filter(
        organization_id=principal.organization_id, resource_type=resource_type, resource_id=resource_id
    ).first()
    if row is None:
        return refuse(404, "not-found", f"{resource_type}/{resource_id} is not known here")
    body = output_resource_body(row)
    maps = reference_maps_gather(organization_id=principal.organization_id, bodies=[body])
    served = references_restore(body, maps.patients, maps.sources)
    audit_record(
        actor=actor,
        action=READ_ACTION,
        object_type=resource_type,
        object_id=resource_id,
        organization=principal.organization_slug,
        patient_pseudonym=_only(maps.opened),
        request_id=request_id,
        detail={
            "status": 200,
            "version": row.version,
            "patients_reidentified": len(maps.opened),
            "sources_restored": len(maps.sources),
        },
    )
    return _json_response(
        200,
        served,
        {
            "ETag": f'W/"{row.version}"',
            "Last-Modified": http_date(row.last_updated.timestamp()),
        },
    )


def output_search(
    *,
    principal: SmartPrincipal,
    resource_type: str,
    params: Mapping[str, Sequence[str]],
    lenient: bool,
    request_id: str,
    base_url: str,
) -> FhirResponse:
    """``GET [base]/{type}?...``: a searchset Bundle of the caller's organization's resources, references
    restored. Audited either way, naming the parameters used (not their values) and the pseudonyms whose
    vault entries were opened."""
    actor = Actor.ehr_client(principal.client_id)
    known = search_parameters(resource_type)
    names = sorted({name for name in params if name in known})
    unknown = sum(1 for name in params if name not in known)

    def refuse(status: int, code: str, text: str, expression: str | None = None) -> FhirResponse:
        audit_record(
            actor=actor,
            action=SEARCH_ACTION,
            outcome=Outcome.FAILURE,
            object_type=resource_type,
            organization=principal.organization_slug,
            request_id=request_id,
            detail={"status": status, "issue_code": code, "params": names, "unknown_params": unknown},
        )
        return _outcome(status, code, text, expression)

    if not principal.can(resource_type, "search"):
        return refuse(403, "forbidden", f"The access token's scopes do not allow search of {resource_type}")
    try:
        search = parse_output_search(resource_type, params, lenient=lenient)
    except SearchParameterError as exc:
        code = "not-supported" if "not supported" in str(exc) else "value"
        return refuse(400, code, str(exc), exc.parameter)
    pseudonyms = None
    if search.patient is not None:
        pseudonyms = patient_pseudonyms_resolve(
            organization_id=principal.organization_id,
            organization_slug=principal.organization_slug,
            criterion=search.patient,
        )
    page = output_resources_page(
        organization_id=principal.organization_id, search=search, patient_pseudonyms=pseudonyms
    )
    bodies = [output_resource_body(row) for row in page.rows]
    maps = reference_maps_gather(organization_id=principal.organization_id, bodies=bodies)
    query = [(k, v) for k, v in search.used if k != "_cursor"]
    self_query = list(search.used)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": page.total,
        "link": [
            {"relation": "self", "url": f"{base_url}/{resource_type}?{urlencode(self_query)}".rstrip("?")}
        ],
        "entry": [
            {
                "fullUrl": f"{base_url}/{resource_type}/{row.resource_id}",
                "resource": references_restore(body, maps.patients, maps.sources),
                "search": {"mode": "match"},
            }
            for row, body in zip(page.rows, bodies, strict=True)
        ],
    }
    if page.next_cursor is not None:
        next_query = urlencode([*query, ("_cursor", page.next_cursor)])
        bundle["link"].append({"relation": "next", "url": f"{base_url}/{resource_type}?{next_query}"})
    audit_record(
        actor=actor,
        action=SEARCH_ACTION,
        object_type=resource_type,
        organization=principal.organization_slug,
        patient_pseudonym=_only(maps.opened),
        request_id=request_id,
        detail={
            "status": 200,
            "params": names,
            "unknown_params": unknown,
            "returned": len(page.rows),
            "total": page.total,
            "patients_reidentified": len(maps.opened),
            "patient_pseudonyms": list(maps.opened),
        },
    )
    return _json_response(200, bundle)
