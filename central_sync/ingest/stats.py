"""The consumer's counters, shared by its parts (``anqi-central run`` prints them; tests wait on them)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class ConsumerStats:
    events_received: int = 0
    events_stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    acks_sent: int = 0
    media_files: int = 0
    corrupt_chunks: int = 0
    tier_changes: int = 0
    feedback: int = 0
    errors: int = 0
    last_assessment: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _stored_cv: threading.Condition = field(default_factory=threading.Condition, repr=False, compare=False)

    def count_error(self, n: int = 1) -> None:
        with self._lock:
            self.errors += n

    def count_duplicate(self) -> None:
        with self._lock:
            self.duplicates += 1

    def count_acks(self, n: int) -> None:
        with self._lock:
            self.acks_sent += n

    def count_stored(self, n: int) -> None:
        """``n`` new events committed; wakes :meth:`wait_stored`."""
        with self._stored_cv:
            self.events_stored += n
            self._stored_cv.notify_all()

    def wait_stored(self, n_events: int, timeout: float) -> bool:
        """Block until ``n_events`` distinct events were stored."""
        with self._stored_cv:
            return self._stored_cv.wait_for(lambda: self.events_stored >= n_events, timeout)
