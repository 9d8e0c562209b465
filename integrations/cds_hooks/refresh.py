"""A patient refresh: when a hook arrives for a patient the gateway has not seen, their record is read from
the EHR's fhirServer (``Patient/{id}/$everything`` where the server offers it, else a search per resource
type the active models read), every page within the limits, and ingested with the hook's own data.

Where it runs: inside the hook call, on the call's own read budget (``CDS_FETCH_MAX_SECONDS``, shared with
the prefetch reads), never in a worker. The only credential is the EHR's ``fhirAuthorization`` token, which
the CDS Hooks specification says a service MUST treat as transient (the EHR may revoke it once the call is
answered); a worker would have to store it. So the hook's response time keeps the bound it had (reads
never take longer than the budget, refresh or not), and an unseen patient's first call answers with the
"in progress" card while the record goes through the pipeline; what the budget cut short is reported
(``truncated``) and read again by the next hook's prefetch.

The patient is known when the vault's ``patient_reference`` index holds their ``Patient/{id}`` (written by
the de-identification stage for every patient it has seen with that reference): one indexed query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from clinical_ai.accounts.models import Organization
from clinical_ai.deid.models import PseudonymVaultEntry
from clinical_ai.inference.registry import enabled_models
from clinical_ai.vault.pseudonyms import PATIENT_REFERENCE_INDEX_KIND
from clinical_ai.vault.services import reference_index_key
from integrations.cds_hooks.fetch import (
    Deadline,
    FetchFailed,
    FetchLimits,
    PagedRead,
    bundle_resources,
    fhir_get_paged,
)

REFRESH_ACTION = "cds.patient.refresh"
# Read whatever models are active: the types the services' own prefetch templates ask for, at least.
BASE_RESOURCE_TYPES = frozenset({"Patient", "Observation", "Condition", "DocumentReference"})
EVERYTHING_PAGE_SIZE = 200
SEARCH_PAGE_SIZE = 100
METHOD_EVERYTHING = "everything"
METHOD_PER_TYPE = "per-type"


def patient_known(*, organization: Organization, patient_id: str) -> bool:
    """Whether the gateway has de-identified a record of the EHR's ``Patient/{patient_id}`` here."""
    return PseudonymVaultEntry.objects.filter(
        organization=organization,
        kind=PATIENT_REFERENCE_INDEX_KIND,
        pseudonym=reference_index_key(organization=organization.slug, reference=f"Patient/{patient_id}"),
    ).exists()


def refresh_resource_types() -> frozenset[str]:
    """The resource types the active models read (``ModelManifest.resource_types``), with the services'
    own prefetch types: what a per-type refresh searches for."""
    types = set(BASE_RESOURCE_TYPES)
    for state in enabled_models():
        if state.manifest is not None:
            types |= state.manifest.resource_types
    return frozenset(types)


@dataclass
class RefreshRead:
    """What a refresh read: ``resources`` (the Patient among them) in the order read; ``method`` how;
    ``fallback`` why ``$everything`` was not used ("" when it was); ``truncated`` each read cut short
    (``"<what>:<why>"``); ``failed`` each per-type search that gave nothing (``"<Type>"``)."""

    method: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0
    fallback: str = ""
    truncated: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def audit_detail(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "fallback": self.fallback,
            "pages": self.pages,
            "resources": len(self.resources),
            "truncated": list(self.truncated),
            "failed": list(self.failed),
        }


def _take(read: RefreshRead, what: str, paged: PagedRead) -> None:
    read.pages += paged.pages
    read.resources.extend(bundle_resources(paged.document))
    if paged.truncated:
        read.truncated.append(f"{what}:{paged.stopped}")


def patient_refresh_fetch(
    *,
    fhir_server: str,
    patient_id: str,
    access_token: str,
    resource_types: Iterable[str],
    limits: FetchLimits,
    deadline: Deadline,
) -> RefreshRead:
    """Read the patient's record: ``Patient/{id}/$everything`` (``_type`` = ``resource_types``), every page
    within ``limits``; where the server does not give it (404, 400, 501 or any refusal, an
    OperationOutcome, something that is not a searchset), ``Patient/{id}`` and ``{Type}?patient={id}`` for
    each other type, each paged alike. All reads share ``deadline``. Never raises for the server's faults:
    a search that fails is named in ``failed`` and the others go on."""
    types = sorted(set(resource_types) | {"Patient"})
    quoted = quote(patient_id, safe="")
    everything_query = urlencode({"_type": ",".join(types), "_count": str(EVERYTHING_PAGE_SIZE)})
    try:
        everything: PagedRead | None = fhir_get_paged(
            fhir_server=fhir_server,
            path=f"Patient/{quoted}/$everything?{everything_query}",
            access_token=access_token,
            limits=limits,
            deadline=deadline,
        )
        fallback = ""
    except FetchFailed as failed:
        everything, fallback = None, str(failed)[:200]
    if everything is not None:
        document = everything.document
        if document is None:
            fallback = "the FHIR server does not offer $everything (not found)"
        elif document.get("resourceType") != "Bundle" or document.get("type") != "searchset":
            fallback = f"the FHIR server answered $everything with a {document.get('resourceType')}"
        else:
            read = RefreshRead(method=METHOD_EVERYTHING)
            _take(read, "$everything", everything)
            return read

    read = RefreshRead(method=METHOD_PER_TYPE, fallback=fallback, pages=everything.pages if everything else 0)
    for resource_type in types:
        if deadline.remaining() <= 0:
            read.truncated.append(f"{resource_type}:time-limit")
            continue
        path = (
            f"Patient/{quoted}"
            if resource_type == "Patient"
            else f"{resource_type}?{urlencode({'patient': patient_id, '_count': str(SEARCH_PAGE_SIZE)})}"
        )
        try:
            paged = fhir_get_paged(
                fhir_server=fhir_server,
                path=path,
                access_token=access_token,
                limits=limits,
                deadline=deadline,
            )
        except FetchFailed:
            read.failed.append(resource_type)
            continue
        if paged.document is None:  # the patient is not there (404/410)
            read.failed.append(resource_type)
        _take(read, resource_type, paged)
    return read
