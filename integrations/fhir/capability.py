"""The CapabilityStatement: what this server really does, generated from the same lists the code uses."""

from __future__ import annotations

from typing import Any

from integrations.fhir.validation import supported_resource_types

SOFTWARE_NAME = "clinical-ai"
SOFTWARE_VERSION = "0.1.0"
RELEASE_DATE = "2026-11-25"


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
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": RELEASE_DATE,
        "publisher": "clinical-ai",
        "kind": "instance",
        "software": {"name": SOFTWARE_NAME, "version": SOFTWARE_VERSION},
        "implementation": {
            "description": "clinical-ai decision-support gateway, FHIR R4 intake",
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
                        "assertion signed RS384 or ES384; scopes system/[type].write (v1) or system/[type].c (v2)."
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
