"""Registering an EHR as a CDS Client (an issuer of JWTs): its keys, its jku allowlist, the FHIR servers
this gateway may read from with the tokens it hands over, and the SMART client its data is ingested as."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from clinical_ai.audit.services import Actor, audit_record
from integrations.cds_hooks.models import CdsIssuer
from integrations.smart.jwk import JwkError, jwks_check_registrable, jwks_keys
from integrations.smart.jwks import LOOPBACK_HOSTS, MAX_JWKS_BYTES, JwksUrlError, jwks_url_check
from integrations.smart.models import EhrClient

ISSUER_REGISTER_ACTION = "cds.issuer.register"
_SLUG = re.compile(r"[^a-z0-9]+")


class IssuerRegistrationError(ValueError):
    """The registration is invalid; nothing was stored."""


def _url(url: str, what: str) -> str:
    url = url.strip()
    if len(url) > 500:
        raise IssuerRegistrationError(f"{what} is longer than 500 characters")
    parts = urlsplit(url)
    if parts.username or parts.password or not parts.hostname:
        raise IssuerRegistrationError(f"{what} must be an absolute URL without credentials")
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        raise IssuerRegistrationError(f"{what} must be https (plain http only for a loopback host)")
    return url.rstrip("/") if what != "a jku URL" else url


def cds_issuer_register(
    *,
    iss: str,
    name: str,
    ehr_client: EhrClient,
    jwks: Mapping[str, Any] | None = None,
    jwks_url: str = "",
    allowed_jku: Sequence[str] = (),
    fhir_servers: Sequence[str] = (),
    service_base_url: str = "",
    actor: Actor,
) -> CdsIssuer:
    iss, name = iss.strip(), name.strip()
    if not iss or len(iss) > 255:
        raise IssuerRegistrationError("iss must be 1 to 255 characters")
    if not name or len(name) > 200:
        raise IssuerRegistrationError("the name must be 1 to 200 characters")
    if jwks is not None and jwks_url:
        raise IssuerRegistrationError("give an inline JWK Set or a JWKS URL, not both")
    if jwks is None and not jwks_url and not allowed_jku:
        raise IssuerRegistrationError("give a JWK Set, a JWKS URL or at least one allowed jku URL")
    stored: dict[str, Any] | None = None
    if jwks is not None:
        try:
            jwks_check_registrable(jwks)
            serialized = json.dumps(jwks)
        except (JwkError, TypeError, ValueError) as exc:
            raise IssuerRegistrationError(f"JWK Set: {exc}") from None
        if len(serialized) > MAX_JWKS_BYTES:
            raise IssuerRegistrationError(f"the JWK Set is larger than {MAX_JWKS_BYTES} bytes")
        stored = json.loads(serialized)
    for url in [jwks_url, *allowed_jku] if jwks_url else list(allowed_jku):
        try:
            jwks_url_check(url)
        except JwksUrlError as exc:
            raise IssuerRegistrationError(str(exc)) from None
    servers = [_url(url, "a FHIR server URL") for url in fhir_servers]
    base = _url(service_base_url, "the service base URL") if service_base_url else ""
    if CdsIssuer.objects.filter(iss=iss).exists():
        raise IssuerRegistrationError(f"iss {iss[:100]!r} is registered already")
    organization = ehr_client.organization
    try:
        with transaction.atomic():
            slug = _SLUG.sub("-", iss.lower()).strip("-")[:100]
            user = get_user_model()(
                username=f"cds-ehr-{slug}"[:150],
                first_name="EHR user via",
                last_name=name[:150],
                is_active=False,  # a service account: it signs EHR feedback and cannot sign in
            )
            user.set_unusable_password()
            user.save()
            issuer = CdsIssuer.objects.create(
                iss=iss,
                name=name,
                organization=organization,
                ehr_client=ehr_client,
                feedback_user=user,
                jwks=stored,
                jwks_url=jwks_url,
                allowed_jku=list(allowed_jku),
                fhir_servers=servers,
                service_base_url=base,
            )
            audit_record(
                actor=actor,
                action=ISSUER_REGISTER_ACTION,
                object_type="cds.issuer",
                object_id=str(issuer.external_id),
                organization=organization.slug,
                detail={
                    "iss": iss[:200],
                    "ehr_client": ehr_client.client_id,
                    "key_source": "inline" if stored is not None else ("url" if jwks_url else "jku"),
                    "key_ids": [str(k.get("kid", ""))[:64] for k in jwks_keys(stored)][:20] if stored else [],
                    "jku_hosts": sorted({urlsplit(u).hostname or "" for u in allowed_jku})[:20],
                    "fhir_server_hosts": sorted({urlsplit(u).hostname or "" for u in servers})[:20],
                },
            )
    except IntegrityError:
        raise IssuerRegistrationError("this iss (or its service account name) is taken") from None
    return issuer
