"""Which event messages the consumer takes: each one decoded, checked against its
topic and the registry, its sealed embedding opened - or rejected (ack ``rejected`` at once, nothing stored)."""

from __future__ import annotations

import json
import logging
import uuid

from anqi_contract import protocol as P
from anqi_contract.event import UnsupportedSchemaVersion, ViolationEvent
from anqi_contract.logs import log
from anqi_contract.sealed import KeyRing, SealError
from central_sync.ingest.acks import Acknowledger
from central_sync.ingest.registry import DeviceRegistry
from central_sync.ingest.stats import ConsumerStats

logger = logging.getLogger("anqi.central.consumer")


class EventAdmission:
    """Decodes event messages; what it refuses is logged and acked ``rejected`` (the edge stops re-sending)."""

    def __init__(
        self,
        registry: DeviceRegistry,
        keyring: KeyRing,
        require_sealed: bool,
        acks: Acknowledger,
        stats: ConsumerStats,
    ):
        self.registry = registry
        self.keyring = keyring  # central's private keys for evidence sealed on the devices
        self.require_sealed = require_sealed  # sealing.require_sealed
        self.acks = acks
        self.stats = stats

    def decode(self, topic: P.Topic, payload: bytes) -> ViolationEvent | None:
        """The event of a message, or ``None`` after rejecting it (ack ``rejected`` at once, nothing is stored)."""
        self.stats.events_received += 1
        try:
            ev = P.decode_event(payload)
        except (P.ProtocolError, UnsupportedSchemaVersion) as e:
            self.reject(topic, payload, str(e))
            return None
        if ev.device_id != topic.device or ev.site_id != topic.site:
            self.reject(
                topic,
                payload,
                f"event of device {ev.device_id}/{ev.site_id} published on {topic.site}/{topic.device}",
            )
            return None
        problem = self.registry.problem(topic, ev.point_id)
        if problem:
            self.reject(topic, payload, problem)
            return None
        return self._open_sealed(topic, ev)

    def _open_sealed(self, topic: P.Topic, ev: ViolationEvent) -> ViolationEvent | None:
        """The event with its sealed embedding opened; ``None`` (not acked: the edge keeps it and re-sends) when
        it cannot be opened or arrives unsealed where sealing is required."""
        f = ev.face
        if f.embedding_sealed:
            try:
                vec = self.keyring.open_embedding(f.embedding_sealed)
            except SealError as e:
                self.stats.count_error()
                log(
                    logger,
                    "embedding_open_failed",
                    logging.ERROR,
                    event_id=str(ev.event_id),
                    device=topic.device,
                    error=str(e)[:300],
                )
                return None
            return ev.model_copy(
                update={"face": f.model_copy(update={"embedding": vec, "embedding_sealed": None})}
            )
        if self.require_sealed and (f.embedding or any(m.sealed_to is None for m in ev.media)):
            self.reject(
                topic, ev.to_json().encode(), "evidence not sealed (central requires sealing.require_sealed)"
            )
            return None
        return ev

    def reject(self, topic: P.Topic, payload: bytes, reason: str) -> None:
        self.stats.rejected += 1
        eid = _event_id_of(payload)
        log(
            logger,
            "event_rejected",
            logging.WARNING,
            device=topic.device,
            site=topic.site,
            event_id=str(eid) if eid else "-",
            reason=reason[:300],
        )
        if eid is not None:
            self.acks.send_ack(topic, P.Ack(event_id=eid, status="rejected", reason=reason[:200]))


def _event_id_of(payload: bytes) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(json.loads(payload)["event_id"]))
    except (ValueError, KeyError, TypeError):
        return None
