"""Limits applied before a request is parsed: body size (HTTP and SOAP), text parameters without control
characters (a NUL byte reached PostgreSQL and came back as HTTP 500)."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any

from anqi_contract.logs import log
from central_sync.storage.models import AuditEntry
from central_sync.storage.store import CentralStore

logger = logging.getLogger("anqi.central.access")


def clean_text(v: str | None, name: str, max_len: int = 128) -> str | None:
    """``v`` unchanged, or ValueError when it holds a control character (NUL included) or is over ``max_len``."""
    if v is None:
        return None
    if len(v) > max_len or any(ord(c) < 32 or ord(c) == 127 for c in v):
        raise ValueError(f"{name}: at most {max_len} printable characters")
    return v


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 without reaching the app (on its
    Content-Length at once, else as soon as the streamed bytes pass the limit); the refusal is audited."""

    def __init__(self, app: Any, max_bytes: int, store: CentralStore):
        self.app, self.max_bytes, self.store = app, max_bytes, store

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        try:
            too_big = declared is not None and int(declared) > self.max_bytes
        except ValueError:
            too_big = True  # an unreadable length is refused as well
        if too_big:
            await self._refuse(scope, send)
            return
        seen = 0
        refused = False

        async def limited() -> dict[str, Any]:
            nonlocal seen, refused
            msg: dict[str, Any] = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    raise _TooBig()
            return msg

        started = False

        async def watch(msg: dict[str, Any]) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited, watch)
        except _TooBig:
            if not started:
                await self._refuse(scope, send)
        except Exception:
            if refused and not started:
                await self._refuse(scope, send)
            else:
                raise

    async def _refuse(self, scope: dict[str, Any], send: Any) -> None:
        client = scope.get("client")
        try:
            with self.store.session() as s:
                s.add(
                    AuditEntry(
                        time=datetime.now(timezone.utc),
                        actor="-",
                        role="-",
                        action=f"refused:{scope.get('path', '')}"[:64],
                        params={"reason": f"body over {self.max_bytes} bytes"},
                        rows=0,
                        client=client[0] if client else None,
                        status=413,
                    )
                )
        except Exception as e:  # noqa: BLE001 - the refusal stands even when the audit cannot be written
            log(logger, "audit_failed", logging.ERROR, error=str(e)[:200])
        log(logger, "request_refused", logging.WARNING, path=scope.get("path", ""), reason="body_too_large")
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooBig(Exception):
    pass


#: paths whose refused requests are audited even when no route wrote an entry (the web console audits its own)
AUDITED_PREFIXES = ("/api/", "/soap", "/openapi.json")
#: the query parameters whose values never go into the audit log
SECRET_PARAMS = frozenset(
    {"token", "access_token", "id_number", "password", "secret", "key", "authorization"}
)


def _printable(v: str, n: int = 64) -> str:
    """``v`` with control characters escaped (a NUL byte stays visible, never reaches a log line raw), cut to ``n``."""
    out = "".join(c if 32 <= ord(c) != 127 else f"\\x{ord(c):02x}" for c in v)
    return out if len(out) <= n else out[: n - 1] + "…"


def query_params(scope: dict[str, Any]) -> dict[str, str]:
    """The request's query parameters for the audit log: values escaped and cut, secrets left out."""
    from urllib.parse import parse_qsl

    qs = (scope.get("query_string") or b"").decode("latin-1")
    out: dict[str, str] = {}
    for k, v in parse_qsl(qs, keep_blank_values=True)[:20]:
        key = _printable(k, 32)
        if key.lower() not in SECRET_PARAMS:
            out[key] = _printable(v)
    return out


def _detail(body: bytes) -> str:
    """What the refusal said (FastAPI's ``detail``: a message, or the validation errors as ``loc: msg``)."""
    try:
        d = json.loads(body.decode("utf-8")).get("detail")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
    if isinstance(d, list):
        d = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', []))}: {e.get('msg', '')}"
            for e in d
            if isinstance(e, dict)
        )
    return _printable(str(d or ""), 300)


class AuditGaps:
    """ASGI middleware: every refused or failed request to the sharing API is in the audit log, also when no route
    wrote an entry for it (FastAPI's own 422 for a bad parameter, a 422 raised while checking input, 404, 405), with
    its status, parameters (secrets left out) and the refusal's message. An exception escaping a route is answered
    500 without a traceback and audited as ``error:<path>`` with its type (any path)."""

    def __init__(self, app: Any, store: CentralStore):
        self.app, self.store = app, store

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from central_sync.sharing.access import REQUEST_AUDIT

        box: list[int] = []
        token = REQUEST_AUDIT.set(box)
        status, body = 0, b""

        async def watch(msg: dict[str, Any]) -> None:
            nonlocal status, body
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
            elif msg["type"] == "http.response.body" and status >= 400 and len(body) < 2000:
                body += msg.get("body", b"")[:2000]
            await send(msg)

        path = str(scope.get("path", ""))
        try:
            try:
                await self.app(scope, receive, watch)
            except _TooBig:
                raise
            except Exception as e:  # noqa: BLE001 - answered 500 and audited; the caller sees no traceback
                log(
                    logger,
                    "request_failed",
                    logging.ERROR,
                    path=path,
                    error=f"{type(e).__name__}: {str(e)[:200]}",
                )
                await self._write(
                    scope, f"error:{path}", 500, {"error": type(e).__name__, "path": _printable(path, 300)}
                )
                if status == 0:
                    data = json.dumps({"detail": "internal error (logged and audited)"}).encode()
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 500,
                            "headers": [
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode()),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": data})
                return
            if status >= 400 and not box and path.startswith(AUDITED_PREFIXES):
                kind = {422: "invalid", 404: "not_found", 405: "method"}.get(status, f"status{status}")
                params = {**query_params(scope), "detail": _detail(body), "path": _printable(path, 300)}
                await self._write(scope, f"{kind}:{path}", status, params)
        finally:
            REQUEST_AUDIT.reset(token)

    async def _write(self, scope: dict[str, Any], action: str, status: int, params: dict[str, str]) -> None:
        from starlette.concurrency import run_in_threadpool

        from central_sync.sharing.access import audit

        client = scope.get("client")
        try:
            await run_in_threadpool(
                audit, self.store, None, action, params, 0, client[0] if client else None, status=status
            )
        except Exception as e:  # noqa: BLE001 - the answer stands even when the audit cannot be written
            log(logger, "audit_failed", logging.ERROR, error=str(e)[:200])


class Lockout:
    """Bad tokens per client address: ``max_failures`` within ``window_s`` lock the address for ``window_s``."""

    def __init__(self, max_failures: int, window_s: float):
        self.max_failures, self.window_s = max_failures, window_s
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked(self, client: str | None) -> bool:
        with self._lock:
            return self._locked_until.get(client or "-", 0.0) > time.monotonic()

    def failed(self, client: str | None) -> None:
        key, now = client or "-", time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(key, []) if now - t < self.window_s] + [now]
            self._failures[key] = recent
            if len(recent) >= self.max_failures:
                self._locked_until[key] = now + self.window_s
                self._failures.pop(key, None)
                log(logger, "client_locked_out", logging.WARNING, client=key, seconds=self.window_s)
            if len(self._failures) > 100_000:  # bounded memory under a spray of addresses
                self._failures.clear()


class RateLimit:
    """Requests per token: a bucket of ``per_minute`` requests refilled evenly (``per_minute`` / 60 per second);
    :meth:`take` returns 0 when the request may go on, else the seconds until it could (Retry-After)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._buckets: dict[
            str, tuple[float, float]
        ] = {}  # token name -> (requests left, time of the last refill)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        if self.per_minute <= 0:
            return 0.0
        now, rate = time.monotonic(), self.per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate
