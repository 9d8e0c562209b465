"""Audit events as FHIR R4 AuditEvent resources, in the shapes of IHE Basic Audit Log Patterns (BALP).

Plain Python: ``audit_event_resource`` takes a stored event's fields and returns the resource as a dict. One
table, ``EVENT_CODES``, maps each of our action names to its AuditEvent ``type``, ``subtype`` codes and
``action`` (C/R/U/D/E); every resource also carries our own action name as a ``subtype`` coding
(``ACTION_SYSTEM``), so nothing is lost in the mapping. Actions not in the table are exported as DICOM
110100 "Application Activity", action E.

Agents follow BALP: for a request over HTTP the caller is the client agent (DICOM 110153 "Source Role
ID") and this gateway the server agent (110152 "Destination Role ID"); a signed-in user is a user agent;
workers and management commands are application agents (110150). The initiator has ``requestor`` true.
Entities: the X-Request-Id as the BALP transaction entity, the patient by pseudonym (role 1, Patient), and
the object acted on (role by its kind) with the event's detail values.

Deliberately absent: ``agent.network`` (BALP asks for it on client and server; the log does not record
network addresses) and ``entity.query`` of searches (the log records the names of the parameters used,
never their values), so these resources follow BALP's shapes without claiming its profiles in
``meta.profile``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from clinical_ai.audit.chain import PURGE_ACTION

DCM = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
IHE_EVENT_TYPE = "urn:ihe:event-type-code"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
AUDIT_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SECURITY_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
OUTCOME_SYSTEM = "http://hl7.org/fhir/audit-event-outcome"

# Our own identifier and code systems.
ACTION_SYSTEM = "urn:clinical-ai:audit-action"
ACTOR_SYSTEM_PREFIX = "urn:clinical-ai:actor:"  # + actor type (user, ehr_client, worker, system)
OBJECT_SYSTEM_PREFIX = "urn:clinical-ai:object:"  # + object type (IngestJob, smart.access_token, ...)
PATIENT_PSEUDONYM_SYSTEM = "urn:clinical-ai:patient-pseudonym"
CHAIN_EXTENSION = "urn:clinical-ai:audit-chain"  # the event's hash and previous hash in the chain

OUTCOME_SUCCESS = "0"
OUTCOME_MINOR_FAILURE = "4"  # refused, like an HTTP 4xx
OUTCOME_SERIOUS_FAILURE = "8"  # failed, like an HTTP 5xx
OUTCOME_CODES = ("0", "4", "8", "12")


@dataclass(frozen=True)
class Coding:
    system: str
    code: str
    display: str

    def as_fhir(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}

    def matches(self, system: str | None, code: str) -> bool:
        """FHIR token search: ``code`` alone matches any system, ``system|code`` that system only."""
        return self.code == code and (system is None or system == self.system)


@dataclass(frozen=True)
class EventCodes:
    type: Coding
    subtypes: tuple[Coding, ...] = ()
    action: str = "E"  # C create, R read/view, U update, D delete, E execute
    failure_outcome: str = OUTCOME_MINOR_FAILURE


REST = Coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation")
APPLICATION_ACTIVITY = Coding(DCM, "110100", "Application Activity")
AUDIT_LOG_USED = Coding(DCM, "110101", "Audit Log Used")
IMPORT = Coding(DCM, "110107", "Import")
PATIENT_RECORD = Coding(DCM, "110110", "Patient Record")
SECURITY_ALERT = Coding(DCM, "110113", "Security Alert")
USER_AUTHENTICATION = Coding(DCM, "110114", "User Authentication")
LOGIN = Coding(DCM, "110122", "Login")
LOGOUT = Coding(DCM, "110123", "Logout")
SECURITY_CONFIGURATION = Coding(DCM, "110129", "Security Configuration")
SOFTWARE_CONFIGURATION = Coding(DCM, "110131", "Software Configuration")
USE_OF_RESTRICTED_FUNCTION = Coding(DCM, "110132", "Use of Restricted Function")
USER_SECURITY_ATTRIBUTES_CHANGED = Coding(DCM, "110137", "User security Attributes Changed")
GET_ACCESS_TOKEN = Coding(IHE_EVENT_TYPE, "ITI-71", "Get Access Token")


def _rest(interaction: str) -> Coding:
    return Coding(RESTFUL_INTERACTION, interaction, interaction)


# The one table from our action names to AuditEvent codes. Add a row with every new action.
EVENT_CODES: dict[str, EventCodes] = {
    # Intake over FHIR REST (BALP Create; the refusal is the same exchange with a failure outcome).
    "intake.job.create": EventCodes(REST, (_rest("create"),), "C"),
    "fhir.intake.refuse": EventCodes(REST, (_rest("create"),), "C"),
    "fhir.intake.replay": EventCodes(REST, (_rest("create"),), "C"),
    "intake.job.process": EventCodes(IMPORT, (), "E", OUTCOME_SERIOUS_FAILURE),
    # Bulk intake (NDJSON): a batch opened, then finished (its per-patient jobs queued) or cancelled.
    "intake.batch.open": EventCodes(IMPORT, (), "C"),
    "intake.batch.finish": EventCodes(IMPORT, (), "E", OUTCOME_SERIOUS_FAILURE),
    "intake.raw_resources.reseal": EventCodes(APPLICATION_ACTIVITY, (SOFTWARE_CONFIGURATION,), "U"),
    "intake.held_resources.reseal": EventCodes(APPLICATION_ACTIVITY, (SOFTWARE_CONFIGURATION,), "U"),
    "bulk.source_keys.reseal": EventCodes(APPLICATION_ACTIVITY, (SOFTWARE_CONFIGURATION,), "U"),
    # De-identification and re-identification.
    "deid.resources.create": EventCodes(PATIENT_RECORD, (), "C", OUTCOME_SERIOUS_FAILURE),
    "deid.reidentify": EventCodes(PATIENT_RECORD, (USE_OF_RESTRICTED_FUNCTION,), "R"),
    # SMART Backend Services (IHE IUA ITI-71 Get Access Token) and client registration.
    "smart.token.issue": EventCodes(USER_AUTHENTICATION, (GET_ACCESS_TOKEN,), "E"),
    "smart.client.register": EventCodes(SECURITY_ALERT, (SECURITY_CONFIGURATION,), "C"),
    "accounts.organization.create": EventCodes(SECURITY_ALERT, (SECURITY_CONFIGURATION,), "C"),
    # People signing in and out.
    "auth.login": EventCodes(USER_AUTHENTICATION, (LOGIN,), "E"),
    "auth.login_failed": EventCodes(USER_AUTHENTICATION, (LOGIN,), "E"),
    "auth.logout": EventCodes(USER_AUTHENTICATION, (LOGOUT,), "E"),
    # Lockout after repeated wrong passwords (sign-in or e-signature): a lock begins; an admin lifts one.
    "auth.lockout": EventCodes(SECURITY_ALERT, (USER_SECURITY_ATTRIBUTES_CHANGED,), "E"),
    "auth.lockout.clear": EventCodes(SECURITY_ALERT, (USER_SECURITY_ATTRIBUTES_CHANGED,), "D"),
    # The TOTP second factor: a code checked (at sign-in or to step a session up), a device added or removed.
    "auth.otp.verify": EventCodes(USER_AUTHENTICATION, (LOGIN,), "E"),
    "auth.otp.verify_failed": EventCodes(USER_AUTHENTICATION, (LOGIN,), "E"),
    "auth.otp.enroll": EventCodes(SECURITY_ALERT, (USER_SECURITY_ATTRIBUTES_CHANGED,), "C"),
    "auth.otp.remove": EventCodes(SECURITY_ALERT, (USER_SECURITY_ATTRIBUTES_CHANGED,), "D"),
    # A session ended by its idle or absolute time-out (clinical_ai.accounts.sessions).
    "auth.session.expired": EventCodes(USER_AUTHENTICATION, (LOGOUT,), "E"),
    # Single sign-on: a session's groups re-read at the provider; a launch from the EHR (SMART App Launch)
    # and its refusals; a failed step-up sign-in for an electronic signature (a successful one is the
    # review.decision.sign row, which records the method).
    "auth.sso.recheck": EventCodes(USER_AUTHENTICATION, (LOGIN,), "E"),
    "auth.launch": EventCodes(USER_AUTHENTICATION, (LOGIN,), "E"),
    "auth.launch_failed": EventCodes(USER_AUTHENTICATION, (LOGIN,), "E"),
    "auth.stepup_failed": EventCodes(USER_AUTHENTICATION, (LOGIN,), "E"),
    "smart.launch_issuer.register": EventCodes(SECURITY_ALERT, (SECURITY_CONFIGURATION,), "C"),
    "smart.launch_issuer.disable": EventCodes(SECURITY_ALERT, (SECURITY_CONFIGURATION,), "U"),
    # Provisioning staff (clinical_ai.accounts.provisioning): accounts, roles per site, identities, and
    # which identity provider group gives which role where.
    "accounts.staff.create": EventCodes(SECURITY_ALERT, (USER_SECURITY_ATTRIBUTES_CHANGED,), "C"),
    "accounts.staff.disable": EventCodes(SECURITY_ALERT, (USER_SECURITY_ATTRIBUTES_CHANGED,), "U"),
    "accounts.staff.enable": EventCodes(SECURITY_ALERT, (USER_SECURITY_ATTRIBUTES_CHANGED,), "U"),
    "accounts.staff.grant": EventCodes(SECURITY_ALERT, (USER_SECURITY_ATTRIBUTES_CHANGED,), "C"),
    "accounts.staff.revoke": EventCodes(SECURITY_ALERT, (USER_SECURITY_ATTRIBUTES_CHANGED,), "D"),
    "accounts.staff.link": EventCodes(SECURITY_ALERT, (USER_SECURITY_ATTRIBUTES_CHANGED,), "C"),
    "accounts.staff.unlink": EventCodes(SECURITY_ALERT, (USER_SECURITY_ATTRIBUTES_CHANGED,), "D"),
    "accounts.group_role.add": EventCodes(SECURITY_ALERT, (SECURITY_CONFIGURATION,), "C"),
    "accounts.group_role.remove": EventCodes(SECURITY_ALERT, (SECURITY_CONFIGURATION,), "D"),
    # The audit log itself.
    "audit.console.view": EventCodes(AUDIT_LOG_USED, (), "R"),
    "audit.export": EventCodes(AUDIT_LOG_USED, (), "R"),
    "audit.verify": EventCodes(AUDIT_LOG_USED, (), "E", OUTCOME_SERIOUS_FAILURE),
    PURGE_ACTION: EventCodes(AUDIT_LOG_USED, (), "D"),
    "fhir.auditevent.search": EventCodes(REST, (_rest("search-type"),), "E"),
    # The resources produced here, read and searched by the EHR (references mapped back to its ids), and
    # pushed to its FHIR server after sign-off (queued in the web app, which maps them; sent by a worker).
    "fhir.output.read": EventCodes(REST, (_rest("read"),), "R"),
    "fhir.output.search": EventCodes(REST, (_rest("search-type"),), "E"),
    "fhir.push.queue": EventCodes(Coding(DCM, "110106", "Export"), (PATIENT_RECORD,), "R"),
    "fhir.push.send": EventCodes(REST, (_rest("transaction"),), "E", OUTCOME_SERIOUS_FAILURE),
    # Bulk Data pulls from EHR sources: a source registered (the gateway's own client key made), the sources
    # page seen, a pull asked for (refused while one runs: failure outcome) and its end (counts only).
    "bulk.source.create": EventCodes(SECURITY_ALERT, (SECURITY_CONFIGURATION,), "C"),
    "bulk.source.switch": EventCodes(SECURITY_ALERT, (SECURITY_CONFIGURATION,), "U"),
    "bulk.source.view": EventCodes(APPLICATION_ACTIVITY, (), "R"),
    "bulk.export.request": EventCodes(IMPORT, (), "C"),
    "bulk.export.finish": EventCodes(IMPORT, (), "E", OUTCOME_SERIOUS_FAILURE),
    "bulk.export.cancel": EventCodes(IMPORT, (), "D"),
    "bulk.upload": EventCodes(IMPORT, (), "C"),
    # Model runs (a worker reads a de-identified record and creates suggestions) and the models' switches.
    "inference.run": EventCodes(APPLICATION_ACTIVITY, (PATIENT_RECORD,), "E", OUTCOME_SERIOUS_FAILURE),
    "inference.model.configure": EventCodes(SECURITY_ALERT, (SOFTWARE_CONFIGURATION,), "U"),
    "inference.model.view": EventCodes(APPLICATION_ACTIVITY, (), "R"),
    # Shadow versions: a shadow run (results only, no suggestions), and setting, promoting, rolling back.
    "inference.shadow.run": EventCodes(APPLICATION_ACTIVITY, (PATIENT_RECORD,), "E", OUTCOME_SERIOUS_FAILURE),
    "inference.model.shadow": EventCodes(SECURITY_ALERT, (SOFTWARE_CONFIGURATION,), "U"),
    "inference.model.promote": EventCodes(SECURITY_ALERT, (SOFTWARE_CONFIGURATION,), "U"),
    "inference.model.rollback": EventCodes(SECURITY_ALERT, (SOFTWARE_CONFIGURATION,), "U"),
    # Clinician review: the queue and a suggestion seen, and a decision signed (refusals: failure outcome).
    "review.queue.view": EventCodes(APPLICATION_ACTIVITY, (PATIENT_RECORD,), "R"),
    "review.suggestion.view": EventCodes(PATIENT_RECORD, (), "R"),
    "review.decision.sign": EventCodes(PATIENT_RECORD, (), "U"),
    # CDS Hooks: discovery and hook calls by a registered EHR (JWT refusals: failure outcome), feedback
    # recorded as a decision, and an EHR registered as a CDS Client.
    "cds.discovery": EventCodes(REST, (_rest("capabilities"),), "E"),
    "cds.service.call": EventCodes(PATIENT_RECORD, (_rest("operation"),), "E"),
    "cds.feedback": EventCodes(PATIENT_RECORD, (), "U"),
    "cds.auth.refuse": EventCodes(USER_AUTHENTICATION, (LOGIN,), "E"),
    "cds.issuer.register": EventCodes(SECURITY_ALERT, (SECURITY_CONFIGURATION,), "C"),
    # A patient refresh: the record of a patient not seen before read from the EHR's fhirServer during a hook
    # call ($everything or searches per type) and imported like the prefetch (nothing read: failure).
    "cds.patient.refresh": EventCodes(IMPORT, (_rest("search-type"),), "E", OUTCOME_SERIOUS_FAILURE),
    # Post-market monitoring: the periodic computation, a drift alert or subgroup flag it opens, a report.
    "monitoring.compute": EventCodes(APPLICATION_ACTIVITY, (), "E", OUTCOME_SERIOUS_FAILURE),
    "monitoring.drift.alert": EventCodes(SECURITY_ALERT, (), "E"),
    "monitoring.subgroup.flag": EventCodes(SECURITY_ALERT, (), "E"),
    "monitoring.drift.reset": EventCodes(APPLICATION_ACTIVITY, (SOFTWARE_CONFIGURATION,), "D"),
    "monitoring.report": EventCodes(Coding(DCM, "110106", "Export"), (), "R"),
}
DEFAULT_CODES = EventCodes(APPLICATION_ACTIVITY, (), "E")

# What the object acted on is, by its kind (BALP: entity[data].role).
_OBJECT_ROLES: dict[str, Coding] = {
    "IngestJob": Coding(OBJECT_ROLE, "20", "Job"),
    "BulkBatch": Coding(OBJECT_ROLE, "20", "Job"),
    "smart.access_token": Coding(OBJECT_ROLE, "13", "Security Resource"),
    "smart.ehr_client": Coding(OBJECT_ROLE, "13", "Security Resource"),
    "User": Coding(OBJECT_ROLE, "6", "User"),
    "Patient": Coding(OBJECT_ROLE, "1", "Patient"),
    "InferenceRun": Coding(OBJECT_ROLE, "20", "Job"),
    "Model": Coding(OBJECT_ROLE, "4", "Domain Resource"),
    "cds.issuer": Coding(OBJECT_ROLE, "13", "Security Resource"),
    "cds.service": Coding(OBJECT_ROLE, "4", "Domain Resource"),
    "bulk.EhrSource": Coding(OBJECT_ROLE, "13", "Security Resource"),
    "BulkExport": Coding(OBJECT_ROLE, "20", "Job"),
}
_DOMAIN_RESOURCE = Coding(OBJECT_ROLE, "4", "Domain Resource")
_PERSON = Coding(AUDIT_ENTITY_TYPE, "1", "Person")
_SYSTEM_OBJECT = Coding(AUDIT_ENTITY_TYPE, "2", "System Object")
_PATIENT_ROLE = Coding(OBJECT_ROLE, "1", "Patient")
_TRANSACTION = Coding(
    BALP_ENTITY_TYPE, "XrequestId", "transport specific unique identifier where http X-Request-Id is used"
)
_SOURCE_ROLE = Coding(DCM, "110153", "Source Role ID")
_DESTINATION_ROLE = Coding(DCM, "110152", "Destination Role ID")
_APPLICATION = Coding(DCM, "110150", "Application")
_AUTHOR = Coding(PARTICIPATION_TYPE, "AUT", "author (originator)")
_INFORMATION_RECIPIENT = Coding(PARTICIPATION_TYPE, "IRCP", "information recipient")
_APPLICATION_SERVER = Coding(SECURITY_SOURCE_TYPE, "4", "Application Server")


def event_codes(action: str) -> EventCodes:
    return EVENT_CODES.get(action, DEFAULT_CODES)


def outcome_code(action: str, outcome: str) -> str:
    return OUTCOME_SUCCESS if outcome == "success" else event_codes(action).failure_outcome


class StoredEvent(Protocol):
    """The fields of one audit row that the export reads (an ``AuditEvent`` model instance has them)."""

    seq: int
    occurred_at: datetime
    actor_type: str
    actor_id: str
    action: str
    outcome: str
    object_type: str
    object_id: str
    organization: str
    patient_pseudonym: str
    request_id: str
    detail: Mapping[str, Any]
    prev_hash: str
    hash: str


def _codeable(coding: Coding) -> dict[str, Any]:
    return {"coding": [coding.as_fhir()]}


def _identifier(system: str, value: str) -> dict[str, str]:
    return {"system": system, "value": value}


def _gateway_agent(observer: str) -> dict[str, Any]:
    return {
        "type": _codeable(_DESTINATION_ROLE),
        "who": {"identifier": _identifier("urn:ietf:rfc:3986", observer), "display": "clinical-ai gateway"},
        "requestor": False,
    }


def _agents(event: StoredEvent, codes: EventCodes, observer: str) -> list[dict[str, Any]]:
    who: dict[str, Any] = {"identifier": _identifier(ACTOR_SYSTEM_PREFIX + event.actor_type, event.actor_id)}
    if event.actor_type == "user":
        role = _AUTHOR if codes.action in ("C", "U", "D") else _INFORMATION_RECIPIENT
        return [{"type": _codeable(role), "who": who, "requestor": True}, _gateway_agent(observer)]
    if event.actor_type == "ehr_client":
        return [{"type": _codeable(_SOURCE_ROLE), "who": who, "requestor": True}, _gateway_agent(observer)]
    if event.actor_type == "anonymous":
        anonymous = {"display": "anonymous (not authenticated)"}
        return [
            {"type": _codeable(_SOURCE_ROLE), "who": anonymous, "requestor": True},
            _gateway_agent(observer),
        ]
    # A worker task or a management command of the gateway itself.
    return [{"type": _codeable(_APPLICATION), "who": who, "requestor": True}]


def _detail_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _entities(event: StoredEvent) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    if event.request_id:
        entities.append({"type": _TRANSACTION.as_fhir(), "what": {"identifier": {"value": event.request_id}}})
    if event.patient_pseudonym:
        entities.append(
            {
                "type": _PERSON.as_fhir(),
                "role": _PATIENT_ROLE.as_fhir(),
                "what": {
                    "type": "Patient",
                    "identifier": _identifier(PATIENT_PSEUDONYM_SYSTEM, event.patient_pseudonym),
                },
            }
        )
    if event.object_type or event.object_id or event.detail:
        data: dict[str, Any] = {
            "type": _SYSTEM_OBJECT.as_fhir(),
            "role": _OBJECT_ROLES.get(event.object_type, _DOMAIN_RESOURCE).as_fhir(),
        }
        if event.object_id:
            data["what"] = {
                "identifier": _identifier(
                    OBJECT_SYSTEM_PREFIX + (event.object_type or "object"), event.object_id
                )
            }
        elif event.object_type:
            data["description"] = event.object_type
        details = [
            {"type": key, "valueString": _detail_text(value)}
            for key, value in sorted(event.detail.items())
            if value is not None and value != []
        ]
        if details:
            data["detail"] = details
        entities.append(data)
    return entities


def _outcome_description(event: StoredEvent) -> str:
    parts = [
        f"{key} {event.detail[key]}"
        for key in ("status", "error", "reason")
        if isinstance(event.detail.get(key), str | int) and not isinstance(event.detail.get(key), bool)
    ]
    return "; ".join(parts) or "failure"


def audit_event_resource(event: StoredEvent, *, observer: str) -> dict[str, Any]:
    """One stored event as an R4 AuditEvent. ``observer``: this gateway's base URL, which recorded it."""
    codes = event_codes(event.action)
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(event.seq),
        "extension": [
            {
                "url": CHAIN_EXTENSION,
                "extension": [
                    {"url": "hash", "valueString": event.hash},
                    {"url": "prevHash", "valueString": event.prev_hash},
                ],
            }
        ],
        "type": codes.type.as_fhir(),
        "subtype": [c.as_fhir() for c in codes.subtypes]
        + [Coding(ACTION_SYSTEM, event.action, event.action).as_fhir()],
        "action": codes.action,
        "recorded": event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "outcome": outcome_code(event.action, event.outcome),
        "agent": _agents(event, codes, observer),
        "source": {
            "observer": {
                "identifier": _identifier("urn:ietf:rfc:3986", observer),
                "display": "clinical-ai gateway",
            },
            "type": [_APPLICATION_SERVER.as_fhir()],
        },
    }
    if event.outcome != "success":
        resource["outcomeDesc"] = _outcome_description(event)
    if event.organization:
        # The site (organization) of a multi-site gateway where the event happened.
        resource["source"]["site"] = event.organization
    entities = _entities(event)
    if entities:
        resource["entity"] = entities
    return resource


def actions_with_type(system: str | None, code: str) -> tuple[frozenset[str] | None, frozenset[str]]:
    """The actions whose events carry this ``type``: ``(only these, or None for any; never these)``. The
    default type also covers every action not in the table, hence the exclusion form."""
    if DEFAULT_CODES.type.matches(system, code):
        return None, frozenset(a for a, c in EVENT_CODES.items() if not c.type.matches(system, code))
    return frozenset(a for a, c in EVENT_CODES.items() if c.type.matches(system, code)), frozenset()


def actions_with_subtype(system: str | None, code: str) -> frozenset[str] | None:
    """The actions whose events carry this ``subtype``; None when it names one of our actions directly
    (``ACTION_SYSTEM``, or a bare code that is no standard subtype), which the caller matches exactly."""
    standard = frozenset(
        a for a, c in EVENT_CODES.items() if any(s.matches(system, code) for s in c.subtypes)
    )
    if system == ACTION_SYSTEM or (system is None and not standard):
        return None
    return standard


def actions_with_outcome(code: str) -> tuple[str, frozenset[str] | None, frozenset[str]]:
    """For an ``outcome`` search: our outcome, and the actions (only these / never these) whose failures
    take this code."""
    if code == OUTCOME_SUCCESS:
        return "success", None, frozenset()
    if code == DEFAULT_CODES.failure_outcome:
        return "failure", None, frozenset(a for a, c in EVENT_CODES.items() if c.failure_outcome != code)
    return "failure", frozenset(a for a, c in EVENT_CODES.items() if c.failure_outcome == code), frozenset()
