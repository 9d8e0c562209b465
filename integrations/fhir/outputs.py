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
  index finds (clinical_ai.vault.services ``patient_pseudonyms_for_reference``). ``patient:identifier`` /
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils.http import http_date

from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.fhir.outcome import Issue, operation_outcome
from clinical_ai.fhir.search import SearchParameterError
from clinical_ai.review.models import OutputResource
from clinical_ai.review.services import output_resource_body
from clinical_ai.vault.pseudonyms import patient_pseudonym
from clinical_ai.vault.services import patient_pseudonyms_for_reference
from integrations.fhir.output_references import reference_maps_gather, references_restore
from integrations.fhir.output_search import (
    OutputSearch,
    PatientCriterion,
    cursor_text,
    parse_output_search,
    search_parameters,
)
from integrations.fhir.services import FhirResponse
from integrations.smart.principal import SmartPrincipal

logger = logging.getLogger(__name__)

READ_ACTION = "fhir.output.read"
SEARCH_ACTION = "fhir.output.search"


# --- selectors ---------------------------------------------------------------------------------------


def patient_pseudonyms_resolve(
    *, organization_id: int, organization_slug: str, criterion: PatientCriterion
) -> list[str]:
    if criterion.pseudonym is not None:
        return [criterion.pseudonym]
    if criterion.identity is not None:
        key = settings.PSEUDONYM_KEY.encode("utf-8")
        return [patient_pseudonym(key=key, organization=organization_slug, identity=criterion.identity)]
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
