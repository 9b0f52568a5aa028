"""Sealed evidence: media and face embeddings encrypted on the device to the central office's public key.

A roadside appliance can be unscrewed and its storage read. Every evidence file (face, context,
deciding frame, clip) and the face embedding are therefore sealed *before* they are written to the
device's disk, with libsodium's sealed box (``crypto_box_seal``: an ephemeral X25519 key pair per
message, XSalsa20-Poly1305; through PyNaCl). Only the holder of the central private key can open
them; the device holds the public key alone and cannot open what it wrote itself.

Blob format (the bytes that sit in the outbox and travel as media chunks)::

    b"AQS1" | key id length (uint8) | key id (ASCII) | crypto_box_seal(plaintext)

The key id names which central key opens the blob, so the office can rotate keys: the device config
names the current key and optionally the next one with the time from which it is used
(:class:`edge.config.privacy.SealConfig`); central holds every key still in use.
The embedding is sealed as little-endian float32 bytes and carried base64 in
``FaceInfo.embedding_sealed`` (the clear ``embedding`` is then absent).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

__all__ = [
    "SEAL_MAGIC",
    "SealError",
    "Sealer",
    "KeyRing",
    "is_sealed",
    "key_id_of",
    "generate_keypair",
    "parse_public_key",
    "parse_private_key",
]

SEAL_MAGIC = b"AQS1"
#: crypto_box_SEALBYTES: ephemeral public key (32) + Poly1305 tag (16)
SEAL_OVERHEAD = 48
KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class SealError(ValueError):
    """A blob that is not sealed, sealed to a key central does not hold, or tampered with."""


def _b64key(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError):
        raise SealError(f"{what}: not base64") from None
    if len(raw) != 32:
        raise SealError(f"{what}: a key is 32 bytes (base64 of 44 characters), got {len(raw)} bytes")
    return raw


def parse_public_key(text: str, what: str = "public key") -> PublicKey:
    return PublicKey(_b64key(text, what))


def parse_private_key(text: str, what: str = "private key") -> PrivateKey:
    return PrivateKey(_b64key(text, what))


def generate_keypair() -> tuple[str, str]:
    """``(private_b64, public_b64)`` of a new X25519 key pair."""
    sk = PrivateKey.generate()
    return (
        base64.b64encode(bytes(sk)).decode("ascii"),
        base64.b64encode(bytes(sk.public_key)).decode("ascii"),
    )


def is_sealed(blob: bytes) -> bool:
    return blob[:4] == SEAL_MAGIC


def key_id_of(blob: bytes) -> str:
    if not is_sealed(blob) or len(blob) < 5:
        raise SealError("not a sealed blob (no AQS1 header)")
    n = blob[4]
    if len(blob) < 5 + n + SEAL_OVERHEAD:
        raise SealError("sealed blob shorter than its header and box overhead")
    try:
        return blob[5 : 5 + n].decode("ascii")
    except UnicodeDecodeError:
        raise SealError("sealed blob key id is not ASCII") from None


@dataclass(frozen=True)
class Sealer:
    """Seals to one public key (the device side: it cannot open anything)."""

    key_id: str
    public_key: PublicKey

    def seal(self, plaintext: bytes) -> bytes:
        kid = self.key_id.encode("ascii")
        return SEAL_MAGIC + struct.pack("B", len(kid)) + kid + SealedBox(self.public_key).encrypt(plaintext)

    def seal_embedding(self, vector: npt.ArrayLike) -> str:
        """An embedding as base64 of a sealed blob of little-endian float32."""
        data = np.asarray(vector, dtype="<f4").ravel().tobytes()
        return base64.b64encode(self.seal(data)).decode("ascii")


class KeyRing:
    """Central's private keys by key id (several at once during a rotation)."""

    def __init__(self, keys: Mapping[str, PrivateKey]):
        self._boxes = {kid: SealedBox(k) for kid, k in keys.items()}
        self.public = {kid: k.public_key for kid, k in keys.items()}

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._boxes)

    def open(self, blob: bytes) -> bytes:
        kid = key_id_of(blob)
        box = self._boxes.get(kid)
        if box is None:
            raise SealError(f"sealed to key {kid!r}, which central does not hold (held: {self.key_ids})")
        try:
            return box.decrypt(blob[5 + blob[4] :])
        except CryptoError:
            raise SealError(f"sealed blob for key {kid!r} does not open (tampered or wrong key)") from None

    def open_embedding(self, text: str) -> list[float]:
        try:
            blob = base64.b64decode(text, validate=True)
        except (ValueError, TypeError):
            raise SealError("embedding_sealed is not base64") from None
        data = self.open(blob)
        if len(data) % 4 or not data:
            raise SealError("sealed embedding is not a float32 vector")
        vec = np.frombuffer(data, dtype="<f4").astype(np.float64)
        if not np.isfinite(vec).all():
            raise SealError("sealed embedding holds non-finite values")
        return [float(v) for v in vec]
