"""JWK helpers: pure, no database."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from integrations.smart.jwk import (
    JwkError,
    UnknownKid,
    jwk_select,
    jwk_thumbprint,
    jwks_check_registrable,
    public_jwk_from_pem,
)
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


# --- which key verifies a token: one rule for SMART assertions and CDS Hooks JWTs ------------------------


def _without_kid(jwk: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in jwk.items() if k != "kid"}


def test_a_kid_picks_its_key_among_several() -> None:
    first, second = rsa_key(0), rsa_key(1)
    jwks = {"keys": [first.public_jwk, second.public_jwk, ec_key(0).public_jwk]}
    assert jwk_select(jwks, kid=second.kid, algorithm="RS384") == second.public_jwk


def test_a_kid_that_no_fitting_key_has_is_unknown() -> None:
    # ec-0 is there, but an EC key cannot verify RS384: as if the kid were not registered (maybe rotated).
    jwks = {"keys": [rsa_key(0).public_jwk, ec_key(0).public_jwk]}
    with pytest.raises(UnknownKid):
        jwk_select(jwks, kid="ec-0", algorithm="RS384")
    with pytest.raises(UnknownKid):
        jwk_select(jwks, kid="rotated", algorithm="RS384")


def test_no_kid_and_one_fitting_key_uses_it() -> None:
    rsa_jwk = _without_kid(rsa_key(0).public_jwk)
    # The EC key does not fit RS384, so the RSA key is the only candidate.
    jwks = {"keys": [rsa_jwk, _without_kid(ec_key(0).public_jwk)]}
    assert jwk_select(jwks, kid=None, algorithm="RS384") == rsa_jwk


def test_no_kid_and_no_fitting_key_is_unknown() -> None:
    with pytest.raises(UnknownKid):
        jwk_select({"keys": [ec_key(0).public_jwk]}, kid=None, algorithm="RS384")


@pytest.mark.parametrize("with_kids", [True, False], ids=["keys-with-kids", "keys-without-kids"])
def test_no_kid_and_several_fitting_keys_is_refused_as_ambiguous(with_kids: bool) -> None:
    keys = [rsa_key(0).public_jwk, rsa_key(1).public_jwk]
    jwks = {"keys": keys if with_kids else [_without_kid(k) for k in keys]}
    with pytest.raises(JwkError, match="kid") as refused:
        jwk_select(jwks, kid=None, algorithm="RS384")
    # Not UnknownKid: fetching the set again would not make the token name a key.
    assert not isinstance(refused.value, UnknownKid)


def test_a_set_with_private_material_is_refused_when_selecting() -> None:
    with pytest.raises(JwkError, match="private"):
        jwk_select({"keys": [dict(ec_key(0).public_jwk, d="AAAA")]}, kid="ec-0", algorithm="ES384")
