"""Health of the appliance: one JSON file the daemon rewrites atomically, read by ``anqi-edge status``.
The systemd notify protocol lives in :mod:`anqi_contract.notify` (the central service uses it too)."""

from __future__ import annotations

import json
import os
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
