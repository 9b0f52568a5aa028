"""Health of the appliance: one JSON file the daemon rewrites atomically, read by ``anqi-edge status``,
and the systemd notify protocol (READY / WATCHDOG / STATUS) over ``$NOTIFY_SOCKET``."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

Status = Literal["up", "down", "degraded", "off"]


@dataclass
class Component:
    status: Status
    detail: str = ""
    since: float = field(default_factory=time.time)
    info: dict[str, Any] = field(default_factory=dict)


class Health:
    """Thread-safe component states; :meth:`write` persists them to ``path`` (write + rename)."""

    def __init__(self, path: Path, device_id: str):
        self.path = path
        self.device_id = device_id
        self.started = time.time()
        self._lock = threading.Lock()
        self._components: dict[str, Component] = {}
        self._alarms: dict[str, str] = {}

    def set(self, name: str, status: Status, detail: str = "", **info: Any) -> None:
        with self._lock:
            old = self._components.get(name)
            since = old.since if old and old.status == status else time.time()
            self._components[name] = Component(status, detail, since, info)

    def update_info(self, name: str, **info: Any) -> None:
        with self._lock:
            comp = self._components.setdefault(name, Component("up"))
            comp.info.update(info)

    def alarm(self, key: str, message: str | None) -> None:
        """Raise (message) or clear (None) a named alarm."""
        with self._lock:
            if message is None:
                self._alarms.pop(key, None)
            else:
                self._alarms[key] = message

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "device_id": self.device_id,
                "pid": os.getpid(),
                "heartbeat": datetime.now(timezone.utc).isoformat(),
                "uptime_s": round(time.time() - self.started, 1),
                "components": {
                    k: {
                        "status": c.status,
                        "detail": c.detail,
                        "since": datetime.fromtimestamp(c.since, timezone.utc).isoformat(),
                        **c.info,
                    }
                    for k, c in self._components.items()
                },
                "alarms": dict(self._alarms),
            }

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=2))
        os.replace(tmp, self.path)


def read_health(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def daemon_running(health: dict[str, Any]) -> bool | None:
    """Whether the process that wrote ``health`` still runs (None: cannot tell, e.g. no pid or another host's file)."""
    pid = health.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's process
    try:  # a reused pid: some other program now
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state != "Z" and (b"anqi" in cmd or b"edge" in cmd or b"python" in cmd or b"pytest" in cmd)


class SystemdNotifier:
    """Plain-socket sd_notify; a no-op when not started by systemd."""

    def __init__(self) -> None:
        addr = os.environ.get("NOTIFY_SOCKET")
        self._addr = ("\0" + addr[1:]) if addr and addr.startswith("@") else addr
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_interval_s: float | None = int(usec) / 2e6 if usec and usec.isdigit() else None

    @property
    def enabled(self) -> bool:
        return bool(self._addr)

    def notify(self, message: str) -> None:
        if not self._addr:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)  # a listener that does not read must never freeze the daemon
            try:
                s.connect(self._addr)
                s.sendall(message.encode())
            except OSError:
                pass

    def ready(self, status: str = "running") -> None:
        self.notify(f"READY=1\nSTATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
