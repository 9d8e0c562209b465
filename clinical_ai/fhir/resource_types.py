"""The FHIR R4 (4.0.1) resource types, and which of them ``fhir.resources.R4B`` can validate.

``fhir.resources`` has no R4 package: R4 content is validated with the R4B models, which match R4 for
almost every resource. R4B dropped a handful of R4 resources (the MedicinalProduct* family, the
Substance* specification family, the evidence-synthesis resources) and redesigned two (Evidence,
EvidenceVariable); those are reported as unsupported instead of being validated against a model that
does not describe them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

# Every resource type of FHIR R4 4.0.1 (https://hl7.org/fhir/R4/resourcelist.html), abstract
# Resource and DomainResource excluded: 146 names.
R4_RESOURCE_TYPES: frozenset[str] = frozenset(
    {
        "Account",
        "ActivityDefinition",
        "AdverseEvent",
        "AllergyIntolerance",
        "Appointment",
        "AppointmentResponse",
        "AuditEvent",
        "Basic",
        "Binary",
        "BiologicallyDerivedProduct",
        "BodyStructure",
        "Bundle",
        "CapabilityStatement",
        "CarePlan",
        "CareTeam",
        "CatalogEntry",
        "ChargeItem",
        "ChargeItemDefinition",
        "Claim",
        "ClaimResponse",
        "ClinicalImpression",
        "CodeSystem",
        "Communication",
        "CommunicationRequest",
        "CompartmentDefinition",
        "Composition",
        "ConceptMap",
        "Condition",
        "Consent",
        "Contract",
        "Coverage",
        "CoverageEligibilityRequest",
        "CoverageEligibilityResponse",
        "DetectedIssue",
        "Device",
        "DeviceDefinition",
        "DeviceMetric",
        "DeviceRequest",
        "DeviceUseStatement",
        "DiagnosticReport",
        "DocumentManifest",
        "DocumentReference",
        "EffectEvidenceSynthesis",
        "Encounter",
        "Endpoint",
        "EnrollmentRequest",
        "EnrollmentResponse",
        "EpisodeOfCare",
        "EventDefinition",
        "Evidence",
        "EvidenceVariable",
        "ExampleScenario",
        "ExplanationOfBenefit",
        "FamilyMemberHistory",
        "Flag",
        "Goal",
        "GraphDefinition",
        "Group",
        "GuidanceResponse",
        "HealthcareService",
        "ImagingStudy",
        "Immunization",
        "ImmunizationEvaluation",
        "ImmunizationRecommendation",
        "ImplementationGuide",
        "InsurancePlan",
        "Invoice",
        "Library",
        "Linkage",
        "List",
        "Location",
        "Measure",
        "MeasureReport",
        "Media",
        "Medication",
        "MedicationAdministration",
        "MedicationDispense",
        "MedicationKnowledge",
        "MedicationRequest",
        "MedicationStatement",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "MessageDefinition",
        "MessageHeader",
        "MolecularSequence",
        "NamingSystem",
        "NutritionOrder",
        "Observation",
        "ObservationDefinition",
        "OperationDefinition",
        "OperationOutcome",
        "Organization",
        "OrganizationAffiliation",
        "Parameters",
        "Patient",
        "PaymentNotice",
        "PaymentReconciliation",
        "Person",
        "PlanDefinition",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "Provenance",
        "Questionnaire",
        "QuestionnaireResponse",
        "RelatedPerson",
        "RequestGroup",
        "ResearchDefinition",
        "ResearchElementDefinition",
        "ResearchStudy",
        "ResearchSubject",
        "RiskAssessment",
        "RiskEvidenceSynthesis",
        "Schedule",
        "SearchParameter",
        "ServiceRequest",
        "Slot",
        "Specimen",
        "SpecimenDefinition",
        "StructureDefinition",
        "StructureMap",
        "Subscription",
        "Substance",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
        "SupplyDelivery",
        "SupplyRequest",
        "Task",
        "TerminologyCapabilities",
        "TestReport",
        "TestScript",
        "ValueSet",
        "VerificationResult",
        "VisionPrescription",
    }
)


def is_r4_resource_type(name: object) -> bool:
    """Whether ``name`` is a concrete FHIR R4 4.0.1 resource type (case-sensitive, as FHIR JSON is)."""
    return isinstance(name, str) and name in R4_RESOURCE_TYPES


def _r4b_model_class(name: str) -> type[Any] | None:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model: type[Any] = get_fhir_model_class(name)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None
    # get_fhir_model_class also answers for data types (HumanName, ...): only resources count.
    if getattr(model, "__resource_type__", None) != name or not model.has_resource_base():
        return None
    return model


# R4 resource types that R4B kept by name but redesigned (the evidence-based-medicine rework): an R4
# instance does not fit the R4B model, and an R4B-shaped one is not R4. Validating them against R4B
# would reject valid R4 and accept invalid R4, so they are unsupported too.
R4B_REDESIGNED_RESOURCE_TYPES: frozenset[str] = frozenset({"Evidence", "EvidenceVariable"})


def _compute_supported() -> frozenset[str]:
    return frozenset(
        name
        for name in R4_RESOURCE_TYPES - R4B_REDESIGNED_RESOURCE_TYPES
        if _r4b_model_class(name) is not None
    )


# R4 resource types that the R4B models describe; computed once at import.
R4B_SUPPORTED_RESOURCE_TYPES: frozenset[str] = _compute_supported()

# R4 resource types recognised as R4 but not validated (422): dropped or redesigned by R4B.
R4_ONLY_RESOURCE_TYPES: frozenset[str] = R4_RESOURCE_TYPES - R4B_SUPPORTED_RESOURCE_TYPES


def is_supported_resource_type(name: object) -> bool:
    return isinstance(name, str) and name in R4B_SUPPORTED_RESOURCE_TYPES


@cache
def model_class(name: str) -> type[Any]:
    """The R4B model class for a supported R4 resource type; ``KeyError`` for any other name."""
    if name not in R4B_SUPPORTED_RESOURCE_TYPES:
        raise KeyError(name)
    model = _r4b_model_class(name)
    if model is None:  # pragma: no cover - the set above was computed with the same function
        raise KeyError(name)
    return model
