"""Real keys and real signed assertions for the SMART tests (generated once per session)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

TOKEN_URL = "http://testserver/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class KeyPair:
    private: Any
    alg: str
    kid: str

    @property
    def public_jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg == "RS384" else ECAlgorithm
        jwk = dict(algorithm.to_jwk(self.private.public_key(), as_dict=True))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    @property
    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    @property
    def private_pem(self) -> bytes:
        return bytes(
            self.private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


@cache
def _rsa(index: int) -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def _ec(index: int) -> Any:
    return ec.generate_private_key(ec.SECP384R1())


def rsa_key(index: int = 0, kid: str | None = None) -> KeyPair:
    return KeyPair(_rsa(index), "RS384", kid or f"rsa-{index}")


def ec_key(index: int = 0, kid: str | None = None) -> KeyPair:
    return KeyPair(_ec(index), "ES384", kid or f"ec-{index}")


def claims_for(
    client_id: str, *, aud: Any = TOKEN_URL, lifetime: int = 240, **overrides: Any
) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + lifetime,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def sign(
    key: KeyPair,
    claims: dict[str, Any],
    *,
    alg: str | None = None,
    kid: str | bool | None = True,
    headers: dict[str, Any] | None = None,
) -> str:
    """A signed JWT; ``kid=True`` uses the key's kid, ``kid=False`` leaves it out."""
    extra: dict[str, Any] = {"typ": "JWT", **(headers or {})}
    if kid is True:
        extra["kid"] = key.kid
    elif isinstance(kid, str):
        extra["kid"] = kid
    return jwt.encode(claims, key.private, algorithm=alg or key.alg, headers=extra)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forge(header: dict[str, Any], claims: dict[str, Any], *, secret: bytes | None = None) -> str:
    """A JWT built by hand: ``alg: none`` (no signature) or HMAC with ``secret`` (e.g. a public key)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b""
    if secret is not None:
        signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def token_form(
    assertion: str, scope: str | None = "system/*.read", **overrides: str | None
) -> dict[str, str]:
    form: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": scope,
        **overrides,
    }
    return {name: value for name, value in form.items() if value is not None}
