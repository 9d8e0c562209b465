"""References by business identifier: the keyed digest a held resource's identifier is stored and looked up
by, and (below) FHIR conditional references (``Practitioner?identifier=system|value``) resolved or kept as
logical identifier references. Plain Python, no Django.
"""

from __future__ import annotations

import hashlib
import hmac

_IDENTIFIER_KEY_DOMAIN = b"clinical-ai/fhir/identifier/v1"


def _length_prefixed(*parts: str) -> bytes:
    """Each part as its UTF-8 byte length, a colon and the bytes: no two different tuples encode alike,
    whatever characters (``|``, ``:``, NUL) the parts hold."""
    encoded = bytearray()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        encoded += f"{len(data)}:".encode("ascii")
        encoded += data
    return bytes(encoded)


def identifier_key(*, key: bytes, organization: str, resource_type: str, system: str, value: str) -> str:
    """The keyed HMAC-SHA256 (hex) of one business identifier of one resource type within one organization.

    ``HeldIdentifier.identifier_sha256`` holds this with ``key=settings.PSEUDONYM_KEY.encode()`` and the
    organization's slug: identifiers (an NPI, a facility code) are looked up without being stored in clear,
    and a digest from one organization never matches another's. System and value are taken exactly as
    given (FHIR token matching on ``system|value`` is exact); an empty system is a distinct, legal system.
    """
    if not key:
        raise ValueError("identifier_key needs a non-empty key")
    message = _IDENTIFIER_KEY_DOMAIN + _length_prefixed(organization, resource_type, system, value)
    return hmac.new(key, message, hashlib.sha256).hexdigest()
