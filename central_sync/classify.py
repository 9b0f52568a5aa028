"""``anqi-central classify``: table 1 for a JSONL file of events and dispositions, for audits and tests.

It runs exactly the service's code: every line goes into a private in-memory store through
:meth:`CentralStore.add_violation` / :meth:`CentralStore.add_disposition` (the consumer's writes,
idempotent on ``event_id``), faces without ``person_id`` are resolved by the same
:class:`~central_sync.identity.IdentityResolver` (unknown files numbered ``unknown-000001``, ...,
in input order), and each person is assessed by :meth:`CentralStore.assess_person`, the call the
consumer and the daily re-evaluation make.

Input lines (JSON objects, one per line; blank lines and ``#`` comments ignored):

* an event: ``time`` (ISO 8601 with offset), ``violation_type``, and ``person_id`` or an
  ``embedding`` (top level or ``face.embedding``); optional ``event_id``, ``point_id``, ...;
* a disposition record: ``{"person_id", "disposition": "education"|"fine"|..., "time"}``.

Persons are printed when they have at least one event or disposition at or before ``--at``;
records after ``--at`` are ignored. Bad lines are reported on stderr as ``FILE:LINE: key: problem``
and skipped.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from anqi_contract.event import SCHEMA_VERSION
from central_sync.config import CentralConfig
from central_sync.identity import Gallery, IdentityResolver, UnknownFiles
from central_sync.storage.store import CentralStore, ViolationRecord
from central_sync.tiers import TierAssessment, parse_aware_time

#: disposition kinds a record may name; only ``tiers.repeat_dispositions`` (education, fine) make "repeat"
DISPOSITION_ALIASES = {"sms": "sms_reminder", "voice": "voice_reminder", "reminder": "sms_reminder"}


@dataclass
class ClassifyInput:
    records: int = 0
    events: int = 0
    duplicates: int = 0
    dispositions: int = 0
    problems: list[str] = field(default_factory=list)
    #: person ids given as JSON integers, printed back as integers
    int_ids: set[str] = field(default_factory=set)


class LineError(ValueError):
    pass


def _embedding(obj: dict[str, Any]) -> list[float] | None:
    v = obj.get("embedding")
    if v is None and isinstance(obj.get("face"), dict):
        v = obj["face"].get("embedding")
    if v is None:
        return None
    if not isinstance(v, list) or not v or not all(isinstance(x, (int, float)) for x in v):
        raise LineError("embedding: must be a non-empty list of numbers")
    return [float(x) for x in v]


def _str_field(obj: dict[str, Any], key: str, required: bool = True) -> str | None:
    v = obj.get(key)
    if v is None or v == "":
        if required:
            raise LineError(f"{key}: required key is missing")
        return None
    if not isinstance(v, (str, int)):
        raise LineError(f"{key}: must be a string, got {type(v).__name__}")
    return str(v)


def load_lines(
    store: CentralStore, lines: Iterable[str], source: str, resolver: IdentityResolver
) -> ClassifyInput:
    """Store every good line (one transaction: the store is private and in memory); report the bad ones."""
    with store.session() as s:
        return _load(store, s, lines, source, resolver)


def _load(
    store: CentralStore, s: Session, lines: Iterable[str], source: str, resolver: IdentityResolver
) -> ClassifyInput:
    info = ClassifyInput()
    for n, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        info.records += 1
        try:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise LineError(f"not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise LineError("not a JSON object")
            if "schema_version" in obj and obj["schema_version"] != SCHEMA_VERSION:
                raise LineError(
                    f"schema_version: {obj['schema_version']!r} is not supported (this build reads {SCHEMA_VERSION})"
                )
            time = parse_aware_time(obj.get("time"), "time") if obj.get("time") is not None else None
            if time is None:
                raise LineError("time: required key is missing")
            if "disposition" in obj:
                pid = _str_field(obj, "person_id")
                if isinstance(obj.get("person_id"), int):
                    info.int_ids.add(str(obj["person_id"]))
                kind = _str_field(obj, "disposition")
                assert pid is not None and kind is not None
                kind = DISPOSITION_ALIASES.get(kind.lower(), kind.lower())
                store.add_disposition(pid, kind, time, source="import", s=s)
                info.dispositions += 1
                continue
            vtype = _str_field(obj, "violation_type")
            pid = _str_field(obj, "person_id", required=False)
            if isinstance(obj.get("person_id"), int):
                info.int_ids.add(str(obj["person_id"]))
            score = None
            if pid is None:
                emb = _embedding(obj)
                if emb is None:
                    raise LineError("person_id: required (or an embedding to match)")
                try:
                    m = resolver.resolve(emb)
                except ValueError as e:
                    raise LineError(f"embedding: {e}") from None
                pid, score = m.person_id, m.score
            eid = _str_field(obj, "event_id", required=False) or str(uuid.uuid4())
            rec = ViolationRecord(
                event_id=eid,
                violation_type=str(vtype),
                time=time,
                person_id=pid,
                point_id=str(obj.get("point_id") or ""),
                device_id=str(obj.get("device_id") or ""),
                site_id=str(obj.get("site_id") or ""),
                match_score=score,
            )
            if store.add_violation(rec, s):
                info.events += 1
            else:
                info.duplicates += 1
        except (LineError, ValueError) as e:
            info.problems.append(f"{source}:{n}: {e}")
    return info


def classify_lines(
    lines: Iterable[str],
    at: datetime,
    cfg: CentralConfig | None = None,
    source: str = "<stdin>",
    gallery_from: CentralStore | None = None,
) -> tuple[list[TierAssessment], ClassifyInput]:
    """Table 1 for the records in ``lines``. ``gallery_from``: match embeddings against this store's
    gallery and unknown files (read only) instead of starting with an empty gallery."""
    cfg = cfg or CentralConfig()
    store = CentralStore("sqlite://")
    try:
        store.migrate()
        counter = iter(range(1, 1 << 62))
        if gallery_from is not None:
            from central_sync.persons import load_resolver

            resolver = load_resolver(gallery_from, cfg)
            resolver.unknown.new_id = lambda: f"unknown-{next(counter):06d}"
        else:
            resolver = IdentityResolver(
                Gallery(),
                UnknownFiles(cfg.identity.cluster_threshold, lambda: f"unknown-{next(counter):06d}"),
                cfg.identity.match_threshold,
            )
        info = load_lines(store, lines, source, resolver)
        out = [store.assess_person(pid, at, cfg.tiers) for pid in store.persons_with_records_until(at)]
        return out, info
    finally:
        store.close()


def classify_file(
    path: Path, at: datetime, cfg: CentralConfig | None = None, gallery_from: CentralStore | None = None
) -> tuple[list[TierAssessment], ClassifyInput]:
    with path.open(encoding="utf-8") as f:
        return classify_lines(f, at, cfg, source=path.name, gallery_from=gallery_from)
