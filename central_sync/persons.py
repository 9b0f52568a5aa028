"""Person files in the store: gallery enrolment, unknown files, merging (clause 8.2.1–8.2.2).

The in-memory :class:`~central_sync.identity.IdentityResolver` is built from the store at start
(:func:`load_resolver`) and kept in step by the consumer; enrolment writes the gallery person and
its embeddings, then merges every provisional unknown file that matches the new photos into the
person (events, embeddings, dispositions and tasks move; the unknown file records
``merged_into``) and re-assesses the person's tier.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select, update

from anqi_contract.logs import log
from central_sync.config import CentralConfig
from central_sync.identity import (
    EmbedFn,
    EnrolmentError,
    EnrolmentRecord,
    Gallery,
    IdentityResolver,
    UnknownFiles,
    embed_photo,
    from_blob,
    normalise,
    to_blob,
    validate_id_number,
)
from central_sync.storage.models import (
    Disposition,
    Embedding,
    Event,
    Person,
    PersonFileChange,
    Review,
    Task,
)
from central_sync.storage.store import CentralStore

logger = logging.getLogger("anqi.central.persons")


def new_unknown_id() -> str:
    return "U-" + uuid.uuid4().hex[:12]


def load_resolver(store: CentralStore, cfg: CentralConfig) -> IdentityResolver:
    """Gallery (enrolled persons' gallery embeddings) + unknown files (their event embeddings)."""
    gallery = Gallery()
    unknown = UnknownFiles(cfg.identity.cluster_threshold, new_unknown_id)
    with store.session() as s:
        rows = s.execute(
            select(Embedding.person_id, Embedding.vector, Person.kind, Embedding.source)
            .join(Person, Person.person_id == Embedding.person_id)
            .where(Person.merged_into.is_(None))
            .order_by(Embedding.id)
        ).all()
    g_ids: list[str] = []
    g_vecs: list[np.ndarray] = []
    unk: dict[str, list[np.ndarray]] = {}
    for pid, blob, kind, source in rows:
        v = from_blob(blob)
        if v.shape[0] != gallery.dim:
            continue
        if kind == "unknown":
            unk.setdefault(pid, []).append(v)
        elif source == "gallery":
            g_ids.append(pid)
            g_vecs.append(v)
    if g_ids:
        gallery.add_many(g_ids, np.stack(g_vecs))
    for pid, vs in unk.items():
        unknown.load(pid, np.stack(vs))
    log(
        logger,
        "identity_loaded",
        gallery_persons=len(gallery.persons),
        gallery_rows=len(gallery),
        unknown_files=len(unknown),
    )
    with store.session() as s:
        seen = int(s.scalar(select(func.max(Embedding.id))) or 0)
    return IdentityResolver(
        gallery,
        unknown,
        cfg.identity.match_threshold,
        seen_embedding_id=seen,
        review_margin=cfg.identity.review_margin,
    )


def catch_up_unknown_files(store: CentralStore, resolver: IdentityResolver) -> int:
    """Load unknown files that other consumers opened since this resolver last looked; returns how many.

    Called before opening a new file, so that a rider first seen by another consumer of the share
    group joins that consumer's file (one person, one file)."""
    with store.session() as s:
        rows = s.execute(
            select(Embedding.id, Embedding.person_id, Embedding.vector)
            .join(Person, Person.person_id == Embedding.person_id)
            .where(
                Embedding.id > resolver.seen_embedding_id,
                Person.kind == "unknown",
                Person.merged_into.is_(None),
            )
            .order_by(Embedding.id)
        ).all()
        top = int(s.scalar(select(func.max(Embedding.id))) or 0)
    new: dict[str, list[np.ndarray]] = {}
    with resolver._lock:  # noqa: SLF001
        for _, pid, blob in rows:
            if pid not in resolver.unknown:
                v = from_blob(blob)
                if v.shape[0] == resolver.gallery.dim:
                    new.setdefault(pid, []).append(v)
        for pid, vs in new.items():
            resolver.unknown.load(pid, np.stack(vs))
        resolver.seen_embedding_id = max(resolver.seen_embedding_id, top)
    return len(new)


@dataclass
class EnrolmentReport:
    enrolled: int = 0
    photos: int = 0
    photos_without_face: int = 0
    merged_unknown_files: int = 0
    problems: list[str] = field(default_factory=list)
    #: persons enrolled with ``force`` although their face matches another enrolled person: to be reviewed
    review: list[str] = field(default_factory=list)


class FaceConflict(EnrolmentError):
    """The photos match a person already enrolled under another id (one person, one file)."""

    def __init__(self, person_id: str, other: str, score: float):
        super().__init__(
            f"{person_id}: face already enrolled as {other} (cosine {score:.3f} >= match threshold);"
            " not enrolled (use --force to enrol anyway, flagged for review)"
        )
        self.person_id, self.other, self.score = person_id, other, score


def face_conflict(
    resolver: IdentityResolver, person_id: str, vectors: np.ndarray, threshold: float
) -> tuple[str, float] | None:
    """The enrolled person (other than ``person_id``) whose gallery face matches any of ``vectors`` best at or
    above ``threshold``, with the score; ``None`` when there is none."""
    best: tuple[str, float] | None = None
    with resolver._lock:  # noqa: SLF001 - the resolver's own lock guards its matrices
        if not len(resolver.gallery):
            return None
        for row in normalise(vectors):
            for pid, sc in resolver.gallery.person_scores(row[None]).items():
                if pid != person_id and sc >= threshold and (best is None or sc > best[1]):
                    best = (pid, sc)
    return best


def enrol(
    store: CentralStore,
    cfg: CentralConfig,
    resolver: IdentityResolver,
    records: Sequence[EnrolmentRecord],
    embed: EmbedFn,
    on_merged: Callable[[str], None] | None = None,
    force: bool = False,
) -> EnrolmentReport:
    """Enrol gallery persons from photos (embedded with the edge's face model) and merge their unknown files."""
    rep = EnrolmentReport()
    for r in records:
        if r.id_number:
            try:
                validate_id_number(r.id_number, f"{r.person_id}: id_number")
            except EnrolmentError as e:
                rep.problems.append(f"{e} (not enrolled)")
                continue
        vecs = []
        for p in r.photos:
            if not Path(p).is_file():
                rep.problems.append(f"{r.person_id}: photo not found: {p}")
                continue
            v = embed_photo(Path(p), embed)
            rep.photos += 1
            if v is None:
                rep.photos_without_face += 1
                rep.problems.append(f"{r.person_id}: no face found in {Path(p).name}")
                continue
            vecs.append(v)
        if not vecs:
            rep.problems.append(f"{r.person_id}: not enrolled (no usable photo)")
            continue
        try:
            merged = enrol_embeddings(store, cfg, resolver, r, np.stack(vecs), force=force)
        except FaceConflict as e:
            rep.problems.append(str(e))
            continue
        if force and (
            hit := face_conflict(resolver, r.person_id, np.stack(vecs), cfg.identity.match_threshold)
        ):
            rep.review.append(f"{r.person_id}: face matches {hit[0]} (cosine {hit[1]:.3f}): review")
        rep.merged_unknown_files += merged
        rep.enrolled += 1
        if merged and on_merged is not None:
            on_merged(r.person_id)
    return rep


def unmerged_from(store: CentralStore, person_id: str) -> set[str]:
    """Unknown files whose merge into ``person_id`` an officer undid: enrolment does not merge them again."""
    with store.session() as s:
        return set(
            s.scalars(
                select(PersonFileChange.source_id).where(
                    PersonFileChange.action == "merge",
                    PersonFileChange.target_id == person_id,
                    PersonFileChange.undone_by.is_not(None),
                )
            )
        )


def enrol_embeddings(
    store: CentralStore,
    cfg: CentralConfig,
    resolver: IdentityResolver,
    r: EnrolmentRecord,
    vectors: np.ndarray,
    force: bool = False,
) -> int:
    """Write one gallery person with its embeddings; returns how many unknown files were merged into it.

    A partial update: a field not given (``None``, a blank CSV column) keeps what is stored, so re-enrolling
    with new photos never erases the ID number, community or phone. An ID number is validated (GB 11643)."""
    v = normalise(vectors)
    given: dict[str, object] = dict(
        name=r.name,
        id_number=validate_id_number(r.id_number, f"{r.person_id}: id_number") if r.id_number else None,
        community=r.community,
        employer=r.employer,
        phone=r.phone,
        party_member=r.party_member,
    )
    fields = {k: val for k, val in given.items() if val is not None}
    hit = face_conflict(resolver, r.person_id, v, cfg.identity.match_threshold)
    if hit is not None:
        if not force:
            raise FaceConflict(r.person_id, *hit)
        log(
            logger,
            "enrolment_face_conflict",
            level=logging.WARNING,
            person=r.person_id,
            other=hit[0],
            score=round(hit[1], 3),
            review=True,
        )
    with store.session() as s:
        if hit is not None:  # enrolled with force although the face matches another person: to be reviewed
            s.add(
                Review(
                    kind="enrolment_conflict",
                    person_id=r.person_id,
                    other_person_id=hit[0],
                    score=round(hit[1], 4),
                    created_at=datetime.now(timezone.utc),
                )
            )
        p = s.get(Person, r.person_id)
        if p is None:
            s.add(
                Person(
                    person_id=r.person_id,
                    kind="enrolled",
                    created_at=datetime.now(timezone.utc),
                    tier="none",
                    **{"party_member": False, **fields},
                )
            )
        else:
            p.kind = "enrolled"
            for k, val in fields.items():
                setattr(p, k, val)
        s.flush()
        for row in v:
            s.add(
                Embedding(
                    person_id=r.person_id,
                    source="gallery",
                    model=cfg.identity.embedding_model,
                    vector=to_blob(row),
                )
            )
    undone = unmerged_from(store, r.person_id)
    with resolver._lock:  # noqa: SLF001 - the resolver's own lock guards its matrices
        resolver.gallery.add(r.person_id, v)
        merged = [u for u in resolver.unknown.matching(v, cfg.identity.match_threshold) if u not in undone]
        resolver.unknown.remove(merged)
    for uid in merged:
        merge_person(store, uid, r.person_id, actor="enrol", reason="face matched the enrolment photos")
    log(logger, "person_enrolled", person=r.person_id, photos=len(v), merged_unknown=len(merged))
    return len(merged)


#: the rows of a person file that a merge moves: (key in PersonFileChange.moved, model, id column)
FILE_ROWS = (
    ("events", Event, Event.event_id),
    ("embeddings", Embedding, Embedding.id),
    ("dispositions", Disposition, Disposition.id),
    ("tasks", Task, Task.task_id),
)


def merge_person(
    store: CentralStore, source_id: str, target_id: str, actor: str = "-", reason: str = ""
) -> int:
    """Move everything of ``source_id`` (an unknown file) to ``target_id``; the source keeps ``merged_into``. The ids
    of the rows moved are recorded (``person_file_changes``, with ``actor`` and ``reason``) so that
    :func:`central_sync.corrections.unmerge` can undo exactly this merge. Returns the change's id."""
    with store.session() as s:
        moved: dict[str, list[Any]] = {}
        for key, model, col in FILE_ROWS:
            res = s.execute(
                update(model).where(model.person_id == source_id).values(person_id=target_id).returning(col)
            )
            moved[key] = sorted(r for (r,) in res)
        before = s.scalar(select(Person.tier).where(Person.person_id == source_id))
        s.execute(
            update(Person).where(Person.person_id == source_id).values(merged_into=target_id, tier="none")
        )
        change = PersonFileChange(
            time=datetime.now(timezone.utc),
            action="merge",
            source_id=source_id,
            target_id=target_id,
            actor=actor[:64] or "-",
            reason=reason,
            moved=moved,
            outcome={"source_tier": before},
        )
        s.add(change)
        s.flush()
        cid = int(change.id)
    log(
        logger,
        "unknown_file_merged",
        source=source_id,
        target=target_id,
        by=actor,
        events=len(moved["events"]),
        change=cid,
    )
    return cid
