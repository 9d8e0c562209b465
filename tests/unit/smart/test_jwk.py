"""JWK helpers: pure, no database."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from integrations.smart.jwk import JwkError, jwk_thumbprint, jwks_check_registrable, public_jwk_from_pem
from tests.unit.smart.keys import ec_key, rsa_key


def _pem(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _small_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - a key too small on purpose


def test_rfc7638_thumbprint_example() -> None:
    # RFC 7638 section 3.1.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
            "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
            "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
            "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rsa_pem_becomes_an_rs384_jwk() -> None:
    jwk = public_jwk_from_pem(rsa_key().public_pem)
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS384", "sig")
    assert jwk["kid"] == jwk_thumbprint(jwk)
    assert "d" not in jwk
    jwks_check_registrable({"keys": [jwk]})


def test_ec_pem_becomes_an_es384_jwk() -> None:
    jwk = public_jwk_from_pem(ec_key().public_pem)
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "P-384", "ES384")
    assert jwk["kid"] == jwk_thumbprint(jwk)


@pytest.mark.parametrize(
    "pem",
    [
        rsa_key().private_pem,
        _pem(ec.generate_private_key(ec.SECP256R1()).public_key()),
        _pem(_small_rsa().public_key()),
        b"-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n",
    ],
    ids=["private", "p256", "rsa1024", "garbage"],
)
def test_unusable_pems_are_refused(pem: bytes) -> None:
    with pytest.raises(JwkError):
        public_jwk_from_pem(pem)


@pytest.mark.parametrize(
    ("jwks", "words"),
    [
        ({"keys": [dict(rsa_key().public_jwk, d="AQAB")]}, "private"),
        ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "private"),
        ({"keys": [rsa_key(0).public_jwk, rsa_key(1, kid="rsa-0").public_jwk]}, "kid"),
        ({"keys": []}, "no key"),
        ({"keys": [dict(rsa_key().public_jwk, alg="RS256")]}, "no key"),
        ({"keys": [dict(ec_key().public_jwk, use="enc")]}, "no key"),
        ({"keys": [dict(RSAAlgorithm.to_jwk(_small_rsa().public_key(), as_dict=True))]}, "bits"),
        ({"keys": [dict(rsa_key().public_jwk, n="AQAB")]}, "cannot be loaded"),
        ({"keys": "nope"}, "keys"),
        ([], "keys"),
    ],
)
def test_registrable_jwks_rules(jwks: object, words: str) -> None:
    with pytest.raises(JwkError, match=words):
        jwks_check_registrable(jwks)


def test_a_set_with_one_usable_key_is_registrable() -> None:
    jwks_check_registrable({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "abc"}, ec_key().public_jwk]})
