"""Who may see what (clauses 7.2.2, 7.4): API tokens, roles, row and field filters, the audit log.

* Tokens are random (32 bytes, URL-safe) and shown once at creation; only their SHA-256 is
  stored (a high-entropy secret needs no salt). A token names a role from ``api.roles`` and,
  for ``own_community`` roles, the community it serves.
* :class:`Caller` applies the role: rows restricted to the token's community, ID numbers and
  names masked unless the role allows them in full.
* Every query, allowed or refused, is written to ``audit_log`` (never the token, never ID numbers).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from anqi_contract.logs import log
from central_sync.config import ApiRole, CentralConfig
from central_sync.storage.models import ApiToken, AuditEntry
from central_sync.storage.store import CentralStore

logger = logging.getLogger("anqi.central.access")


class AccessDenied(Exception):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


#: the longest validity a token may be given (``--expires-days``)
MAX_TOKEN_DAYS = 3650


def _expiry(cfg: CentralConfig, days: float | None, now: datetime) -> datetime:
    d = cfg.api.token_days if days is None else days
    if not 0 < d <= MAX_TOKEN_DAYS:
        raise ValueError(f"--expires-days must be more than 0 and at most {MAX_TOKEN_DAYS}, not {d}")
    return now + timedelta(days=d)


def create_token(
    store: CentralStore,
    cfg: CentralConfig,
    name: str,
    role: str,
    community: str | None = None,
    expires_days: float | None = None,
) -> str:
    """Create a token valid for ``expires_days`` (default ``api.token_days``); returns the secret (shown once).
    Raises ValueError for an unusable role/community/validity or a name in use."""
    if role not in cfg.api.roles:
        raise ValueError(f"role {role!r} is not in api.roles ({', '.join(sorted(cfg.api.roles))})")
    if cfg.api.roles[role].rows == "own_community" and not community:
        raise ValueError(f"role {role!r} sees only its own community: give --community")
    now = datetime.now(timezone.utc)
    expires = _expiry(cfg, expires_days, now)
    token = "anqi_" + secrets.token_urlsafe(32)
    with store.session() as s:
        old = s.execute(select(ApiToken).where(ApiToken.name == name)).scalar_one_or_none()
        if old is not None and old.revoked_at is None:
            raise ValueError(
                f"a token named {name!r} exists; revoke it first, rotate it or choose another name"
            )
        if old is not None:
            _retire_name(s, old)
        s.add(
            ApiToken(
                name=name,
                token_hash=hash_token(token),
                role=role,
                community=community,
                created_at=now,
                expires_at=expires,
            )
        )
    log(
        logger,
        "token_created",
        name=name,
        role=role,
        community=community or "-",
        expires=expires.isoformat(timespec="seconds"),
    )
    return token


def _retire_name(s: Any, old: ApiToken) -> None:
    """A revoked name may be used again: the old row keeps its history under another name."""
    old.name = f"{old.name[:48]}~revoked-{old.id}"
    s.flush()


def rotate_token(
    store: CentralStore, cfg: CentralConfig, name: str, expires_days: float | None = None
) -> str:
    """A new secret for the token ``name`` (same role and community, a new expiry), the old one revoked in the same
    transaction; an expired token can be rotated. Returns the new secret. Raises ValueError naming the token."""
    now = datetime.now(timezone.utc)
    expires = _expiry(cfg, expires_days, now)
    token = "anqi_" + secrets.token_urlsafe(32)
    with store.session() as s:
        old = s.execute(
            select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None)).with_for_update()
        ).scalar_one_or_none()
        if old is None:
            raise ValueError(f"no active token named {name!r} (create one with 'token create')")
        role, community = old.role, old.community
        old.revoked_at = now
        _retire_name(s, old)
        s.add(
            ApiToken(
                name=name,
                token_hash=hash_token(token),
                role=role,
                community=community,
                created_at=now,
                expires_at=expires,
            )
        )
    log(logger, "token_rotated", name=name, role=role, expires=expires.isoformat(timespec="seconds"))
    return token


def revoke_token(store: CentralStore, name: str) -> bool:
    with store.session() as s:
        t = s.execute(
            select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        ).scalar_one_or_none()
        if t is None:
            return False
        t.revoked_at = datetime.now(timezone.utc)
    log(logger, "token_revoked", name=name)
    return True


@dataclass(frozen=True)
class Caller:
    name: str
    role_name: str
    role: ApiRole
    community: str | None

    def sees_community(self, community: str | None) -> bool:
        return self.role.rows == "all" or (community is not None and community == self.community)

    def community_filter(self, requested: str | None) -> str | None:
        """The community the query must be restricted to (raises when asking for another one)."""
        if self.role.rows == "all":
            return requested
        if requested is not None and requested != self.community:
            raise AccessDenied(f"token {self.name!r} may only query community {self.community!r}")
        return self.community

    def id_number(self, v: str | None) -> str | None:
        return v if self.role.id_number == "full" else mask_id_number(v)

    def person_name(self, v: str | None) -> str | None:
        return v if self.role.name == "full" else mask_name(v)


def mask_id_number(v: str | None) -> str | None:
    """Keep the first 3 and last 2 characters (region and check digit hint), mask the rest."""
    if not v:
        return v
    if len(v) <= 5:
        return "*" * len(v)
    return v[:3] + "*" * (len(v) - 5) + v[-2:]


def mask_name(v: str | None) -> str | None:
    if not v:
        return v
    return v[0] + "*" * max(1, len(v) - 1)


def authenticate(store: CentralStore, cfg: CentralConfig, token: str | None) -> Caller:
    if not token:
        raise AccessDenied("missing token")
    with store.session() as s:
        t = s.execute(
            select(ApiToken).where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
        ).scalar_one_or_none()
        if t is None:
            raise AccessDenied("unknown or revoked token")
        if t.expires_at is not None and t.expires_at <= datetime.now(timezone.utc):
            raise AccessDenied(f"token {t.name!r} expired at {t.expires_at.isoformat(timespec='seconds')}")
        role = cfg.api.roles.get(t.role)
        if role is None:
            raise AccessDenied(f"token {t.name!r} has role {t.role!r}, which api.roles no longer defines")
        return Caller(t.name, t.role, role, t.community)


#: the audit entries written while the current request is handled (set per request by :class:`~central_sync.sharing.
#: limits.AuditGaps`; a list, so that the worker thread of a sync endpoint appends to the request's own list)
REQUEST_AUDIT: ContextVar[list[int] | None] = ContextVar("anqi_request_audit", default=None)


def audited_in_request() -> bool:
    """Whether an audit entry was written for the request being handled."""
    return bool(REQUEST_AUDIT.get())


def audit(
    store: CentralStore,
    caller: Caller | None,
    action: str,
    params: dict[str, Any],
    rows: int,
    client: str | None = None,
    *,
    persons: Iterable[str | None] | None = None,
    status: int | None = None,
) -> None:
    """One ``audit_log`` entry: who, what, the parameters (never a token or an ID number), how many rows, which
    person files the answer carried (``persons``: ids only) and the HTTP status."""
    clean = {k: v for k, v in params.items() if v is not None and k not in ("token", "id_number")}
    seen = sorted({p for p in persons if p}) if persons is not None else None
    with store.session() as s:
        entry = AuditEntry(
            time=datetime.now(timezone.utc),
            actor=caller.name if caller else "-",
            role=caller.role_name if caller else "-",
            action=action[:64],
            params={k: str(v) for k, v in clean.items()},
            rows=rows,
            client=client,
            persons=seen or None,
            status=status,
        )
        s.add(entry)
        s.flush()
        eid = int(entry.id)
    box = REQUEST_AUDIT.get()
    if box is not None:
        box.append(eid)
    log(
        logger,
        "api_query",
        actor=caller.name if caller else "-",
        action=action,
        rows=rows,
        persons=len(seen or ()),
        status=status or "-",
    )


def list_tokens(store: CentralStore) -> list[dict[str, Any]]:
    """Every token's name, role, community, creation, revocation and expiry time (never the secret or its hash)."""
    now = datetime.now(timezone.utc)
    with store.session() as s:
        return [
            {
                "name": t.name,
                "role": t.role,
                "community": t.community,
                "created_at": t.created_at.isoformat(),
                "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                "expires_at": t.expires_at.isoformat() if t.expires_at else None,
                "expired": t.expires_at is not None and t.expires_at <= now,
            }
            for t in s.scalars(select(ApiToken).order_by(ApiToken.id))
        ]
