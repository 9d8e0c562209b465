from __future__ import annotations

import base64

import pytest

from clinical_ai.core.crypto import DecryptionError, KeyRing, KeyRingError, SealedValue, generate_key_spec


def _ring(*specs: str) -> KeyRing:
    return KeyRing.parse(",".join(specs))


def test_seal_and_open_round_trip() -> None:
    ring = _ring(generate_key_spec("k1"))
    sealed = ring.seal(b"Margaret Okafor", associated_data=b"row-1")
    assert sealed.key_id == "k1"
    assert b"Margaret" not in sealed.ciphertext
    assert ring.open(sealed, associated_data=b"row-1") == b"Margaret Okafor"


def test_ciphertext_moved_to_another_row_does_not_open() -> None:
    ring = _ring(generate_key_spec("k1"))
    sealed = ring.seal(b"secret", associated_data=b"row-1")
    with pytest.raises(DecryptionError):
        ring.open(sealed, associated_data=b"row-2")


def test_tampered_ciphertext_is_refused() -> None:
    ring = _ring(generate_key_spec("k1"))
    sealed = ring.seal(b"secret", associated_data=b"a")
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(DecryptionError):
        ring.open(SealedValue(sealed.key_id, sealed.nonce, flipped), associated_data=b"a")


def test_rotation_new_values_use_first_key_old_ones_still_open() -> None:
    old = generate_key_spec("k1")
    sealed_with_old = _ring(old).seal(b"v", associated_data=b"x")
    rotated = _ring(generate_key_spec("k2"), old)
    assert rotated.active_key_id == "k2"
    assert rotated.seal(b"v", associated_data=b"x").key_id == "k2"
    assert rotated.open(sealed_with_old, associated_data=b"x") == b"v"


def test_unknown_key_id_is_a_clear_error() -> None:
    sealed = _ring(generate_key_spec("gone")).seal(b"v", associated_data=b"x")
    with pytest.raises(DecryptionError, match="not in the key ring"):
        _ring(generate_key_spec("k2")).open(sealed, associated_data=b"x")


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "nokeyseparator",
        "k1:not base64!!",
        f"k1:{base64.b64encode(b'short').decode()}",
        f"bad id:{base64.b64encode(bytes(32)).decode()}",
        f"k1:{base64.b64encode(bytes(32)).decode()},k1:{base64.b64encode(bytes(32)).decode()}",
    ],
)
def test_malformed_key_rings_are_refused(spec: str) -> None:
    with pytest.raises(KeyRingError):
        KeyRing.parse(spec)
