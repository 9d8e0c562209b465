"""The CapabilityStatement: what this server really does, generated from the same lists the code uses."""

from __future__ import annotations

from typing import Any

from clinical_ai.fhir.validation import supported_resource_types
from integrations.fhir.output_search import OUTPUT_TYPES, search_parameters

SOFTWARE_NAME = "clinical-ai"
SOFTWARE_VERSION = "0.1.0"
RELEASE_DATE = "2026-11-25"


# The FHIR search parameter types of the output searches (CapabilityStatement.rest.resource.searchParam).
_PARAMETER_TYPES = {
    "_id": "token",
    "_lastUpdated": "date",
    "patient": "reference",
    "subject": "reference",
    "status": "token",
}


def _offer_outputs(resource: dict[str, Any]) -> None:
    """A type this gateway produces: read and search-type besides create (integrations.fhir.outputs)."""
    names = [n for n in search_parameters(str(resource["type"])) if n in _PARAMETER_TYPES]
    resource["interaction"] = [{"code": "create"}, {"code": "read"}, {"code": "search-type"}]
    resource["versioning"] = "versioned"
    resource["readHistory"] = False
    resource["searchParam"] = [{"name": name, "type": _PARAMETER_TYPES[name]} for name in names]
    resource["documentation"] = (
        "read and search-type: the resources this gateway produced for the caller's organization (model "
        "results, proposals, sign-off Provenance), with the patient and cited records referenced by the "
        "EHR's own ids again. Scope system/[type].read (v1) or .rs (v2). Search: patient or subject "
        "(Patient/<id>, <id>; :identifier with system|value of the MRN), _id, _lastUpdated, status, _count "
        "(max 200), paging by the next link; other parameters are refused (400) unless "
        "Prefer: handling=lenient. create: accepted for de-identification like any other type."
    )


def capability_statement(*, base_url: str, token_url: str) -> dict[str, Any]:
    resources = [
        {
            "type": resource_type,
            "interaction": [{"code": "create"}],
            "versioning": "no-version",
            "conditionalCreate": False,
            "documentation": (
                "Accepted for de-identification and model inference. Idempotent on If-None-Exist or "
                "X-Request-Id (the same key and content are stored once). Read and search are not offered "
                "for submitted resources."
            ),
        }
        for resource_type in sorted(supported_resource_types())
    ]
    resources.sort(key=lambda r: str(r["type"]))
    audit_event = next(r for r in resources if r["type"] == "AuditEvent")
    audit_event["interaction"] = [{"code": "create"}, {"code": "search-type"}]
    audit_event["documentation"] = (
        "search-type: this gateway's own audit log as IHE BALP-shaped AuditEvents, for auditors' tools "
        "(scope system/AuditEvent.read); an EHR client sees its organization's events only."
    )
    audit_event["searchParam"] = [
        {"name": name, "type": kind}
        for name, kind in (
            ("date", "date"),
            ("agent", "reference"),
            ("entity", "reference"),
            ("patient", "reference"),
            ("type", "token"),
            ("subtype", "token"),
            ("outcome", "token"),
        )
    ]
    for resource in resources:
        if resource["type"] in OUTPUT_TYPES:
            _offer_outputs(resource)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": RELEASE_DATE,
        "publisher": "clinical-ai",
        "kind": "instance",
        "software": {"name": SOFTWARE_NAME, "version": SOFTWARE_VERSION},
        "implementation": {
            "description": "clinical-ai decision-support gateway: FHIR R4 intake, read and search of its results",
            "url": base_url,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "POST [base] takes a transaction (all or nothing) or batch (per entry) Bundle of create "
                    "(POST) or update (PUT) entries; POST [base]/[type] takes one resource. Bundles sent again "
                    "with the same Bundle.identifier, If-None-Exist or X-Request-Id are answered as the first time."
                ),
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": (
                        "SMART Backend Services: client_credentials grant with a private_key_jwt client "
                        "assertion signed RS384 or ES384; scopes system/[type].write (v1) or system/[type].c (v2) "
                        "to submit, system/[type].read (v1) or system/[type].rs (v2) to read and search."
                    ),
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [{"url": "token", "valueUri": token_url}],
                        }
                    ],
                },
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
