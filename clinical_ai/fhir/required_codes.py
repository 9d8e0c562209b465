"""FHIR R4 (4.0.1) required-binding codes that ``fhir.resources`` does not check.

The R4B models carry the allowed codes of a ``code`` element as ``enum_values`` metadata but never
enforce them, and for some elements (Observation.status, Encounter.status, ...) the list is cut short
with a trailing ``"+"``. This table holds the full R4 value sets of the status / intent / use elements
that matter for clinical intake; it wins over ``enum_values`` where both exist. Keys are the R4B model
class name and the element's JSON name, so a key covers the element wherever the class occurs
(contained resources, Bundle entries, ...) and in the classes derived from it (Quantity's Age,
Duration, ...).

Values are copied from the R4 4.0.1 value sets named in the comments (all bindings "required").
"""

from __future__ import annotations

from collections.abc import Mapping

# --- shared value sets ---------------------------------------------------------------------------

# http://hl7.org/fhir/ValueSet/observation-status (Observation, DetectedIssue, RiskAssessment)
OBSERVATION_STATUS = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
)
# http://hl7.org/fhir/ValueSet/diagnostic-report-status
DIAGNOSTIC_REPORT_STATUS = frozenset(
    {
        "registered",
        "partial",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "appended",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
# http://hl7.org/fhir/ValueSet/encounter-status
ENCOUNTER_STATUS = frozenset(
    {
        "planned",
        "arrived",
        "triaged",
        "in-progress",
        "onleave",
        "finished",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
# http://hl7.org/fhir/ValueSet/event-status (Procedure, Communication, Media)
EVENT_STATUS = frozenset(
    {
        "preparation",
        "in-progress",
        "not-done",
        "on-hold",
        "stopped",
        "completed",
        "entered-in-error",
        "unknown",
    }
)
# http://hl7.org/fhir/ValueSet/request-status (CarePlan, ServiceRequest, DeviceRequest, ...)
REQUEST_STATUS = frozenset(
    {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
)
# http://hl7.org/fhir/ValueSet/request-intent
REQUEST_INTENT = frozenset(
    {
        "proposal",
        "plan",
        "directive",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)
# http://hl7.org/fhir/ValueSet/request-priority
REQUEST_PRIORITY = frozenset({"routine", "urgent", "asap", "stat"})
# http://hl7.org/fhir/ValueSet/medicationrequest-status
MEDICATION_REQUEST_STATUS = frozenset(
    {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}
)
# http://hl7.org/fhir/ValueSet/medicationrequest-intent
MEDICATION_REQUEST_INTENT = frozenset(
    {
        "proposal",
        "plan",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)
# http://hl7.org/fhir/ValueSet/medication-statement-status
MEDICATION_STATEMENT_STATUS = frozenset(
    {"active", "completed", "entered-in-error", "intended", "stopped", "on-hold", "unknown", "not-taken"}
)
# http://hl7.org/fhir/ValueSet/medication-admin-status
MEDICATION_ADMIN_STATUS = frozenset(
    {"in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown"}
)
# http://hl7.org/fhir/ValueSet/medicationdispense-status
MEDICATION_DISPENSE_STATUS = frozenset(
    {
        "preparation",
        "in-progress",
        "cancelled",
        "on-hold",
        "completed",
        "entered-in-error",
        "stopped",
        "declined",
        "unknown",
    }
)
# http://hl7.org/fhir/ValueSet/immunization-status
IMMUNIZATION_STATUS = frozenset({"completed", "entered-in-error", "not-done"})
# http://hl7.org/fhir/ValueSet/document-reference-status
DOCUMENT_REFERENCE_STATUS = frozenset({"current", "superseded", "entered-in-error"})
# http://hl7.org/fhir/ValueSet/composition-status (Composition.status, DocumentReference.docStatus)
COMPOSITION_STATUS = frozenset({"preliminary", "final", "amended", "entered-in-error"})
# http://hl7.org/fhir/ValueSet/care-plan-intent
CARE_PLAN_INTENT = frozenset({"proposal", "plan", "order", "option"})
# http://hl7.org/fhir/ValueSet/care-plan-activity-status
CARE_PLAN_ACTIVITY_STATUS = frozenset(
    {
        "not-started",
        "scheduled",
        "in-progress",
        "on-hold",
        "completed",
        "cancelled",
        "stopped",
        "unknown",
        "entered-in-error",
    }
)
# http://hl7.org/fhir/ValueSet/care-team-status
CARE_TEAM_STATUS = frozenset({"proposed", "active", "suspended", "inactive", "entered-in-error"})
# http://hl7.org/fhir/ValueSet/goal-status
GOAL_LIFECYCLE_STATUS = frozenset(
    {
        "proposed",
        "planned",
        "accepted",
        "active",
        "on-hold",
        "completed",
        "cancelled",
        "entered-in-error",
        "rejected",
    }
)
# http://hl7.org/fhir/ValueSet/fm-status (Claim, ClaimResponse, Coverage, ...)
FINANCIAL_RESOURCE_STATUS = frozenset({"active", "cancelled", "draft", "entered-in-error"})
# http://hl7.org/fhir/ValueSet/explanationofbenefit-status
EXPLANATION_OF_BENEFIT_STATUS = frozenset({"active", "cancelled", "draft", "entered-in-error"})
# http://hl7.org/fhir/ValueSet/claim-use
CLAIM_USE = frozenset({"claim", "preauthorization", "predetermination"})
# http://hl7.org/fhir/ValueSet/remittance-outcome
REMITTANCE_OUTCOME = frozenset({"queued", "complete", "error", "partial"})
# http://hl7.org/fhir/ValueSet/bundle-type
BUNDLE_TYPE = frozenset(
    {
        "document",
        "message",
        "transaction",
        "transaction-response",
        "batch",
        "batch-response",
        "history",
        "searchset",
        "collection",
    }
)
# http://hl7.org/fhir/ValueSet/http-verb
HTTP_VERB = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})
# http://hl7.org/fhir/ValueSet/search-entry-mode
SEARCH_ENTRY_MODE = frozenset({"match", "include", "outcome"})
# http://hl7.org/fhir/ValueSet/administrative-gender
ADMINISTRATIVE_GENDER = frozenset({"male", "female", "other", "unknown"})
# http://hl7.org/fhir/ValueSet/allergy-intolerance-type
ALLERGY_INTOLERANCE_TYPE = frozenset({"allergy", "intolerance"})
# http://hl7.org/fhir/ValueSet/allergy-intolerance-category
ALLERGY_INTOLERANCE_CATEGORY = frozenset({"food", "medication", "environment", "biologic"})
# http://hl7.org/fhir/ValueSet/allergy-intolerance-criticality
ALLERGY_INTOLERANCE_CRITICALITY = frozenset({"low", "high", "unable-to-assess"})
# http://hl7.org/fhir/ValueSet/reaction-event-severity
REACTION_EVENT_SEVERITY = frozenset({"mild", "moderate", "severe"})
# http://hl7.org/fhir/ValueSet/device-statement-status
DEVICE_STATEMENT_STATUS = frozenset(
    {"active", "completed", "entered-in-error", "intended", "stopped", "on-hold"}
)
# http://hl7.org/fhir/ValueSet/udi-entry-type
UDI_ENTRY_TYPE = frozenset({"barcode", "rfid", "manual", "card", "self-reported", "unknown"})
# http://hl7.org/fhir/ValueSet/item-type ("question" is abstract in R4, so not a valid value)
QUESTIONNAIRE_ITEM_TYPE = frozenset(
    {
        "group",
        "display",
        "boolean",
        "decimal",
        "integer",
        "date",
        "dateTime",
        "time",
        "string",
        "text",
        "url",
        "choice",
        "open-choice",
        "attachment",
        "reference",
        "quantity",
    }
)
# http://hl7.org/fhir/ValueSet/questionnaire-answers-status
QUESTIONNAIRE_RESPONSE_STATUS = frozenset(
    {"in-progress", "completed", "amended", "entered-in-error", "stopped"}
)
# http://hl7.org/fhir/ValueSet/map-transform
STRUCTURE_MAP_TRANSFORM = frozenset(
    {
        "create",
        "copy",
        "truncate",
        "escape",
        "cast",
        "append",
        "translate",
        "reference",
        "dateOp",
        "uuid",
        "pointer",
        "evaluate",
        "cc",
        "c",
        "qty",
        "id",
        "cp",
    }
)
# http://hl7.org/fhir/ValueSet/supplyrequest-status
SUPPLY_REQUEST_STATUS = frozenset(
    {"draft", "active", "suspended", "cancelled", "completed", "entered-in-error", "unknown"}
)
# http://hl7.org/fhir/ValueSet/task-status
TASK_STATUS = frozenset(
    {
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "ready",
        "cancelled",
        "in-progress",
        "on-hold",
        "failed",
        "completed",
        "entered-in-error",
    }
)
# http://hl7.org/fhir/ValueSet/task-intent
TASK_INTENT = frozenset(
    {
        "unknown",
        "proposal",
        "plan",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)
# http://hl7.org/fhir/ValueSet/history-status
FAMILY_HISTORY_STATUS = frozenset({"partial", "completed", "entered-in-error", "health-unknown"})
# http://hl7.org/fhir/ValueSet/specimen-status
SPECIMEN_STATUS = frozenset({"available", "unavailable", "unsatisfactory", "entered-in-error"})
# http://hl7.org/fhir/ValueSet/imagingstudy-status
IMAGING_STUDY_STATUS = frozenset({"registered", "available", "cancelled", "entered-in-error", "unknown"})
# http://hl7.org/fhir/ValueSet/episode-of-care-status
EPISODE_OF_CARE_STATUS = frozenset(
    {"planned", "waitlist", "active", "onhold", "finished", "cancelled", "entered-in-error"}
)
# http://hl7.org/fhir/ValueSet/encounter-location-status
ENCOUNTER_LOCATION_STATUS = frozenset({"planned", "active", "reserved", "completed"})
# http://hl7.org/fhir/ValueSet/flag-status
FLAG_STATUS = frozenset({"active", "inactive", "entered-in-error"})
# http://hl7.org/fhir/ValueSet/quantity-comparator (Quantity and its Age/Count/Distance/Duration profiles)
QUANTITY_COMPARATOR = frozenset({"<", "<=", ">=", ">"})
# http://hl7.org/fhir/ValueSet/audit-event-action
AUDIT_EVENT_ACTION = frozenset({"C", "R", "U", "D", "E"})
# http://hl7.org/fhir/ValueSet/audit-event-outcome
AUDIT_EVENT_OUTCOME = frozenset({"0", "4", "8", "12"})

# --- code elements: (R4B model class, JSON element name) -> allowed codes -------------------------

REQUIRED_CODES: Mapping[tuple[str, str], frozenset[str]] = {
    ("Observation", "status"): OBSERVATION_STATUS,
    ("DetectedIssue", "status"): OBSERVATION_STATUS,
    ("RiskAssessment", "status"): OBSERVATION_STATUS,
    ("DiagnosticReport", "status"): DIAGNOSTIC_REPORT_STATUS,
    ("Encounter", "status"): ENCOUNTER_STATUS,
    ("EncounterStatusHistory", "status"): ENCOUNTER_STATUS,
    ("EncounterLocation", "status"): ENCOUNTER_LOCATION_STATUS,
    ("Procedure", "status"): EVENT_STATUS,
    ("Communication", "status"): EVENT_STATUS,
    ("Media", "status"): EVENT_STATUS,
    ("MedicationRequest", "status"): MEDICATION_REQUEST_STATUS,
    ("MedicationRequest", "intent"): MEDICATION_REQUEST_INTENT,
    ("MedicationRequest", "priority"): REQUEST_PRIORITY,
    ("MedicationStatement", "status"): MEDICATION_STATEMENT_STATUS,
    ("MedicationAdministration", "status"): MEDICATION_ADMIN_STATUS,
    ("MedicationDispense", "status"): MEDICATION_DISPENSE_STATUS,
    ("Immunization", "status"): IMMUNIZATION_STATUS,
    ("DocumentReference", "status"): DOCUMENT_REFERENCE_STATUS,
    ("DocumentReference", "docStatus"): COMPOSITION_STATUS,
    ("Composition", "status"): COMPOSITION_STATUS,
    ("CarePlan", "status"): REQUEST_STATUS,
    ("CarePlan", "intent"): CARE_PLAN_INTENT,
    ("CarePlanActivityDetail", "status"): CARE_PLAN_ACTIVITY_STATUS,
    ("CareTeam", "status"): CARE_TEAM_STATUS,
    ("Goal", "lifecycleStatus"): GOAL_LIFECYCLE_STATUS,
    ("ServiceRequest", "status"): REQUEST_STATUS,
    ("ServiceRequest", "intent"): REQUEST_INTENT,
    ("ServiceRequest", "priority"): REQUEST_PRIORITY,
    ("DeviceRequest", "status"): REQUEST_STATUS,
    ("DeviceRequest", "intent"): REQUEST_INTENT,
    ("CommunicationRequest", "status"): REQUEST_STATUS,
    ("CommunicationRequest", "priority"): REQUEST_PRIORITY,
    ("NutritionOrder", "status"): REQUEST_STATUS,
    ("NutritionOrder", "intent"): REQUEST_INTENT,
    ("Claim", "status"): FINANCIAL_RESOURCE_STATUS,
    ("Claim", "use"): CLAIM_USE,
    ("ClaimResponse", "status"): FINANCIAL_RESOURCE_STATUS,
    ("ClaimResponse", "use"): CLAIM_USE,
    ("ClaimResponse", "outcome"): REMITTANCE_OUTCOME,
    ("Coverage", "status"): FINANCIAL_RESOURCE_STATUS,
    ("ExplanationOfBenefit", "status"): EXPLANATION_OF_BENEFIT_STATUS,
    ("ExplanationOfBenefit", "outcome"): REMITTANCE_OUTCOME,
    ("ExplanationOfBenefit", "use"): CLAIM_USE,
    ("Bundle", "type"): BUNDLE_TYPE,
    ("BundleEntryRequest", "method"): HTTP_VERB,
    ("BundleEntrySearch", "mode"): SEARCH_ENTRY_MODE,
    ("Patient", "gender"): ADMINISTRATIVE_GENDER,
    ("Practitioner", "gender"): ADMINISTRATIVE_GENDER,
    ("RelatedPerson", "gender"): ADMINISTRATIVE_GENDER,
    ("Person", "gender"): ADMINISTRATIVE_GENDER,
    ("AllergyIntolerance", "type"): ALLERGY_INTOLERANCE_TYPE,
    ("AllergyIntolerance", "category"): ALLERGY_INTOLERANCE_CATEGORY,
    ("AllergyIntolerance", "criticality"): ALLERGY_INTOLERANCE_CRITICALITY,
    ("AllergyIntoleranceReaction", "severity"): REACTION_EVENT_SEVERITY,
    ("DeviceUseStatement", "status"): DEVICE_STATEMENT_STATUS,
    ("DeviceUdiCarrier", "entryType"): UDI_ENTRY_TYPE,
    ("QuestionnaireItem", "type"): QUESTIONNAIRE_ITEM_TYPE,
    ("QuestionnaireResponse", "status"): QUESTIONNAIRE_RESPONSE_STATUS,
    ("StructureMapGroupRuleTarget", "transform"): STRUCTURE_MAP_TRANSFORM,
    ("SupplyRequest", "status"): SUPPLY_REQUEST_STATUS,
    ("Task", "status"): TASK_STATUS,
    ("Task", "intent"): TASK_INTENT,
    ("FamilyMemberHistory", "status"): FAMILY_HISTORY_STATUS,
    ("Specimen", "status"): SPECIMEN_STATUS,
    ("ImagingStudy", "status"): IMAGING_STUDY_STATUS,
    ("EpisodeOfCare", "status"): EPISODE_OF_CARE_STATUS,
    ("Flag", "status"): FLAG_STATUS,
    ("Quantity", "comparator"): QUANTITY_COMPARATOR,
    ("AuditEvent", "action"): AUDIT_EVENT_ACTION,
    ("AuditEvent", "outcome"): AUDIT_EVENT_OUTCOME,
}

# --- CodeableConcept elements with a required binding ---------------------------------------------
# Only codings in the bound code system are checked: a coding from another system (a local code sent
# alongside) is left alone, as the binding constrains the code system's own codes.

CONDITION_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VER_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"

REQUIRED_CODINGS: Mapping[tuple[str, str], tuple[str, frozenset[str]]] = {
    # http://hl7.org/fhir/ValueSet/condition-clinical
    ("Condition", "clinicalStatus"): (
        CONDITION_CLINICAL_SYSTEM,
        frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"}),
    ),
    # http://hl7.org/fhir/ValueSet/condition-ver-status
    ("Condition", "verificationStatus"): (
        CONDITION_VER_STATUS_SYSTEM,
        frozenset({"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}),
    ),
    # http://hl7.org/fhir/ValueSet/allergyintolerance-clinical
    ("AllergyIntolerance", "clinicalStatus"): (
        ALLERGY_CLINICAL_SYSTEM,
        frozenset({"active", "inactive", "resolved"}),
    ),
    # http://hl7.org/fhir/ValueSet/allergyintolerance-verification
    ("AllergyIntolerance", "verificationStatus"): (
        ALLERGY_VERIFICATION_SYSTEM,
        frozenset({"unconfirmed", "confirmed", "refuted", "entered-in-error"}),
    ),
}
