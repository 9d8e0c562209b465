"""Client assertion verification: pure, no database, real RSA and EC P-384 keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from integrations.smart.assertion import AssertionRejected, UnknownKeyId, client_assertion_verify
from integrations.smart.errors import OAuthErrorCode
from tests.unit.smart.keys import TOKEN_URL, KeyPair, claims_for, ec_key, forge, rsa_key, sign

CLIENT = "ehr-test"


def verify(assertion: str, jwks: dict[str, Any], **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "assertion": assertion,
        "jwks": jwks,
        "client_id": CLIENT,
        "audience": TOKEN_URL,
        "now": datetime.now(tz=UTC),
        "max_lifetime_seconds": 300,
        "clock_skew_seconds": 60,
        **overrides,
    }
    return client_assertion_verify(**arguments)


def rejected(assertion: str, jwks: dict[str, Any], **overrides: Any) -> AssertionRejected:
    with pytest.raises(AssertionRejected) as caught:
        verify(assertion, jwks, **overrides)
    assert caught.value.code is OAuthErrorCode.INVALID_CLIENT
    assert caught.value.http_status == 401
    return caught.value


@pytest.mark.parametrize("key", [rsa_key(), ec_key()], ids=["RS384", "ES384"])
def test_valid_assertion_verifies(key: KeyPair) -> None:
    claims = claims_for(CLIENT)
    verified = verify(sign(key, claims), key.jwks)
    assert verified.client_id == CLIENT
    assert verified.jti == claims["jti"]
    assert verified.expires_at == claims["exp"]
    assert verified.algorithm == key.alg
    assert verified.key_id == key.kid


def test_audience_may_be_a_list() -> None:
    key = ec_key()
    assert verify(sign(key, claims_for(CLIENT, aud=["https://other", TOKEN_URL])), key.jwks)


def test_single_key_without_kid_is_used() -> None:
    key = rsa_key()
    jwks = {"keys": [{k: v for k, v in key.public_jwk.items() if k != "kid"}]}
    assert verify(sign(key, claims_for(CLIENT), kid=False), jwks).key_id is None


def test_several_keys_need_a_kid() -> None:
    first, second = rsa_key(0), rsa_key(1)
    jwks = {"keys": [first.public_jwk, second.public_jwk]}
    assert verify(sign(second, claims_for(CLIENT)), jwks).key_id == second.kid
    assert "kid" in rejected(sign(second, claims_for(CLIENT), kid=False), jwks).description


def test_rs256_is_refused_before_signature_work() -> None:
    key = rsa_key()
    error = rejected(sign(key, claims_for(CLIENT), alg="RS256"), key.jwks)
    assert "RS256" in error.description


def test_hs256_with_the_public_key_as_secret_is_refused() -> None:
    key = rsa_key()
    forged = forge({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims_for(CLIENT), secret=key.public_pem)
    assert "HS256" in rejected(forged, key.jwks).description


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(alg: str) -> None:
    key = ec_key()
    forged = forge({"alg": alg, "typ": "JWT", "kid": key.kid}, claims_for(CLIENT))
    assert "not accepted" in rejected(forged, key.jwks).description


def test_signature_by_another_key_is_refused() -> None:
    registered, impostor = rsa_key(0), rsa_key(1, kid="rsa-0")
    assert "signature" in rejected(sign(impostor, claims_for(CLIENT)), registered.jwks).description


def test_tampered_payload_is_refused() -> None:
    key = ec_key()
    header, _, signature = sign(key, claims_for(CLIENT)).split(".")
    other_payload = sign(key, claims_for(CLIENT, jti="other")).split(".")[1]
    assert "signature" in rejected(f"{header}.{other_payload}.{signature}", key.jwks).description


def test_unknown_kid_is_its_own_error() -> None:
    key = ec_key()
    with pytest.raises(UnknownKeyId):
        verify(sign(key, claims_for(CLIENT), kid="rotated"), key.jwks)


def test_key_of_the_wrong_type_is_not_a_candidate() -> None:
    rsa, ec = rsa_key(), ec_key(kid="rsa-0")  # an EC key claiming the RSA key's kid
    with pytest.raises(UnknownKeyId):
        verify(sign(ec, claims_for(CLIENT)), rsa.jwks)


def test_p256_key_cannot_sign_es384() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    p256 = ec.generate_private_key(ec.SECP256R1())
    jwk = dict(ECAlgorithm.to_jwk(p256.public_key(), as_dict=True), kid="p256")
    token = jwt.encode(claims_for(CLIENT), p256, algorithm="ES256", headers={"kid": "p256"})
    rejected(token, {"keys": [jwk]})


def test_wrong_audience_is_refused() -> None:
    key = rsa_key()
    error = rejected(sign(key, claims_for(CLIENT, aud="https://elsewhere/token")), key.jwks)
    assert "aud" in error.description


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"iss": "ehr-other", "sub": "ehr-other"}, "iss"),
        ({"sub": "someone-else"}, "sub"),
        ({"jti": None}, "jti"),
        ({"jti": ""}, "jti"),
        ({"jti": "x" * 256}, "jti"),
        ({"jti": 12345}, "jti"),
        ({"exp": None}, "exp"),
        ({"exp": "soon"}, "exp"),
    ],
)
def test_claim_rules(overrides: dict[str, Any], words: str) -> None:
    key = ec_key()
    assert words in rejected(sign(key, claims_for(CLIENT, **overrides)), key.jwks).description


def test_expired_assertion_is_refused_beyond_the_skew() -> None:
    key = ec_key()
    within_skew = sign(key, claims_for(CLIENT, lifetime=-30))
    assert verify(within_skew, key.jwks)
    assert "expired" in rejected(sign(key, claims_for(CLIENT, lifetime=-61)), key.jwks).description


def test_exp_too_far_ahead_is_refused() -> None:
    key = rsa_key()
    assert verify(sign(key, claims_for(CLIENT, lifetime=300)), key.jwks)
    assert "future" in rejected(sign(key, claims_for(CLIENT, lifetime=3600)), key.jwks).description


def test_nbf_and_iat_in_the_future_are_refused() -> None:
    key = rsa_key()
    now = claims_for(CLIENT)["iat"]
    rejected(sign(key, claims_for(CLIENT, nbf=now + 200)), key.jwks)
    rejected(sign(key, claims_for(CLIENT, iat=now + 200)), key.jwks)


@pytest.mark.parametrize("headers", [{"typ": "JWE"}, {"crit": ["exp"]}])
def test_header_rules(headers: dict[str, Any]) -> None:
    key = ec_key()
    rejected(sign(key, claims_for(CLIENT), headers=headers), key.jwks)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 20000, "e30.e30.e30.e30.e30"])
def test_garbage_is_refused(garbage: str) -> None:
    rejected(garbage, ec_key().jwks)


def test_private_material_in_the_key_set_is_refused() -> None:
    key = ec_key()
    leaked = {"keys": [dict(key.public_jwk, d="AAAA")]}
    assert "private" in rejected(sign(key, claims_for(CLIENT)), leaked).description


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"exp": str(claims_for(CLIENT)["exp"])}, "exp"),  # a NumericDate is a JSON number, not a string
        ({"iat": True}, "iat"),
        ({"aud": None}, "aud"),
        ({"sub": None}, "sub"),
        ({"iss": None}, "iss"),
    ],
)
def test_claim_types_and_presence(overrides: dict[str, Any], words: str) -> None:
    key = ec_key()
    assert words in rejected(sign(key, claims_for(CLIENT, **overrides)), key.jwks).description


def test_the_skew_is_pyjwts_leeway() -> None:
    key = ec_key()
    expired_within_skew = sign(key, claims_for(CLIENT, lifetime=-30))
    assert verify(expired_within_skew, key.jwks, clock_skew_seconds=60)
    assert "expired" in rejected(expired_within_skew, key.jwks, clock_skew_seconds=10).description
