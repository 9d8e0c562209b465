"""The gateway's own signing key for one EHR source: generated here, sealed at rest, opened only to sign a
SMART Backend Services client assertion; its public half is what the EHR registers (a JWK Set)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from clinical_ai.core.crypto import SealedValue
from clinical_ai.core.sealing import open_json, seal_json
from integrations.smart.jwk import SIGNING_ALGORITHMS, public_jwk_from_pem

# RSA keys for RS384: above SMART's 2048-bit floor, as current guidance recommends for new keys.
RSA_BITS = 3072


class KeyAlgorithmRefused(ValueError):
    """An algorithm SMART Backend Services does not allow for client assertions."""


@dataclass(frozen=True)
class SigningKey:
    """A new key pair: the private PEM (to seal, never to show) and the public JWK (kid = its thumbprint)."""

    private_pem: bytes
    public_jwk: dict[str, Any]

    @property
    def key_id(self) -> str:
        return str(self.public_jwk["kid"])


def signing_key_generate(algorithm: str = "ES384") -> SigningKey:
    """A fresh key pair for ``algorithm``: ES384 (EC P-384, the default: small and fast) or RS384 (RSA)."""
    if algorithm not in SIGNING_ALGORITHMS:
        raise KeyAlgorithmRefused(f"algorithm must be one of {', '.join(SIGNING_ALGORITHMS)}")
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if algorithm == "ES384":
        private_key = ec.generate_private_key(ec.SECP384R1())
    else:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigningKey(private_pem=private_pem, public_jwk=public_jwk_from_pem(public_pem))


def private_key_seal(private_pem: bytes, *, associated_data: str) -> SealedValue:
    """Seal the PEM with the installation's key ring, bound to its row by ``associated_data``."""
    return seal_json({"pem": private_pem.decode("ascii")}, associated_data=associated_data)


def private_key_open(sealed: SealedValue, *, associated_data: str) -> bytes:
    """The PEM sealed by ``private_key_seal`` (raises the key ring's error when it does not open)."""
    document = open_json(sealed, associated_data=associated_data)
    if not isinstance(document, dict) or not isinstance(document.get("pem"), str):
        raise ValueError("the sealed value does not hold a private key")
    return str(document["pem"]).encode("ascii")


def public_jwk_of(private_pem: bytes) -> dict[str, Any]:
    """The public JWK (kid, alg, use "sig") of a private PEM."""
    private_key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(private_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise KeyAlgorithmRefused("only EC P-384 and RSA keys sign SMART client assertions")
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public_jwk_from_pem(public_pem)
