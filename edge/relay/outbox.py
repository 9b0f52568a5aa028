"""The on-disk outbox: every event and its evidence files are durable here before anything is sent.

Layout under ``root``: ``outbox.sqlite`` (WAL) and ``media/<event_id>/<name>``.

Durability: :meth:`Outbox.add` copies (or moves) the files into a private folder, fsyncs each
file, renames the folder into place and fsyncs the parent, then commits the row. SQLite runs in
WAL mode with ``synchronous=FULL``: with ``NORMAL`` a WAL commit survives a process crash but
the last transactions can roll back on power loss, and a roadside cabinet loses power; FULL costs
one extra WAL fsync per commit (about 0.5 ms here), cheap next to a violation rate of a few per
minute. State changes after the add (published, acked) are batched by the relay, and losing one
only causes a harmless re-send. Files first, row second: a crash in between leaves an orphan
folder that :meth:`Outbox.open` removes; a row never points at missing files.

States: ``pending`` -> ``published`` (broker PUBACK) -> ``acked`` (central stored it), or
``rejected`` (central refused it; kept for inspection). Delivery is in insertion order; an event
re-queued by an ack timeout or a media re-send request goes out again after the ones already queued.

One process owns an outbox folder (the daemon); others may open it to read state (tests, the
soak benchmark), but opening it also cleans up half-written folders, so never open it from a
second process while the owner is adding.

Disk budget (``max_disk_mb``): media of acknowledged events go first (oldest first; then those of
events central rejected), then the ``when_full`` policy decides between new and old unsent media. Event records themselves are never
dropped; every drop raises a health alarm and a log line.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal

from anqi_contract.event import ViolationEvent
from anqi_contract.logs import log
from edge.config.relay import OutboxConfig
from edge.health import Health

logger = logging.getLogger("anqi.relay.outbox")


def outbox_root(oc: OutboxConfig, data_dir: Path, base_dir: Path | None = None) -> Path:
    """Where the outbox of ``relay.outbox`` lives: ``path`` (relative to ``base_dir``), else ``<data_dir>/outbox``."""
    if not oc.path:
        return data_dir / "outbox"
    p = Path(oc.path).expanduser()
    return p if p.is_absolute() else ((base_dir or Path.cwd()) / p).resolve()


SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'published', 'acked', 'rejected')),
    created REAL NOT NULL,
    published_at REAL,
    acked_at REAL,
    publishes INTEGER NOT NULL DEFAULT 0,
    resends INTEGER NOT NULL DEFAULT 0,
    resend_names TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS events_state_seq ON events (state, seq);
CREATE TABLE IF NOT EXISTS media (
    event_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    present INTEGER NOT NULL,
    dropped_reason TEXT,
    PRIMARY KEY (event_id, name)
);
"""


class EventState(str, Enum):
    pending = "pending"
    published = "published"
    acked = "acked"
    rejected = "rejected"


class OutboxError(RuntimeError):
    """The outbox cannot store an event (disk full, unwritable folder); the message names the path."""


@dataclass(frozen=True)
class OutboxMedia:
    name: str
    path: Path
    size: int
    sha256: str
    present: bool


@dataclass(frozen=True)
class OutboxItem:
    """One event as the relay publishes it: payload (event JSON) and the media files to send first."""

    seq: int
    event_id: uuid.UUID
    payload: bytes
    state: EventState
    media: list[OutboxMedia]
    publishes: int
    created: float

    def media_to_send(self, only: list[str] | None = None) -> list[OutboxMedia]:
        return [m for m in self.media if m.present and (only is None or m.name in only)]


@dataclass(frozen=True)
class AddResult:
    seq: int
    duplicate: bool = False
    dropped_media: list[str] = field(default_factory=list)


AckOutcome = Literal["acked", "resend", "gave_up", "rejected", "duplicate", "unknown"]


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    published: int
    acked: int
    rejected: int
    oldest_unacked_age_s: float | None
    media_bytes: int
    db_bytes: int

    @property
    def unacked(self) -> int:
        return self.pending + self.published

    @property
    def disk_used_bytes(self) -> int:
        return self.media_bytes + self.db_bytes


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_fsync(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst``, fsync ``dst``; returns the SHA-256 of what was written."""
    h = hashlib.sha256()
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while b := fi.read(1 << 20):
            h.update(b)
            fo.write(b)
        fo.flush()
        os.fsync(fo.fileno())
    return h.hexdigest()


class Outbox:
    """SQLite + files queue of events waiting for the central office. Thread-safe."""

    DB_NAME = "outbox.sqlite"

    def __init__(self, root: Path, cfg: OutboxConfig | None = None, health: Health | None = None):
        self.root = Path(root)
        self.cfg = cfg or OutboxConfig()
        self.health = health
        self.media_dir = self.root / "media"
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        try:
            self.media_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.root / self.DB_NAME, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise OutboxError(f"relay.outbox.path: cannot open the outbox at {self.root}: {e}") from None
        self._media_bytes = 0
        self._listeners: list[Callable[[], None]] = []
        self._tx_depth = 0
        self._adding: set[str] = set()
        #: bumped whenever events go back to ``pending`` (a publisher restarts its scan from the start)
        self.requeued = 0
        self._recover()
        self.housekeeping()

    @classmethod
    def for_config(
        cls, oc: OutboxConfig, data_dir: Path, health: Health | None = None, *, base_dir: Path | None = None
    ) -> Outbox:
        """The outbox of ``relay.outbox``: at ``path`` (relative to ``base_dir``, the config file's folder), else
        ``<data_dir>/outbox`` (``data_dir``: ``device.data_dir``)."""
        return cls(outbox_root(oc, data_dir, base_dir), oc, health)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction (one fsync) around several state changes; nests. The relay applies a
        burst of PUBACKs and acks this way."""
        with self._lock:
            if self._tx_depth == 0:
                self._db.execute("BEGIN IMMEDIATE")
            self._tx_depth += 1
            try:
                yield
            except BaseException:
                self._tx_depth -= 1
                if self._tx_depth == 0:
                    self._db.execute("ROLLBACK")
                raise
            self._tx_depth -= 1
            if self._tx_depth == 0:
                self._db.execute("COMMIT")

    def add_listener(self, fn: Callable[[], None]) -> None:
        """``fn()`` is called after an add or a re-queue (lock held: it must not block), to wake a publisher."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _notify(self) -> None:
        for fn in list(self._listeners):
            fn()

    # --- life cycle --------------------------------------------------------------------------

    def _recover(self) -> None:
        """After a crash: remove half-written folders and files no committed row refers to."""
        with self._lock:
            known = {r[0] for r in self._db.execute("SELECT DISTINCT event_id FROM media WHERE present = 1")}
            removed = 0
            for d in self.media_dir.iterdir():
                if d.name.startswith(".incoming-") or (d.is_dir() and d.name not in known):
                    shutil.rmtree(d, ignore_errors=True)
                    removed += 1
            missing = 0
            for eid, name in self._db.execute(
                "SELECT event_id, name FROM media WHERE present = 1"
            ).fetchall():
                if not (self.media_dir / eid / name).exists():
                    self._db.execute(
                        "UPDATE media SET present = 0, dropped_reason = 'missing after restart' WHERE event_id = ? AND name = ?",
                        (eid, name),
                    )
                    missing += 1
            self._media_bytes = int(
                self._db.execute("SELECT COALESCE(SUM(size), 0) FROM media WHERE present = 1").fetchone()[0]
            )
            if removed or missing:
                log(
                    logger, "outbox_recovered", logging.WARNING, orphan_folders=removed, missing_files=missing
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- adding ------------------------------------------------------------------------------

    def add(
        self, event: ViolationEvent, media: dict[str, Path] | None = None, move: bool = False
    ) -> AddResult:
        """Make ``event`` and its files durable; returns once they survive a power cut.

        ``media`` maps each name in ``event.media`` to its file (all must be given; their SHA-256
        must match the event's). ``move=True`` moves the files (same file system) instead of copying.
        Adding an event id again is a no-op (``duplicate=True``). Raises :class:`OutboxError`
        when the disk cannot take even the event record; nothing is half-stored then.
        """
        media = dict(media or {})
        refs = {m.name: m for m in event.media}
        if set(media) != set(refs):
            raise ValueError(
                f"media files {sorted(media)} do not match the event's media list {sorted(refs)}"
            )
        for name, p in media.items():
            if not Path(p).is_file():
                raise ValueError(f"media {name!r}: file {p} does not exist")
        eid = str(event.event_id)
        payload = event.to_json().encode("utf-8")
        # 1. under the lock: duplicate check and disk budget (the kept bytes are reserved)
        with self._lock:
            row = self._db.execute("SELECT seq FROM events WHERE event_id = ?", (eid,)).fetchone()
            if row:
                return AddResult(int(row[0]), duplicate=True)
            if eid in self._adding:
                raise ValueError(f"event {eid} is being added by another thread")
            keep, dropped = self._make_room([(n, refs[n].size) for n in media], len(payload), eid)
            reserved = sum(refs[n].size for n in keep)
            self._media_bytes += reserved
            self._adding.add(eid)
        incoming = self.media_dir / f".incoming-{eid}"
        final = self.media_dir / eid
        try:
            # 2. without the lock (the relay keeps committing meanwhile): files, fsync, rename
            if keep:
                incoming.mkdir(exist_ok=True)
                for name in keep:
                    digest = self._place(Path(media[name]), incoming / name, move)
                    if digest != refs[name].sha256:
                        raise ValueError(
                            f"media {name!r}: SHA-256 of {media[name]} does not match the event's MediaRef"
                        )
                _fsync_dir(incoming)
                os.replace(incoming, final)
                _fsync_dir(self.media_dir)
            # 3. the row, committed (synchronous=FULL): from here on the event survives a power cut
            now = time.time()
            with self.batch():
                cur = self._db.execute(
                    "INSERT INTO events (event_id, payload, state, created) VALUES (?, ?, 'pending', ?)",
                    (eid, payload, now),
                )
                seq = int(cur.lastrowid or 0)
                for name, ref in refs.items():
                    reason = None if name in keep else dropped.get(name, "disk budget")
                    self._db.execute(
                        "INSERT INTO media (event_id, name, size, sha256, present, dropped_reason) VALUES (?, ?, ?, ?, ?, ?)",
                        (eid, name, ref.size, ref.sha256, int(name in keep), reason),
                    )
                self._adding.discard(eid)
        except BaseException as e:
            shutil.rmtree(incoming, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
            with self._lock:
                self._media_bytes -= reserved
                self._adding.discard(eid)
            if not isinstance(e, (OSError, sqlite3.Error)):
                raise
            full = (
                isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) or "full" in str(e).lower()
            )
            msg = f"cannot store event {eid} in {self.root}: {'disk full' if full else e}"
            if self.health:
                self.health.alarm("outbox_write", msg)
            log(logger, "outbox_write_failed", logging.ERROR, event_id=eid, path=str(self.root), error=str(e))
            raise OutboxError(f"relay.outbox.path: {msg}") from None
        if move:
            for name in keep:
                Path(media[name]).unlink(missing_ok=True)
        if self.health:
            self.health.alarm("outbox_write", None)
        with self._lock:
            self._changed.notify_all()
            self._notify()
        return AddResult(seq, dropped_media=sorted(dropped))

    @staticmethod
    def _place(src: Path, dst: Path, move: bool) -> str:
        if move:
            try:
                os.link(src, dst)
                with open(dst, "rb+") as f:
                    os.fsync(f.fileno())
                h = hashlib.sha256()
                with open(dst, "rb") as f:
                    while b := f.read(1 << 20):
                        h.update(b)
                return h.hexdigest()
            except OSError:
                pass  # other file system: copy, the caller unlinks after commit
        return _copy_fsync(src, dst)

    # --- disk budget -------------------------------------------------------------------------

    def _db_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += (self.root / (self.DB_NAME + suffix)).stat().st_size
            except FileNotFoundError:
                pass
        return total

    def _budget(self) -> int:
        return int(self.cfg.max_disk_mb * 1024 * 1024)

    def _make_room(
        self, wanted: list[tuple[str, int]], record_bytes: int, eid: str
    ) -> tuple[list[str], dict[str, str]]:
        """Decide which of the new media to keep, freeing space by policy. Lock held."""
        need = sum(s for _, s in wanted)
        free = self._budget() - self._media_bytes - self._db_bytes() - record_bytes - 4096
        if need <= free:
            return [n for n, _ in wanted], {}
        free += self._drop_media(
            "SELECT m.event_id, m.name, m.size FROM media m JOIN events e ON e.event_id = m.event_id "
            "WHERE m.present = 1 AND e.state IN ('acked', 'rejected') ORDER BY e.state = 'rejected', e.seq",
            need - free,
            "disk budget (acked)",
        )
        if need <= free:
            return [n for n, _ in wanted], {}
        if self.cfg.when_full == "drop_oldest_unsent_media":
            freed = self._drop_media(
                "SELECT m.event_id, m.name, m.size FROM media m JOIN events e ON e.event_id = m.event_id "
                "WHERE m.present = 1 AND e.state IN ('pending', 'published') ORDER BY e.seq",
                need - free,
                "disk budget (dropped for newer evidence)",
            )
            free += freed
            if freed:
                self._alarm_full(
                    f"outbox disk budget ({self.cfg.max_disk_mb:g} MB) full of unsent evidence: dropped {freed} bytes of the oldest unsent media"
                )
        keep: list[str] = []
        dropped: dict[str, str] = {}
        for name, size in wanted:
            if size <= free:
                keep.append(name)
                free -= size
            else:
                dropped[name] = "disk budget (new media rejected)"
        if dropped:
            self._alarm_full(
                f"outbox disk budget ({self.cfg.max_disk_mb:g} MB) full: event {eid} stored without media {sorted(dropped)}"
            )
            log(
                logger,
                "outbox_media_rejected",
                logging.ERROR,
                event_id=eid,
                media=",".join(sorted(dropped)),
                policy=self.cfg.when_full,
            )
        return keep, dropped

    def _alarm_full(self, msg: str) -> None:
        if self.health:
            self.health.alarm("outbox_full", msg)

    def _drop_media(self, query: str, amount: int, reason: str) -> int:
        freed = 0
        rows = self._db.execute(query).fetchall()
        for eid, name, size in rows:
            if freed >= amount:
                break
            self._delete_file(eid, name, reason)
            freed += int(size)
        if freed:
            log(logger, "outbox_media_dropped", logging.WARNING, bytes=freed, reason=reason)
        return freed

    def _delete_file(self, eid: str, name: str, reason: str) -> None:
        (self.media_dir / eid / name).unlink(missing_ok=True)
        try:
            (self.media_dir / eid).rmdir()
        except OSError:
            pass
        cur = self._db.execute(
            "UPDATE media SET present = 0, dropped_reason = ? WHERE event_id = ? AND name = ? AND present = 1",
            (reason, eid, name),
        )
        if cur.rowcount:
            size = self._db.execute(
                "SELECT size FROM media WHERE event_id = ? AND name = ?", (eid, name)
            ).fetchone()[0]
            self._media_bytes -= int(size)

    def housekeeping(self, now: float | None = None) -> int:
        """Delete acknowledged media and records older than ``max_age_days``; refresh alarms.
        Returns the number of records removed."""
        now = time.time() if now is None else now
        cutoff = now - self.cfg.max_age_days * 86400
        with self._lock:
            old = self._db.execute(
                "SELECT event_id FROM events WHERE state IN ('acked', 'rejected') AND COALESCE(acked_at, created) < ?",
                (cutoff,),
            ).fetchall()
            for (eid,) in old:
                for (name,) in self._db.execute(
                    "SELECT name FROM media WHERE event_id = ? AND present = 1", (eid,)
                ).fetchall():
                    self._delete_file(eid, name, "max_age_days")
                shutil.rmtree(self.media_dir / eid, ignore_errors=True)
            if old:
                with self.batch():
                    self._db.executemany("DELETE FROM media WHERE event_id = ?", old)
                    self._db.executemany("DELETE FROM events WHERE event_id = ?", old)
                log(logger, "outbox_expired", records=len(old))
            used = self._media_bytes + self._db_bytes()
            if self.health and used < 0.9 * self._budget():
                self.health.alarm("outbox_full", None)
            return len(old)

    # --- relay side --------------------------------------------------------------------------

    def _item(self, row: tuple[int, str, bytes, str, int, float, str | None]) -> OutboxItem:
        seq, eid, payload, state, publishes, created, resend_names = row
        only = set(resend_names.split("\n")) if resend_names else None
        media = [
            OutboxMedia(n, self.media_dir / eid / n, int(s), h, bool(p))
            for n, s, h, p in self._db.execute(
                "SELECT name, size, sha256, present FROM media WHERE event_id = ? ORDER BY rowid", (eid,)
            )
            if only is None or n in only
        ]
        return OutboxItem(
            int(seq), uuid.UUID(eid), bytes(payload), EventState(state), media, int(publishes), float(created)
        )

    def next_pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxItem]:
        """Pending events with ``seq > after_seq``, in insertion order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, payload, state, publishes, created, resend_names FROM events "
                "WHERE state = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
            return [self._item(r) for r in rows]

    def mark_published(self, seqs: Iterable[int]) -> int:
        """Broker PUBACKed these events (batch: one commit)."""
        seqs = list(seqs)
        if not seqs:
            return 0
        now = time.time()
        with self.batch():
            n = 0
            for s in seqs:
                n += self._db.execute(
                    "UPDATE events SET state = 'published', published_at = ?, publishes = publishes + 1, resend_names = NULL "
                    "WHERE seq = ? AND state = 'pending'",
                    (now, s),
                ).rowcount
            self._changed.notify_all()
            return n

    def mark_acked(
        self, event_id: uuid.UUID | str, media_complete: bool, missing: list[str] | None = None
    ) -> AckOutcome:
        """Central stored the event. Incomplete media are re-sent (up to ``max_resends``)."""
        eid = str(event_id)
        with self.batch():
            row = self._db.execute(
                "SELECT state, resends, publishes FROM events WHERE event_id = ?", (eid,)
            ).fetchone()
            if row is None or (row[0] == "pending" and row[2] == 0):
                return "unknown"  # not ours, or never published: no central can have stored it
            state, resends, _ = row
            if state == "acked":
                return "duplicate"
            present = [
                n
                for (n,) in self._db.execute(
                    "SELECT name FROM media WHERE event_id = ? AND present = 1", (eid,)
                )
            ]
            wanted = [n for n in (missing or present) if n in present]
            now = time.time()
            if not media_complete and wanted:
                if resends < self.cfg.max_resends:
                    self._db.execute(
                        "UPDATE events SET state = 'pending', resends = resends + 1, resend_names = ? WHERE event_id = ?",
                        ("\n".join(wanted), eid),
                    )
                    self.requeued += 1
                    self._changed.notify_all()
                    self._notify()
                    log(
                        logger,
                        "outbox_media_resend",
                        logging.WARNING,
                        event_id=eid,
                        media=",".join(wanted),
                        resend=resends + 1,
                    )
                    return "resend"
                outcome: AckOutcome = "gave_up"
                if self.health:
                    self.health.alarm(
                        f"media_incomplete:{eid}",
                        f"central never received media {wanted} of event {eid} after {resends} re-sends",
                    )
                log(logger, "outbox_media_gave_up", logging.ERROR, event_id=eid, media=",".join(wanted))
            else:
                outcome = "acked"
            self._db.execute(
                "UPDATE events SET state = 'acked', acked_at = ?, resend_names = NULL, reason = ? WHERE event_id = ?",
                (
                    now,
                    f"media never received: {','.join(wanted)}"[:500] if outcome == "gave_up" else None,
                    eid,
                ),
            )
            if self.cfg.delete_media_on_ack:
                for n in present:
                    self._delete_file(eid, n, "acked (delete_media_on_ack)")
            self._changed.notify_all()
            return outcome

    def mark_rejected(self, event_id: uuid.UUID | str, reason: str) -> AckOutcome:
        eid = str(event_id)
        with self.batch():
            cur = self._db.execute(
                "UPDATE events SET state = 'rejected', acked_at = ?, reason = ? WHERE event_id = ? AND state != 'acked' "
                "AND (state != 'pending' OR publishes > 0)",
                (time.time(), reason[:500], eid),
            )
            if not cur.rowcount:
                return "unknown"
            n = self._db.execute("SELECT COUNT(*) FROM events WHERE state = 'rejected'").fetchone()[0]
            if self.health:
                self.health.alarm(
                    "relay_rejected", f"central rejected {n} event(s); last {eid}: {reason[:200]}"
                )
            log(logger, "event_rejected_by_central", logging.ERROR, event_id=eid, reason=reason[:200])
            self._changed.notify_all()
            return "rejected"

    def requeue_unacked(self, older_than_s: float, now: float | None = None) -> int:
        """Published events central has not acknowledged in time go back to ``pending`` (sent again).

        The wait doubles with each publish of the same event (``older_than_s`` x 1, 2, 4 ... 64), so a
        central office that is down or far behind gets a trickle of re-sends, not a storm."""
        now = time.time() if now is None else now
        with self.batch():
            cur = self._db.execute(
                "UPDATE events SET state = 'pending' WHERE state = 'published' "
                "AND published_at + ? * (1 << MIN(MAX(publishes - 1, 0), 6)) < ?",
                (older_than_s, now),
            )
            if cur.rowcount:
                self.requeued += 1
                self._changed.notify_all()
                self._notify()
                stubborn = self._db.execute(
                    "SELECT COUNT(*) FROM events WHERE state = 'pending' AND publishes >= 3"
                ).fetchone()[0]
                if self.health:
                    msg = f"{stubborn} event(s) published 3+ times and never acknowledged by central (check the ACL and the central consumer)"
                    self.health.alarm("relay_unacked", msg if stubborn else None)
                log(
                    logger,
                    "outbox_requeued_unacked",
                    logging.WARNING,
                    events=cur.rowcount,
                    older_than_s=older_than_s,
                )
            return int(cur.rowcount)

    def count_state(self, state: EventState | str) -> int:
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT COUNT(*) FROM events WHERE state = ?", (EventState(state).value,)
                ).fetchone()[0]
            )

    def state_of(self, event_id: uuid.UUID | str) -> EventState | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM events WHERE event_id = ?", (str(event_id),)).fetchone()
            return EventState(row[0]) if row else None

    def media_state(self, event_id: uuid.UUID | str) -> dict[str, tuple[bool, str | None]]:
        """name -> (file present, why dropped)."""
        with self._lock:
            return {
                n: (bool(p), r)
                for n, p, r in self._db.execute(
                    "SELECT name, present, dropped_reason FROM media WHERE event_id = ?", (str(event_id),)
                )
            }

    def stats(self) -> OutboxStats:
        with self._lock:
            counts = dict(self._db.execute("SELECT state, COUNT(*) FROM events GROUP BY state").fetchall())
            oldest = self._db.execute(
                "SELECT MIN(created) FROM events WHERE state IN ('pending', 'published')"
            ).fetchone()[0]
            return OutboxStats(
                pending=int(counts.get("pending", 0)),
                published=int(counts.get("published", 0)),
                acked=int(counts.get("acked", 0)),
                rejected=int(counts.get("rejected", 0)),
                oldest_unacked_age_s=None if oldest is None else max(0.0, time.time() - float(oldest)),
                media_bytes=self._media_bytes,
                db_bytes=self._db_bytes(),
            )

    def wait_until(self, condition: Literal["published", "acked"], timeout: float) -> bool:
        """Block until no event is left unpublished (``published``) or unacknowledged (``acked``)."""
        states = ("pending",) if condition == "published" else ("pending", "published")
        q = (
            "SELECT 1 FROM events WHERE state IN (?) LIMIT 1"
            if len(states) == 1
            else "SELECT 1 FROM events WHERE state IN (?, ?) LIMIT 1"
        )
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._db.execute(q, states).fetchone() is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                # notified by this process's changes; polled for another process's (same SQLite file)
                self._changed.wait(min(left, 0.1))
            return True


def lost_evidence(root: Path) -> list[str]:
    """What this outbox lost for good, read-only (safe beside a running daemon): events central rejected, media
    dropped before central had them (disk budget, missing after a crash), media central never received."""
    db = Path(root) / Outbox.DB_NAME
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rejected = con.execute("SELECT COUNT(*) FROM events WHERE state = 'rejected'").fetchone()[0]
        dropped = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT m.event_id) FROM media m JOIN events e ON e.event_id = m.event_id "
            "WHERE m.present = 0 AND (m.dropped_reason LIKE 'disk budget (dropped%' "
            "OR m.dropped_reason LIKE 'disk budget (new%' "
            "OR (m.dropped_reason = 'missing after restart' AND e.state != 'acked'))"
        ).fetchone()
        gave_up = con.execute(
            "SELECT COUNT(*) FROM events WHERE state = 'acked' AND reason LIKE 'media never received%'"
        ).fetchone()[0]
    finally:
        con.close()
    out = []
    if rejected:
        out.append(f"{rejected} event(s) rejected by central (kept in the outbox for inspection)")
    if dropped[0]:
        out.append(f"{dropped[0]} media file(s) of {dropped[1]} event(s) lost before central had them")
    if gave_up:
        out.append(f"{gave_up} event(s) whose media central never received after every re-send")
    return out
