"""The pure JWT rules (integrations.cds_hooks.jwt), without a database."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from integrations.cds_hooks.jwt import JwtRejected, UnknownKeyId, cds_jwt_verify, jwt_unverified
from tests.unit.cds_hooks.conftest import BASE, ISS, KeyPair, make_key, sign_jwt

AUD = BASE + "/clinical-ai-patient-view"


def verify(token: str, keys: list[KeyPair], **kwargs: Any) -> Any:
    return cds_jwt_verify(
        token=token,
        jwks={"keys": [k.jwk for k in keys]},
        issuer=kwargs.pop("issuer", ISS),
        audiences=kwargs.pop("audiences", {AUD}),
        now=kwargs.pop("now", datetime.now(UTC)),
        max_lifetime_seconds=300,
        clock_skew_seconds=60,
    )


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_a_good_token_verifies(alg: str) -> None:
    key = make_key(alg)
    verified = verify(sign_jwt(key, aud=AUD), [key])
    assert verified.iss == ISS and verified.sub == "ehr-client-7" and verified.algorithm == alg
    assert verified.key_id == key.kid


def test_aud_may_be_a_list() -> None:
    key = make_key("ES384")
    assert verify(sign_jwt(key, aud=["https://other.example", AUD]), [key]).jti


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aud": BASE + "/other"}, "aud"),
        ({"aud": AUD, "lifetime": -120}, "expired"),
        ({"aud": AUD, "iat_offset": 600}, "future"),
        ({"aud": AUD, "lifetime": 3600}, "longer"),
        ({"aud": AUD, "drop": ("jti",)}, "jti"),
        ({"aud": AUD, "drop": ("exp",)}, "exp"),
        ({"aud": AUD, "drop": ("iat",)}, "iat"),
        ({"aud": AUD, "drop": ("sub",)}, "sub"),
        ({"aud": AUD, "iss": "https://someone-else.example"}, "iss"),
    ],
)
def test_claims_are_checked(kwargs: dict[str, Any], message: str) -> None:
    key = make_key("ES384")
    with pytest.raises(JwtRejected, match=message):
        verify(sign_jwt(key, **kwargs), [key])


def test_a_signature_by_another_key_with_the_same_kid_fails() -> None:
    registered, impostor = make_key("ES384", kid="k1"), make_key("ES384", kid="k1")
    with pytest.raises(JwtRejected, match="signature"):
        verify(sign_jwt(impostor, aud=AUD), [registered])


def test_an_unknown_kid_is_reported_as_such_for_rotation() -> None:
    registered, rotated = make_key("RS384"), make_key("RS384")
    with pytest.raises(UnknownKeyId):
        verify(sign_jwt(rotated, aud=AUD), [registered])


def test_alg_none_is_refused() -> None:
    key = make_key("ES384")
    now = int(time.time())
    claims = {"iss": ISS, "sub": "x", "aud": AUD, "iat": now, "exp": now + 60, "jti": "n-1"}
    token = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': key.kid})}.{_b64(claims)}."
    with pytest.raises(JwtRejected, match="not accepted"):
        verify(token, [key])


def test_hmac_with_the_public_key_as_secret_is_refused() -> None:
    key = make_key("RS384")
    public_pem = key.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    claims = {"iss": ISS, "sub": "x", "aud": AUD, "iat": now, "exp": now + 60, "jti": "h-1"}
    # PyJWT itself refuses a PEM as an HMAC secret; forge the signature by hand as an attacker would.
    import hashlib
    import hmac

    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': key.kid})}.{_b64(claims)}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    with pytest.raises(JwtRejected, match="not accepted"):
        verify(token, [key])


def test_rs256_is_refused() -> None:
    key = make_key("RS384")
    now = int(time.time())
    token = pyjwt.encode(
        {"iss": ISS, "sub": "x", "aud": AUD, "iat": now, "exp": now + 60, "jti": "r"},
        key.private,
        algorithm="RS256",
        headers={"kid": key.kid},
    )
    with pytest.raises(JwtRejected, match="not accepted"):
        verify(token, [key])


def test_garbage_is_not_a_jwt() -> None:
    with pytest.raises(JwtRejected):
        jwt_unverified("not-a-jwt")
    with pytest.raises(JwtRejected):
        jwt_unverified("")


def _signed_without_kid(key: KeyPair) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "sub": "x", "aud": AUD, "iat": now, "exp": now + 60, "jti": f"no-kid-{now}"}
    return pyjwt.encode(claims, key.private, algorithm=key.alg, headers={"typ": "JWT"})


def test_no_kid_with_several_fitting_keys_is_refused_not_refetched() -> None:
    # The rule of integrations.smart.jwk.jwk_select: ambiguous is a refusal, not a possible key rotation.
    first, second = make_key("ES384"), make_key("ES384")
    token = _signed_without_kid(second)
    with pytest.raises(JwtRejected, match="kid") as refused:
        verify(token, [first, second])
    assert not isinstance(refused.value, UnknownKeyId)


def test_no_kid_with_one_fitting_key_uses_it() -> None:
    key = make_key("ES384")
    assert verify(_signed_without_kid(key), [key, make_key("RS384")]).key_id is None


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"sub": 7}, "sub"),
        ({"sub": ""}, "sub"),
        ({"exp": str(int(time.time()) + 60)}, "exp"),  # a NumericDate is a JSON number
    ],
)
def test_claim_types(claims: dict[str, Any], message: str) -> None:
    key = make_key("ES384")
    with pytest.raises(JwtRejected, match=message):
        verify(sign_jwt(key, aud=AUD, **claims), [key])
