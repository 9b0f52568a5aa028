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


def clean_text(v: str | None, name: str) -> str | None:
    """``v`` unchanged, or ValueError when it holds a control character (NUL included) or is over 128 characters."""
    if v is None:
        return None
    if len(v) > 128 or any(ord(c) < 32 or ord(c) == 127 for c in v):
        raise ValueError(f"{name}: at most 128 printable characters")
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
