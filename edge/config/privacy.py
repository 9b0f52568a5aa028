"""``privacy``: evidence sealed to the central office's key, bystanders' faces blurred.

The device holds only central's *public* key: it can seal evidence but never open it again, so a
stolen appliance gives away no face photo, clip or embedding. Key rotation: name the next key and the
time from which the device uses it; central keeps both private keys until the old one's evidence is in.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from pydantic import AwareDatetime, Field, field_validator, model_validator

from anqi_contract.config import Section

KEY_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _check_key(v: str | None, what: str) -> str | None:
    if v is None:
        return None
    from anqi_contract.sealed import SealError, parse_public_key

    try:
        parse_public_key(v, what)
    except SealError as e:
        raise ValueError(str(e)) from None
    return v.strip()


class SealConfig(Section):
    key_id: str | None = Field(None, pattern=KEY_ID, description="Id of central's current sealing key.")
    public_key: str | None = Field(
        None,
        description="Central's X25519 public key (base64, from `anqi-central seal-keygen`); None: evidence is "
        "NOT sealed (development only; the daemon warns at start).",
    )
    next_key_id: str | None = Field(None, pattern=KEY_ID, description="Id of the next key (rotation).")
    next_public_key: str | None = Field(None, description="The next public key (base64).")
    next_from: AwareDatetime | None = Field(None, description="UTC time from which the next key is used.")
    clip_scratch_dir: Path | None = Field(
        None,
        description="RAM folder (tmpfs) where a clip is encoded before it is sealed; None: $RUNTIME_DIRECTORY "
        "(systemd RuntimeDirectory, under /run), else /dev/shm. The plaintext clip never reaches the disk.",
    )

    @field_validator("public_key")
    @classmethod
    def _pk(cls, v: str | None) -> str | None:
        return _check_key(v, "privacy.seal.public_key")

    @field_validator("next_public_key")
    @classmethod
    def _npk(cls, v: str | None) -> str | None:
        return _check_key(v, "privacy.seal.next_public_key")

    @model_validator(mode="after")
    def _pairs(self) -> SealConfig:
        if (self.key_id is None) != (self.public_key is None):
            raise ValueError("key_id and public_key must be given together")
        nxt = (self.next_key_id, self.next_public_key, self.next_from)
        if any(v is not None for v in nxt) and not all(v is not None for v in nxt):
            raise ValueError("next_key_id, next_public_key and next_from must be given together")
        if self.next_key_id is not None and self.public_key is None:
            raise ValueError("a next key needs a current key (key_id, public_key)")
        return self

    @property
    def enabled(self) -> bool:
        return self.public_key is not None

    def current(self, now: datetime | None = None) -> tuple[str, str] | None:
        """``(key_id, public_key)`` to seal with at ``now`` (the next key once ``next_from`` has passed)."""
        if self.key_id is None or self.public_key is None:
            return None
        now = now or datetime.now(timezone.utc)
        if self.next_from is not None and now >= self.next_from and self.next_key_id and self.next_public_key:
            return self.next_key_id, self.next_public_key
        return self.key_id, self.public_key


class PrivacyConfig(Section):
    seal: SealConfig = Field(default_factory=SealConfig)
    blur_bystanders: bool = Field(
        True,
        description="Blur every face but the violator's in the shown frames (context.jpg, violation.jpg); "
        "the clip stays original and only roles allowed to see evidence get it.",
    )
