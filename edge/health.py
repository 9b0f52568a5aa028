"""Health of the appliance: one JSON file the daemon rewrites atomically, read by ``anqi-edge status``
(:class:`HealthFile`: the periodic write with the disk reserve check and the alarm beacon).
The systemd notify protocol lives in :mod:`anqi_contract.notify` (the central service uses it too)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

from anqi_contract.logs import log

logger = logging.getLogger("edge.daemon")

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


class Reserve(Protocol):
    """What the health file needs of ``edge.relay.DiskReserve``: the ballast kept for a full disk."""

    size: int

    def check(self) -> bool: ...

    def held(self) -> int: ...


class Beacon(Protocol):
    """What the health file needs of ``edge.relay.AlarmBeacon``: alarms written where a full disk still takes them."""

    def write(self, alarms: dict[str, str], pid: int | None = None) -> bool: ...


def disk_check(reserve: Reserve, data_dir: Path, health: Health) -> None:
    """The reserve policy (edge.relay.diskguard): a full data disk raises ``disk_full`` and frees the
    ballast; the alarm clears once there is room again."""
    if reserve.check():
        health.alarm(
            "disk_full",
            f"file system of {data_dir} is full: reserve released; new media follow relay.outbox.when_full",
        )
    elif reserve.held() or reserve.size == 0:
        health.alarm("disk_full", None)
        health.alarm("health_file", None)


class HealthFile:
    """The daemon's periodic health write: its own counters into the ``daemon`` component, the disk reserve
    check, the file itself (a full disk raises the ``health_file`` alarm instead of stopping anything) and the
    alarm beacon, rewritten only when the alarms changed."""

    def __init__(self, health: Health, reserve: Reserve, beacon: Beacon, data_dir: Path) -> None:
        self.health = health
        self.reserve = reserve
        self.beacon = beacon
        self.data_dir = data_dir
        self._beacon_alarms: dict[str, str] | None = None  #: what the beacon holds

    def write(self, **daemon_info: Any) -> None:
        self.health.update_info("daemon", **daemon_info)
        disk_check(self.reserve, self.data_dir, self.health)
        try:
            self.health.write()
        except OSError as e:  # full disk: keep running; the alarm beacon (allocated at start) still tells
            log(logger, "health_write_failed", logging.ERROR, error=str(e)[:200])
            self.health.alarm("health_file", f"cannot rewrite {self.health.path.name}: {e.strerror or e}")
        alarms = dict(self.health.snapshot()["alarms"])
        if alarms != self._beacon_alarms and self.beacon.write(alarms):
            self._beacon_alarms = alarms


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
