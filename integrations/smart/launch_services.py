"""Opening clinical-ai from inside the EHR (SMART App Launch 2.x, EHR launch), and registering the EHRs that
may do it.

The EHR opens ``/launch?iss=<its FHIR base URL>&launch=<opaque>``. Only a registered, enabled ``iss`` goes
any further: nothing is fetched from any other. Its ``.well-known/smart-configuration`` names the
authorization server; the person is sent there through the project's OpenID Connect client
(``clinical_ai.accounts.sso.client``: PKCE, state, nonce, the id_token verified) with ``launch`` and
``aud=iss``. Back at ``/launch/callback``, the id_token's ``fhirUser`` (or the registered claim) names the
staff account through ``ExternalIdentity(issuer=<the registered iss>, subject=<"Practitioner/123">)``; the
account must review at the issuer's site (clinician or auditor there); the token answer's ``patient`` is
turned into this site's pseudonym(s) through the vault, and the person lands on that patient's review page
(or on the suggestion a CDS Hooks card's ``appContext`` names, when it is this site's and this patient's).

Every refusal is audited (``auth.launch_failed`` with a reason code) and signs nobody in. The tokens are
used for nothing after the launch and kept nowhere: not in the session, the log or the audit.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from uuid import UUID

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from clinical_ai.accounts.models import Organization
from clinical_ai.accounts.sso.client import (
    OidcProvider,
    SsoRefused,
    authorization_complete,
    authorization_redirect,
)
from clinical_ai.accounts.sso.services import sso_session_start
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.crypto import DecryptionError, SealedValue
from clinical_ai.core.http import HttpFailure, http_request, url_host
from clinical_ai.core.sealing import open_json, seal_json
from clinical_ai.vault.services import patient_pseudonyms_for_reference
from integrations.smart.launch_selectors import (
    iss_normalized,
    launch_issuer_find,
    launch_role_held,
    launch_staff_account,
    launch_suggestion,
    patient_id_valid,
    patient_in_context,
    staff_reference,
)
from integrations.smart.models import SmartLaunchIssuer

LAUNCH_SCOPE = "launch openid fhirUser"
LAUNCH_PURPOSE = "launch"
LAUNCH_ACTION = "auth.launch"
LAUNCH_FAILED_ACTION = "auth.launch_failed"
REGISTER_ACTION = "smart.launch_issuer.register"
DISABLE_ACTION = "smart.launch_issuer.disable"
# What a CDS Hooks card's smart link carries as appContext: "suggestion=<uuid>" (form-encoded, so that
# more keys can be added later without breaking older cards).
APP_CONTEXT_SUGGESTION = "suggestion"
# The launches this browser has under way: state -> issuer pk, to find the EHR the answer comes from.
PENDING_LAUNCHES_KEY = "smart_launches"
MAX_PENDING_LAUNCHES = 8
MAX_LAUNCH_PARAMETER = 2048
SMART_CONFIGURATION_PATH = "/.well-known/smart-configuration"
CONFIGURATION_MAX_AGE_SECONDS = 3600
CONFIGURATION_MAX_BYTES = 64 * 1024
CONFIGURATION_TIMEOUT_SECONDS = 10.0


class LaunchRegistrationError(ValueError):
    """The registration is not valid; nothing was stored."""


class LaunchRefused(Exception):
    """A launch that signs nobody in; already audited. ``reason`` is the audit's code and picks the page;
    ``ehr_user`` is the person's EHR reference (``Practitioner/123``) where it helps an administrator link
    them, never a patient's identifier."""

    def __init__(self, reason: str, *, status: int = 400, site_name: str = "", ehr_user: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.site_name = site_name
        self.ehr_user = ehr_user


# --- registration -------------------------------------------------------------------------------------


def _secret_associated_data(iss: str) -> str:
    return f"smart-launch-issuer-secret|{iss}"


def _hosts_parse(extra_hosts: Collection[str]) -> list[str]:
    hosts = sorted({host.strip().lower() for host in extra_hosts if host.strip()})
    for host in hosts:
        if "/" in host or ":" in host or " " in host or len(host) > 253:
            raise LaunchRegistrationError(f"{host!r} is not a host name (no scheme, port or path)")
    return hosts


def launch_issuer_register(
    *,
    organization: Organization,
    iss: str,
    client_id: str,
    actor: Actor,
    client_secret: str = "",
    staff_claim: str = "fhirUser",
    extra_hosts: Collection[str] = (),
) -> tuple[SmartLaunchIssuer, bool]:
    """Register (or update, enabled again) the EHR whose FHIR base URL is ``iss`` for ``organization``;
    returns the row and whether it is new. A ``client_secret`` makes it a confidential client (the secret
    sealed with the key ring); without one it is a public client (PKCE alone). Audited."""
    iss = iss_normalized(iss)
    parts = urlsplit(iss)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise LaunchRegistrationError(
            "the iss must be the EHR's FHIR base URL, such as https://ehr.example/fhir"
        )
    if parts.scheme == "http" and url_host(iss) not in ("127.0.0.1", "::1", "localhost"):
        raise LaunchRegistrationError("the iss must be https (plain http only for this machine, in tests)")
    if not client_id.strip() or len(client_id) > 255:
        raise LaunchRegistrationError("the client id is required (at most 255 characters)")
    if not staff_claim.strip() or len(staff_claim) > 64:
        raise LaunchRegistrationError("the staff claim must be a claim name such as fhirUser")
    hosts = _hosts_parse(extra_hosts)
    with transaction.atomic():
        issuer, created = SmartLaunchIssuer.objects.select_for_update().get_or_create(
            iss=iss, defaults={"organization": organization, "client_id": client_id.strip()}
        )
        issuer.organization = organization
        issuer.client_id = client_id.strip()
        issuer.staff_claim = staff_claim.strip()
        issuer.extra_hosts = " ".join(hosts)
        issuer.enabled = True
        if client_secret:
            sealed = seal_json({"client_secret": client_secret}, associated_data=_secret_associated_data(iss))
            issuer.secret_key_id = sealed.key_id
            issuer.secret_nonce = sealed.nonce
            issuer.secret_ciphertext = sealed.ciphertext
        else:
            issuer.secret_key_id, issuer.secret_nonce, issuer.secret_ciphertext = "", b"", b""
        issuer.save()
        audit_record(
            actor=actor,
            action=REGISTER_ACTION,
            object_type="smart.launch_issuer",
            object_id=str(issuer.external_id),
            organization=organization.slug,
            detail={
                "iss": iss[:256],
                "client_id": issuer.client_id[:256],
                "confidential": bool(client_secret),
                "staff_claim": issuer.staff_claim,
                "extra_hosts": hosts[:8],
                "created": created,
            },
        )
    return issuer, created


def launch_issuer_disable(*, iss: str, actor: Actor) -> SmartLaunchIssuer:
    """Stop launches from ``iss`` (the row stays, for the audit trail and a later re-registration)."""
    with transaction.atomic():
        issuer = (
            SmartLaunchIssuer.objects.select_for_update()
            .select_related("organization")
            .filter(iss=iss_normalized(iss))
            .first()
        )
        if issuer is None:
            raise LaunchRegistrationError("no EHR is registered with this iss")
        was_enabled = issuer.enabled
        issuer.enabled = False
        issuer.save(update_fields=["enabled"])
        audit_record(
            actor=actor,
            action=DISABLE_ACTION,
            object_type="smart.launch_issuer",
            object_id=str(issuer.external_id),
            organization=issuer.organization.slug,
            detail={"iss": issuer.iss[:256], "was_enabled": was_enabled},
        )
    return issuer


def launch_issuer_secret(issuer: SmartLaunchIssuer) -> str:
    """The confidential client's secret, "" for a public client."""
    if not issuer.secret_key_id:
        return ""
    sealed = SealedValue(issuer.secret_key_id, bytes(issuer.secret_nonce), bytes(issuer.secret_ciphertext))
    document = open_json(sealed, associated_data=_secret_associated_data(issuer.iss))
    return str(document.get("client_secret", "")) if isinstance(document, dict) else ""


# --- the EHR's authorization server --------------------------------------------------------------------

_configurations: dict[str, tuple[float, str]] = {}
_configurations_lock = threading.Lock()


def _issuer_hosts(issuer: SmartLaunchIssuer) -> frozenset[str]:
    return frozenset({url_host(issuer.iss), *issuer.extra_hosts.split()})


def _authorization_server_issuer(issuer: SmartLaunchIssuer) -> str:
    """The ``issuer`` that the EHR's SMART configuration announces (its id_tokens' ``iss``), read at most
    once an hour. Only from the registered ``iss``'s host (or its extra hosts); no redirect followed."""
    url = issuer.iss + SMART_CONFIGURATION_PATH
    with _configurations_lock:
        kept = _configurations.get(url)
    if kept is not None and time.time() - kept[0] < CONFIGURATION_MAX_AGE_SECONDS:
        return kept[1]
    try:
        reply = http_request(
            "GET",
            url,
            allowed_hosts=_issuer_hosts(issuer),
            timeout_seconds=CONFIGURATION_TIMEOUT_SECONDS,
            max_response_bytes=CONFIGURATION_MAX_BYTES,
            headers={"Accept": "application/json"},
        )
        document = json.loads(reply.body) if reply.ok else None
    except (HttpFailure, ValueError):
        document = None
    announced = document.get("issuer") if isinstance(document, dict) else None
    if not isinstance(announced, str) or not announced.startswith(("https://", "http://")):
        raise SsoRefused("metadata", "the EHR's SMART configuration cannot be read or names no issuer")
    with _configurations_lock:
        _configurations[url] = (time.time(), announced)
    return announced


def launch_provider(issuer: SmartLaunchIssuer) -> OidcProvider:
    """The EHR's authorization server as an OpenID provider for the project's client."""
    return OidcProvider(
        key=f"smart-{issuer.pk}",
        issuer=_authorization_server_issuer(issuer),
        client_id=issuer.client_id,
        client_secret=launch_issuer_secret(issuer),
        scope=LAUNCH_SCOPE,
        metadata_url=issuer.iss + SMART_CONFIGURATION_PATH,
        allowed_hosts=_issuer_hosts(issuer),
    )


# --- refusals -----------------------------------------------------------------------------------------

# The reasons whose fault lies with the EHR's or the network's answer, not with the person.
_UNREACHABLE = {"unreachable", "metadata"}


def _refuse(
    reason: str,
    *,
    request_id: str,
    status: int = 400,
    issuer: SmartLaunchIssuer | None = None,
    user: Any | None = None,
    ehr_user: str = "",
    patient_pseudonym: str = "",
    detail: Mapping[str, Any] | None = None,
) -> LaunchRefused:
    """Record the refusal and return the exception to raise. The actor is anonymous: nobody signed in."""
    audit_record(
        actor=Actor.anonymous(),
        action=LAUNCH_FAILED_ACTION,
        outcome=Outcome.FAILURE,
        object_type="User" if user is not None else "",
        object_id=str(user.pk) if user is not None else "",
        organization=issuer.organization.slug if issuer is not None else "",
        patient_pseudonym=patient_pseudonym,
        request_id=request_id,
        detail={
            "reason": reason,
            **({"issuer": issuer.iss[:256]} if issuer is not None else {}),
            **({"ehr_user": ehr_user} if ehr_user else {}),
            **(detail or {}),
        },
    )
    return LaunchRefused(
        reason,
        status=status,
        site_name=issuer.organization.name if issuer is not None else "",
        ehr_user=ehr_user,
    )


def _sso_refusal(exc: SsoRefused, *, issuer: SmartLaunchIssuer, request_id: str) -> LaunchRefused:
    return _refuse(
        exc.reason,
        request_id=request_id,
        status=502 if exc.reason in _UNREACHABLE else 400,
        issuer=issuer,
        detail={"why": str(exc)[:200]},
    )


# --- the launch ---------------------------------------------------------------------------------------


def launch_start(
    request: HttpRequest, *, iss: str, launch: str, redirect_uri: str, request_id: str
) -> HttpResponseRedirect:
    """Send the person from the EHR's launch to the EHR's authorization server, or refuse (``LaunchRefused``,
    audited) an ``iss`` that is not registered or is disabled, or a launch without its parameters."""
    issuer = launch_issuer_find(iss=iss)
    if issuer is None:
        # The iss is not ours to trust: only its host goes on record, and nothing is fetched from it.
        raise _refuse("unknown-issuer", request_id=request_id, detail={"iss_host": url_host(iss)[:128]})
    if not issuer.enabled:
        raise _refuse("issuer-disabled", request_id=request_id, issuer=issuer)
    if not launch or len(launch) > MAX_LAUNCH_PARAMETER:
        raise _refuse("no-launch", request_id=request_id, issuer=issuer)
    try:
        provider = launch_provider(issuer)
        response = authorization_redirect(
            request,
            provider=provider,
            redirect_uri=redirect_uri,
            purpose=LAUNCH_PURPOSE,
            context={"issuer": str(issuer.pk)},
            launch=launch,
            aud=issuer.iss,
        )
    except SsoRefused as exc:
        raise _sso_refusal(exc, issuer=issuer, request_id=request_id) from None
    except DecryptionError:
        raise _refuse("client-secret", request_id=request_id, status=500, issuer=issuer) from None
    state = parse_qs(urlsplit(response.url).query).get("state", [""])[0]
    pending = request.session.get(PENDING_LAUNCHES_KEY)
    pending = dict(pending) if isinstance(pending, dict) else {}
    pending[state] = issuer.pk
    # Launches left unfinished (a closed tab) must not pile up in the session.
    request.session[PENDING_LAUNCHES_KEY] = dict(list(pending.items())[-MAX_PENDING_LAUNCHES:])
    return response


@dataclass(frozen=True)
class LaunchLanding:
    url: str  # where the person goes: the patient's review page, or the suggestion's


def _suggestion_named(app_context: Any) -> tuple[bool, UUID | None]:
    """(whether appContext names a suggestion, which): ``suggestion=<uuid>``; (True, None) when it names
    one that is not a uuid."""
    if not isinstance(app_context, str) or not app_context:
        return False, None
    values = parse_qs(app_context[:MAX_LAUNCH_PARAMETER]).get(APP_CONTEXT_SUGGESTION)
    if not values:
        return False, None
    try:
        return True, UUID(values[0])
    except ValueError:
        return True, None


def _pending_issuer(request: HttpRequest, state: str) -> int | None:
    pending = request.session.get(PENDING_LAUNCHES_KEY)
    if not isinstance(pending, dict) or not state or state not in pending:
        return None
    issuer_pk = pending.pop(state)
    request.session[PENDING_LAUNCHES_KEY] = pending
    return issuer_pk if isinstance(issuer_pk, int) else None


def launch_complete(request: HttpRequest, *, redirect_uri: str, request_id: str) -> LaunchLanding:
    """Take the EHR's authorization answer and sign the person in on the patient's review page; or refuse
    (``LaunchRefused``, audited, nobody signed in)."""
    issuer_pk = _pending_issuer(request, str(request.GET.get("state") or ""))
    issuer = (
        SmartLaunchIssuer.objects.select_related("organization").filter(pk=issuer_pk).first()
        if issuer_pk is not None
        else None
    )
    if issuer is None:
        raise _refuse("state", request_id=request_id)
    if not issuer.enabled:
        raise _refuse("issuer-disabled", request_id=request_id, issuer=issuer)
    try:
        provider = launch_provider(issuer)
        completed = authorization_complete(request, provider=provider, redirect_uri=redirect_uri)
    except SsoRefused as exc:
        raise _sso_refusal(exc, issuer=issuer, request_id=request_id) from None
    except DecryptionError:
        raise _refuse("client-secret", request_id=request_id, status=500, issuer=issuer) from None
    if completed.purpose != LAUNCH_PURPOSE or completed.context.get("issuer") != str(issuer.pk):
        raise _refuse("state", request_id=request_id, issuer=issuer)

    reference = staff_reference(value=completed.claims.get(issuer.staff_claim), iss=issuer.iss)
    if not reference:
        raise _refuse(
            "unknown-user", request_id=request_id, issuer=issuer, detail={"claim": issuer.staff_claim}
        )
    user = launch_staff_account(issuer=issuer, reference=reference)
    if user is None:
        raise _refuse("unknown-user", request_id=request_id, issuer=issuer, ehr_user=reference)
    if not launch_role_held(user=user, issuer=issuer):
        raise _refuse("no-role", request_id=request_id, status=403, issuer=issuer, user=user)
    patient_id = patient_id_valid(completed.token.get("patient"))
    if not patient_id:
        raise _refuse("no-patient", request_id=request_id, issuer=issuer, user=user)
    organization = issuer.organization
    pseudonyms = patient_pseudonyms_for_reference(
        organization_id=organization.pk,
        organization_slug=organization.slug,
        reference=f"Patient/{patient_id}",
    )
    patient = patient_in_context(organization_id=organization.pk, pseudonyms=pseudonyms)
    names_one, suggestion_id = _suggestion_named(completed.token.get("appContext"))
    suggestion = (
        launch_suggestion(external_id=suggestion_id, organization_id=organization.pk, pseudonyms=pseudonyms)
        if suggestion_id is not None
        else None
    )
    if names_one and suggestion is None:
        # Another site's suggestion, another patient's, or none at all: the card does not match the record
        # open in the EHR, so nothing is opened.
        raise _refuse(
            "other-site",
            request_id=request_id,
            status=403,
            issuer=issuer,
            user=user,
            patient_pseudonym=patient.pseudonym,
        )

    with transaction.atomic():
        auth_time = completed.claims.get("auth_time")
        sso_session_start(
            request=request,
            user=user,
            provider_key=provider.key,
            issuer=issuer.iss,
            subject=reference,
            method="smart",
            auth_time=auth_time if isinstance(auth_time, int) else int(time.time()),
            request_id=request_id,
            organization=organization.slug,
            detail={"second_factor": "none"},
        )
        audit_record(
            actor=Actor.user(user.pk),
            action=LAUNCH_ACTION,
            object_type="review.suggestion" if suggestion is not None else "Patient",
            object_id=str(suggestion.external_id) if suggestion is not None else "",
            organization=organization.slug,
            patient_pseudonym=patient.pseudonym,
            request_id=request_id,
            detail={"issuer": issuer.iss[:256], "pending": patient.pending, "pseudonyms": len(pseudonyms)},
        )
    if suggestion is not None:
        return LaunchLanding(url=reverse("review:suggestion", kwargs={"external_id": suggestion.external_id}))
    if patient.pending:
        messages.info(
            request,
            f"Opened from the EHR for this patient: {patient.pending} suggestion"
            f"{'s' if patient.pending != 1 else ''} waiting for review.",
        )
    else:
        messages.info(
            request,
            "Opened from the EHR for this patient: there is nothing to review for this patient.",
        )
    return LaunchLanding(url=f"{reverse('review:queue')}?{urlencode({'patient': patient.pseudonym})}")
