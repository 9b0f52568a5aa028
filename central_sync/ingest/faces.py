"""Who rode: an event's face matched against the gallery and the unknown files; inside the transaction, one
unknown file per rider (under the group-wide lock, after catching up with the files other consumers opened) and
merged files followed; the gallery reloaded when another process enrolled or merged someone."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anqi_contract.logs import log
from central_sync.config import IdentityConfig
from central_sync.identity import IdentityResolver, Match
from central_sync.ingest.pending import Pending
from central_sync.persons import catch_up_unknown_files
from central_sync.storage.models import Embedding, Person, PersonFileChange
from central_sync.storage.store import CentralStore

logger = logging.getLogger("anqi.central.consumer")


class FaceIdentifier:
    """The consumer's identity: ``resolver`` (gallery + unknown files) kept in step with the store."""

    def __init__(
        self,
        identity: IdentityConfig,
        store: CentralStore,
        resolver: IdentityResolver,
        load: Callable[[], IdentityResolver],
    ):
        self.identity = identity
        self.store = store
        self.resolver = resolver
        self._load = load  # a fresh resolver from the store (gallery and unknown files)
        self._signature = self.signature()

    def identify(self, p: Pending) -> None:
        """``p.match``: the face's match (``Match(None, ..)`` when it needs a new unknown file), ``None`` without a
        usable face; ``p.vector``: its embedding."""
        p.match = None
        ev = p.event
        f = ev.face
        if not f.found or not f.embedding:
            return
        want = self.identity.embedding_model.lower()
        if f.embedding_model and not f.embedding_model.lower().startswith(want):
            log(
                logger,
                "embedding_model_mismatch",
                logging.WARNING,
                event_id=str(ev.event_id),
                model=f.embedding_model,
                expected=want,
            )
            return
        if f.quality is not None and f.quality < self.identity.min_quality:
            return
        try:
            p.vector = np.asarray(f.embedding, dtype=np.float32)
            p.match = self.resolver.resolve(
                p.vector, open_file=False
            )  # Match(None, ...): a new file is needed
        except ValueError as e:
            log(logger, "embedding_unusable", logging.WARNING, event_id=str(ev.event_id), error=str(e))

    def resolve_persons(self, s: Session, todo: list[Pending]) -> tuple[list[Pending], list[Pending]]:
        """Inside the transaction, event by event: open or join an unknown file for a face nobody known has, follow
        merged files; stop before the second event of one person. Returns (this transaction's events, the rest)."""
        locked = False
        persons: set[str] = set()
        # the merges of the files already matched, in one look-up (not one per event)
        ask = sorted(
            {
                p.match.person_id
                for p in todo
                if p.match is not None and p.match.person_id and not p.match.new_file and not p.followed
            }
        )
        merges = self.store.merged_into_many(ask, s) if ask else {}
        asked = set(ask)
        for i, p in enumerate(todo):
            m = p.match
            if m is not None and (m.person_id is None or m.new_file) and not locked:
                # nobody known: under the group-wide lock (PostgreSQL; held until this transaction commits), pick up
                # the files other consumers opened (once: while we hold the lock nobody else opens one), then join
                # one or open a new one: one rider, one file. A file opened by a transaction that failed is written
                # under the lock too, when its event is retried.
                self.store.lock_new_person_files(s)
                catch_up_unknown_files(self.store, self.resolver)
                locked = True
            if m is not None and m.person_id is None:
                p.match = m = self.resolver.resolve(
                    p.vector if p.vector is not None else (p.event.face.embedding or [])
                )
            if m is not None and m.person_id and not m.new_file and not p.followed:
                merged_into = (
                    merges.get(m.person_id)
                    if m.person_id in asked
                    else self.store.merged_into(m.person_id, s)
                )
                if merged_into:  # a stale unknown file: follow the merge
                    p.match = Match(merged_into, m.score)
                p.followed = True
            pid = p.person_id
            if pid is not None:
                if pid in persons:
                    return todo[:i], todo[i:]
                persons.add(pid)
        return todo, []

    def signature(self) -> tuple[int, int, int]:
        """Changes when persons are enrolled, unknown files merged (by ``anqi-central enrol`` elsewhere) or person files
        corrected (``unmerge``, ``reassign``: faces moved between files)."""
        with self.store.session() as s:
            g = s.scalar(select(func.max(Embedding.id)).where(Embedding.source == "gallery")) or 0
            m = s.scalar(select(func.count()).select_from(Person).where(Person.merged_into.is_not(None))) or 0
            c = s.scalar(select(func.max(PersonFileChange.id))) or 0
        return int(g), int(m), int(c)

    def refresh(self) -> bool:
        """Reload gallery and unknown files from the store if another process changed them."""
        sig = self.signature()
        if sig == self._signature:
            return False
        fresh = self._load()
        with self.resolver._lock:  # noqa: SLF001
            self.resolver.gallery, self.resolver.unknown = fresh.gallery, fresh.unknown
        self._signature = sig
        log(
            logger,
            "identity_reloaded",
            gallery_persons=len(fresh.gallery.persons),
            unknown_files=len(fresh.unknown),
        )
        return True
