"""Client public keys (JWK, RFC 7517), as plain Python: which keys may sign a SMART client assertion,
checking a registered JWK Set, picking the key that verifies a token, turning a PEM public key into a JWK
with an RFC 7638 thumbprint kid, and verifying a compact JWS with PyJWT's own claim checks."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

SigningAlgorithm = Literal["RS384", "ES384"]
# SMART Backend Services: clients sign with RS384 or ES384, and the server must support both.
SIGNING_ALGORITHMS: tuple[SigningAlgorithm, ...] = ("RS384", "ES384")
MIN_RSA_BITS = 2048
# Members that only a private or symmetric key has. A JWK Set holding any of them has leaked a secret.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}


class JwkError(ValueError):
    """A JWK or JWK Set that cannot be used: malformed, private, or of a type SMART does not allow."""


class UnknownKid(JwkError):
    """No key of the set fits the token's kid and algorithm. A set fetched from a URL may have rotated
    since it was cached, so the caller may refetch it once and try again."""


def jwk_fits(jwk: Mapping[str, Any], algorithm: str) -> bool:
    """Whether this public key may verify a signature made with ``algorithm`` (RS384 or ES384)."""
    if algorithm == "RS384":
        type_fits = jwk.get("kty") == "RSA"
    elif algorithm == "ES384":
        type_fits = jwk.get("kty") == "EC" and jwk.get("crv") == "P-384"
    else:
        return False
    key_ops = jwk.get("key_ops")
    return (
        type_fits
        and jwk.get("alg") in (None, algorithm)
        and jwk.get("use") in (None, "sig")
        and (key_ops is None or (isinstance(key_ops, list) and "verify" in key_ops))
        and not (_PRIVATE_MEMBERS & jwk.keys())
    )


def jwk_load(jwk: Mapping[str, Any], algorithm: str) -> jwt.PyJWK:
    """The key object PyJWT verifies with; ``JwkError`` when the key is not usable for ``algorithm``."""
    if not jwk_fits(jwk, algorithm):
        raise JwkError(f"the key does not fit {algorithm}")
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=algorithm)
    except jwt.PyJWTError as exc:
        # The PyJWT message quotes the whole JWK; a public key, but keep messages short and uniform.
        raise JwkError(f"the key cannot be loaded ({type(exc).__name__})") from None
    if isinstance(key.key, rsa.RSAPublicKey) and key.key.key_size < MIN_RSA_BITS:
        raise JwkError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    return key


def jwks_keys(jwks: object) -> list[Mapping[str, Any]]:
    """The keys of a JWK Set, checked for shape and for secrets; raises ``JwkError``."""
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise JwkError('a JWK Set is a JSON object with a "keys" array')
    keys: list[Mapping[str, Any]] = []
    for index, jwk in enumerate(jwks["keys"]):
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kty"), str):
            raise JwkError(f'keys[{index}] is not a JWK (a JSON object with "kty")')
        if _PRIVATE_MEMBERS & jwk.keys():
            raise JwkError(
                f"keys[{index}] holds private or symmetric key material; register public keys only"
            )
        if "kid" in jwk and not isinstance(jwk["kid"], str):
            raise JwkError(f"keys[{index}].kid is not a string")
        keys.append(jwk)
    return keys


def jwk_select(jwks: Mapping[str, Any], *, kid: object, algorithm: str) -> Mapping[str, Any]:
    """The key of ``jwks`` that is to verify a token signed with ``algorithm`` whose header names ``kid``
    (None when it names none). Candidates are the keys that fit the algorithm (type, curve, use, alg).

    One rule for SMART client assertions and CDS Hooks JWTs:

    - a kid: the candidate with that kid, else ``UnknownKid``;
    - no kid and exactly one candidate: that key;
    - no kid and no candidate: ``UnknownKid`` (a rotated set may bring one);
    - no kid and several candidates: refused as ambiguous (``JwkError``, not worth a refetch). SMART Backend
      Services requires a kid, and trying each key in turn would let one forged token cost us a
      signature check per registered key.
    """
    candidates = [jwk for jwk in jwks_keys(jwks) if jwk_fits(jwk, algorithm)]
    if kid is not None:
        matching = [jwk for jwk in candidates if jwk.get("kid") == kid]
        if not matching:
            raise UnknownKid(f"no {algorithm} key has kid {str(kid)[:64]!r}")
        return matching[0]  # kids are unique within a registered set (jwks_check_registrable)
    if not candidates:
        raise UnknownKid(f"no key fits {algorithm}")
    if len(candidates) > 1:
        raise JwkError(f"several keys fit {algorithm}: the header must name one by kid")
    return candidates[0]


def jwks_check_registrable(jwks: object) -> None:
    """Refuse a JWK Set that has secrets in it, duplicate kids, or no key able to sign RS384/ES384."""
    keys = jwks_keys(jwks)
    kids = [jwk["kid"] for jwk in keys if "kid" in jwk]
    if len(kids) != len(set(kids)):
        raise JwkError("two keys share a kid")
    usable = 0
    for index, jwk in enumerate(keys):
        for algorithm in SIGNING_ALGORITHMS:
            if jwk_fits(jwk, algorithm):
                try:
                    jwk_load(jwk, algorithm)
                except JwkError as exc:
                    raise JwkError(f"keys[{index}]: {exc}") from None
                usable += 1
    if usable == 0:
        raise JwkError("no key in the set can verify RS384 (RSA) or ES384 (EC P-384) signatures")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint: the required members, sorted, without whitespace."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise JwkError(f"no thumbprint for kty {str(jwk.get('kty'))[:16]!r}")
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def public_jwk_from_pem(pem: bytes) -> dict[str, Any]:
    """A JWK for a PEM public key: RSA (>= 2048 bits, for RS384) or EC P-384 (for ES384), with
    ``kid`` = its RFC 7638 thumbprint. A private key is refused: it must never leave the client."""
    if b"PRIVATE KEY" in pem:
        raise JwkError("this is a private key; give the public key (openssl pkey -pubout)")
    try:
        key = load_pem_public_key(pem)
    except ValueError:
        raise JwkError("not a PEM public key") from None
    jwk: dict[str, Any]
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise JwkError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
        jwk = dict(RSAAlgorithm.to_jwk(key, as_dict=True))
        jwk["alg"] = "RS384"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP384R1):
            raise JwkError(f"EC keys must be on P-384 (ES384), not {key.curve.name}")
        jwk = dict(ECAlgorithm.to_jwk(key, as_dict=True))
        jwk["alg"] = "ES384"
    else:
        raise JwkError("only RSA and EC P-384 public keys can sign SMART client assertions")
    jwk["use"] = "sig"
    jwk["kid"] = jwk_thumbprint(jwk)
    return jwk


# --- verifying a compact JWS: shared by SMART client assertions and CDS Hooks JWTs ---------------------
# Each caller passes the exception it answers with, so its own refusals (an OAuth invalid_client, a bare
# 401) come out of one implementation of the rules.


def jws_algorithm(header: Mapping[str, Any], rejected: type[Exception]) -> str:
    """The header's ``alg`` when it is one we accept (RS384, ES384: never ``none`` or HMAC), after the
    ``typ`` and ``crit`` checks."""
    algorithm = header.get("alg")
    if algorithm not in SIGNING_ALGORITHMS:
        raise rejected(
            f"alg {str(algorithm)[:16]!r} is not accepted; sign with one of {', '.join(SIGNING_ALGORITHMS)}"
        )
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        raise rejected("the typ header, when present, must be JWT")
    if "crit" in header:
        raise rejected("critical header extensions are not supported")
    return str(algorithm)


def jws_verify(
    token: str,
    key: Any,
    algorithm: str,
    *,
    rejected: type[Exception],
    what: str,
    audience: str | Sequence[str],
    issuer: str,
    subject: str | None,
    leeway_seconds: int,
    required: Sequence[str],
) -> dict[str, Any]:
    """The payload once PyJWT has verified the signature and the registered claims: ``aud`` (one of
    ``audience``), ``iss``, ``sub`` (when ``subject`` is given), ``exp``, ``nbf`` and ``iat`` within
    ``leeway_seconds`` of the system clock, and every claim in ``required`` present. PyJWT's errors become
    ``rejected`` with a short message; ``what`` names the token in it ("the client assertion"). The rules
    PyJWT does not know (lifetime, jti) are the caller's."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise rejected(f"{what} cannot be decoded") from None
    # RFC 7519 NumericDates are JSON numbers. PyJWT would take "1700000000" (a string) through int(), and
    # says "cannot be decoded" rather than which claim is wrong.
    for name in ("exp", "nbf", "iat"):
        numeric_date(unverified, name, rejected)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=[algorithm],
            audience=audience if isinstance(audience, str) else list(audience),
            issuer=issuer,
            subject=subject,
            leeway=leeway_seconds,
            options={"require": list(required), "strict_aud": False},
        )
    except jwt.InvalidSignatureError:
        raise rejected(f"{what} signature does not verify") from None
    except jwt.MissingRequiredClaimError as exc:
        raise rejected(f"the {exc.claim} claim is required") from None
    except jwt.ExpiredSignatureError:
        raise rejected(f"{what} has expired") from None
    except jwt.ImmatureSignatureError:
        raise rejected(f"{what} is not valid yet: iat or nbf is in the future") from None
    except jwt.InvalidAudienceError:
        expected = audience[:200] if isinstance(audience, str) else "the URL of the endpoint called"
        raise rejected(f"the aud claim must be {expected}") from None
    except jwt.InvalidIssuerError:
        raise rejected("the iss claim is not the issuer whose keys verify it") from None
    except jwt.exceptions.InvalidSubjectError:
        expected = f"equal to iss, {subject[:128]!r}" if subject is not None else "a string"
        raise rejected(f"the sub claim must be {expected}") from None
    except jwt.exceptions.InvalidJTIError:
        raise rejected("the jti claim must be a string") from None
    except jwt.PyJWTError:
        raise rejected(f"{what} cannot be decoded") from None
    return claims


def numeric_date(claims: Mapping[str, Any], name: str, rejected: type[Exception]) -> float | None:
    """A NumericDate claim as a float, None when absent; anything else is refused."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise rejected(f"the {name} claim is not a NumericDate")
    return float(value)
