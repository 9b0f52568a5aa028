"""An event on its way into the store, as the writer and the face identifier pass it between them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from anqi_contract import protocol as P
from anqi_contract.event import ViolationEvent
from central_sync.identity import Match
from central_sync.storage.store import ViolationRecord


@dataclass
class Pending:
    """A new event on its way into the store: its identity match and the later copies of it in the same batch."""

    topic: P.Topic
    event: ViolationEvent
    match: Match | None = None
    followed: bool = False  # merged_into looked up
    copies: list[P.Topic] = field(default_factory=list)
    vector: np.ndarray | None = None  # the face embedding as float32, converted once (search and stored blob)

    @property
    def person_id(self) -> str | None:
        return self.match.person_id if self.match is not None else None

    def record(self) -> ViolationRecord:
        ev, m = self.event, self.match
        return ViolationRecord(
            event_id=str(ev.event_id),
            violation_type=ev.violation_type.value,
            time=ev.time,
            person_id=self.person_id,
            point_id=ev.point_id,
            device_id=ev.device_id,
            site_id=ev.site_id,
            schema_version=ev.schema_version,
            confidence=ev.confidence,
            face_found=ev.face.found,
            match_score=m.score if m else None,
            media_expected=len(ev.media),
            body=ev.model_dump(mode="json", exclude={"face": {"embedding"}}),
            runner_up=m.runner_up if m else None,
            runner_up_score=m.runner_up_score if m else None,
        )

    def embedding(self) -> np.ndarray:
        """The face embedding as float32 (the converted copy when there is one)."""
        if self.vector is not None:
            return self.vector
        return np.asarray(self.event.face.embedding, dtype=np.float32)
