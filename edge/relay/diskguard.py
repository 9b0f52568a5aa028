"""A full disk is an alarm, not a crash.

Three small parts, used by the daemon:

* :class:`DiskReserve`: a ballast file (``<data_dir>/reserve.bin``, ``relay.outbox.reserve_mb``) made
  while there is room. When the file system is full the daemon deletes it, which gives the outbox
  database, the decision records and the health file room to go on, and raises the ``disk_full``
  alarm; it is made again once free space is back above twice its size.
* :class:`AlarmBeacon`: a small file (``health.alarm``) allocated at start and afterwards only
  overwritten in place, never grown: it still carries the alarms when ``health.json`` can no longer be
  rewritten (a new file needs blocks a full disk does not have). ``anqi-edge status`` reads it.
* :func:`ram_outbox_dir`: where the outbox goes when the disk one cannot be opened at all (a full
  disk without a reserve): a RAM folder. Events are then still relayed, but a power cut loses what
  central has not acknowledged; the alarm says so.

Policy when space runs out, least valuable first (stated in the README):
1. media of events central has acknowledged (the outbox deletes them anyway);
2. the reserve file;
3. ``relay.outbox.when_full``: new media rejected (default) or the oldest unsent media dropped;
event records (small) are always kept; detection and the spoken prompt never stop.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from anqi_contract.logs import log

logger = logging.getLogger("edge.relay")

RESERVE_FILE = "reserve.bin"
BEACON_FILE = "health.alarm"
BEACON_BYTES = 8192


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskReserve:
    """The ballast file of ``folder`` (see the module doc)."""

    def __init__(self, folder: Path, size_mb: float):
        self.path = folder / RESERVE_FILE
        self.size = int(size_mb * 1024 * 1024)

    def held(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def check(self) -> bool:
        """Release the reserve when the disk is (nearly) full, make it again when there is room.
        Returns True when the disk is full (the reserve is gone or had to go)."""
        if self.size <= 0:
            return False
        try:
            free = free_bytes(self.path.parent)
        except OSError:
            return False
        held = self.held()
        if held and free < self.size // 4:
            self.path.unlink(missing_ok=True)
            log(
                logger,
                "disk_reserve_released",
                logging.ERROR,
                freed_bytes=held,
                free_bytes=free,
                path=str(self.path),
            )
            return True
        if not held and free >= 2 * self.size:
            try:
                self._make()
            except OSError as e:
                log(logger, "disk_reserve_not_made", logging.WARNING, error=str(e)[:200])
                return free < self.size
            log(logger, "disk_reserve_made", bytes=self.size, path=str(self.path))
            return False
        return not held and free < self.size

    def _make(self) -> None:
        tmp = self.path.with_name(RESERVE_FILE + ".part")
        with open(tmp, "wb") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, self.size)
            except (AttributeError, OSError):
                chunk = b"\0" * (1 << 20)
                left = self.size
                while left > 0:
                    left -= f.write(chunk[: min(left, len(chunk))])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class AlarmBeacon:
    """``health.alarm``: allocated once, then only overwritten in place (see the module doc)."""

    def __init__(self, folder: Path):
        self.path = folder / BEACON_FILE
        self.ready = False

    def allocate(self) -> None:
        try:
            if not self.path.exists() or self.path.stat().st_size != BEACON_BYTES:
                with open(self.path, "wb") as f:
                    f.write(b" " * BEACON_BYTES)
                    f.flush()
                    os.fsync(f.fileno())
            self.ready = True
        except OSError as e:
            log(logger, "alarm_beacon_unavailable", logging.WARNING, path=str(self.path), error=str(e)[:200])

    def write(self, alarms: dict[str, str], pid: int | None = None) -> bool:
        """Overwrite the beacon with ``alarms`` (an empty dict clears it); False when that failed too."""
        if not self.ready:
            return False
        doc = {"at": datetime.now(timezone.utc).isoformat(), "pid": pid or os.getpid(), "alarms": alarms}
        data = json.dumps(doc, ensure_ascii=False).encode()
        if len(data) > BEACON_BYTES:
            doc["alarms"] = {k: v[:200] for k, v in list(alarms.items())[:8]}
            data = json.dumps(doc, ensure_ascii=False).encode()[:BEACON_BYTES]
        try:
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.pwrite(fd, data.ljust(BEACON_BYTES, b" "), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
        except OSError:
            return False


def read_beacon(folder: Path) -> dict[str, Any] | None:
    """The beacon's alarms when it holds any (``anqi-edge status``), else None."""
    try:
        text = (folder / BEACON_FILE).read_text(encoding="utf-8").strip()
        doc = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("alarms") else None


def ram_outbox_dir(device_id: str) -> Path:
    """A RAM folder for an emergency outbox (``/run/anqi`` under systemd, else ``/dev/shm``)."""
    # a RAM folder on purpose (the disk is full), not a temporary file: bandit's B108 does not apply
    for base in (Path(os.environ.get("RUNTIME_DIRECTORY", "/run/anqi")), Path("/dev/shm")):  # nosec B108
        if base.is_dir() and os.access(base, os.W_OK):
            return base / f"anqi-outbox-{device_id}"
    return Path("/tmp") / f"anqi-outbox-{device_id}-{int(time.time())}"  # nosec B108 - last resort
