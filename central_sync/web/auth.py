"""Officers' accounts for the web console: argon2id password hashes, server-side sessions with expiry,
lockout after repeated failures, CSRF tokens bound to the session, roles scoped to communities.

argon2-cffi (the reference Argon2 binding, winner of the Password Hashing Competition, memory-hard, with
``check_needs_rehash`` for later parameter changes) is used rather than passlib, which is unmaintained.

The web tables (:mod:`central_sync.storage.webtables`) are created by the store's alembic chain (revision 0004).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select

from central_sync.storage.models import Task
from central_sync.storage.store import CentralStore
from central_sync.storage.webtables import (
    KioskToken,
    PassCount,
    PassHour,
    RiderToken,
    WebSession,
    WebUser,
    new_rider_token,
)
from central_sync.storage.webtables import token_hash as _h

__all__ = ["KioskToken", "RiderToken", "WebSession", "WebUser", "add_user", "login", "session_officer"]

# Rank of each role: an administrator grants only roles at or below their own (逐级授权).
ROLES = {"admin": 4, "police": 3, "community": 2, "readonly": 1}
ROLE_ZH = {"admin": "管理员", "police": "交警", "community": "社区工作者", "readonly": "只读"}
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
SESSION_TTL = timedelta(hours=8)

_hasher = PasswordHasher()


def ensure_tables(store: CentralStore) -> None:
    """The web tables come with the store's schema (alembic revision 0004): refuse to serve on a database that
    was not migrated, naming the command, rather than fail at the first login."""
    from sqlalchemy import inspect

    missing = {WebUser.__tablename__, PassCount.__tablename__, PassHour.__tablename__} - set(
        inspect(store.engine).get_table_names()
    )
    if missing:
        raise RuntimeError(f"database: web tables {sorted(missing)} missing (run: anqi-central migrate)")


@dataclass(frozen=True)
class Officer:
    username: str
    role: str
    communities: tuple[str, ...]

    def sees(self, community: str | None) -> bool:
        return not self.communities or community in self.communities

    @property
    def may_write(self) -> bool:
        return self.role in ("admin", "police", "community")


class LoginError(Exception):
    pass


def add_user(
    store: CentralStore,
    username: str,
    password: str,
    role: str,
    communities: list[str] | None = None,
    granted_by: Officer | None = None,
) -> None:
    """Create an account. ``granted_by`` (None: the command line) may grant only roles at or below its own."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if len(password) < 10:
        raise ValueError("password: at least 10 characters")
    if granted_by is not None:
        if granted_by.role != "admin":
            raise PermissionError("only an administrator creates accounts")
        if ROLES[role] > ROLES[granted_by.role]:
            raise PermissionError(f"{granted_by.role} may not grant {role}")
        if granted_by.communities and not set(communities or []) <= set(granted_by.communities):
            raise PermissionError("communities outside the granter's own")
        if granted_by.communities and not communities:
            raise PermissionError("a community-scoped administrator grants only scoped accounts")
    with store.session() as s:
        if s.execute(select(WebUser.id).where(WebUser.username == username)).first():
            raise ValueError(f"user {username!r} exists")
        s.add(
            WebUser(
                username=username,
                password_hash=_hasher.hash(password),
                role=role,
                communities=list(communities or []),
                created_by=granted_by.username if granted_by else "cli",
            )
        )


def login(store: CentralStore, username: str, password: str, now: datetime | None = None) -> tuple[str, str]:
    """Check the password; returns (session id, csrf token). Locks the account after MAX_FAILURES."""
    now = now or datetime.now(timezone.utc)
    error: str | None = None
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with store.session() as s:  # the failure count is committed before the error is raised
        u = s.execute(select(WebUser).where(WebUser.username == username)).scalar_one_or_none()
        if u is None:
            _hasher.hash(password)  # same work as a real check: no user-name oracle by timing
            error = "用户名或密码错误"
        elif u.locked_until and _aware(u.locked_until) > now:
            error = "账户已锁定，请稍后再试"
        else:
            try:
                _hasher.verify(u.password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                u.failed += 1
                if u.failed >= MAX_FAILURES:
                    u.locked_until = now + LOCKOUT
                    u.failed = 0
                error = "用户名或密码错误"
            else:
                u.failed = 0
                u.locked_until = None
                if _hasher.check_needs_rehash(u.password_hash):
                    u.password_hash = _hasher.hash(password)
                s.add(
                    WebSession(sid_hash=_h(sid), username=username, csrf=csrf, expires_at=now + SESSION_TTL)
                )
    if error:
        raise LoginError(error)
    return sid, csrf


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def session_officer(store: CentralStore, sid: str | None) -> tuple[Officer, str] | None:
    if not sid:
        return None
    now = datetime.now(timezone.utc)
    with store.session() as s:
        ws = s.get(WebSession, _h(sid))
        if ws is None:
            return None
        if _aware(ws.expires_at) <= now:
            s.delete(ws)
            return None
        u = s.execute(select(WebUser).where(WebUser.username == ws.username)).scalar_one_or_none()
        if u is None:
            return None
        return Officer(u.username, u.role, tuple(u.communities or ())), ws.csrf


def logout(store: CentralStore, sid: str) -> None:
    with store.session() as s:
        ws = s.get(WebSession, _h(sid))
        if ws is not None:
            s.delete(ws)


def create_kiosk_token(store: CentralStore, name: str) -> str:
    token = "kiosk_" + secrets.token_urlsafe(24)
    with store.session() as s:
        s.add(KioskToken(token_hash=_h(token), name=name))
    return token


def kiosk_ok(store: CentralStore, token: str | None) -> bool:
    if not token:
        return False
    with store.session() as s:
        return s.get(KioskToken, _h(token)) is not None


def create_rider_token(store: CentralStore, task_id: str, person_id: str, days: int = 30) -> str:
    """A rider link's token made by hand (the dispositions desk makes one with each case-study task)."""
    with store.session() as s:
        return new_rider_token(s, task_id, person_id, days)


def rider_of(store: CentralStore, token: str) -> RiderToken | None:
    """The token's row while the link is good: not expired and its task not withdrawn (cancelled: e.g. the
    violations were reassigned to somebody else). A spent link (``used_at``: the quiz was passed) still shows
    the rider's records and the penalty query until it expires; it takes no second quiz."""
    now = datetime.now(timezone.utc)
    with store.session() as s:
        r = s.get(RiderToken, _h(token))
        if r is None or (r.expires_at is not None and _aware(r.expires_at) <= now):
            return None
        t = s.get(Task, r.task_id)
        if t is None or t.status == "cancelled":
            return None
        s.expunge(r)
    # the task's person is the file's owner now (a merged file's tasks move to its target)
    r.person_id = t.person_id
    return r


def spend_rider_token(store: CentralStore, token: str) -> None:
    with store.session() as s:
        r = s.get(RiderToken, _h(token))
        if r is not None and r.used_at is None:
            r.used_at = datetime.now(timezone.utc)
