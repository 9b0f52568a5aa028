"""Persuasion on the spot (standard 6.2 / 7.1): speaker + lights, gated by the time switch."""

from __future__ import annotations

import logging
import time

from anqi_contract.logs import log
from edge.actuators.lights import LightBoard
from edge.actuators.prompts import PromptLibrary, PromptPacks
from edge.actuators.speaker import PlayedPrompt, Speaker
from edge.actuators.timeswitch import Clock, TimeSwitch, utc_now
from edge.config.actuators import LightsConfig, SpeakerConfig, TimeSwitchConfig
from edge.health import Health

logger = logging.getLogger("edge.actuators")

VIOLATION_TYPES = frozenset({"no_helmet", "wrong_way", "red_light", "passenger"})


class Persuasion:
    """What the daemon drives: ``start()``, ``on_violation(...)`` (never blocks, never raises), ``close()``.

    :attr:`latencies_s` holds, per played prompt, the seconds from the rule's decision
    (``decided_mono``, ``time.monotonic()``) to the moment PortAudio started the prompt's first buffer.
    """

    def __init__(self, speaker: Speaker, lights: LightBoard, time_switch: TimeSwitch, health: Health):
        self.speaker = speaker
        self.lights = lights
        self.time_switch = time_switch
        self.health = health

    @classmethod
    def from_config(
        cls,
        speaker: SpeakerConfig,
        lights: LightsConfig,
        time_switch: TimeSwitchConfig,
        timezone: str,
        packs: PromptPacks,
        health: Health,
        clock: Clock = utc_now,
    ) -> Persuasion:
        """From the ``speaker``, ``lights`` and ``time_switch`` sections; ``timezone`` is ``device.timezone``,
        ``packs`` where the prompts are (:meth:`PromptPacks.for_site`)."""
        ts = TimeSwitch(time_switch, timezone, clock)
        return cls(
            Speaker.from_config(
                speaker, lambda rate: PromptLibrary.load(speaker, packs, rate), health, ts.local_now
            ),
            LightBoard.from_config(lights, health),
            ts,
            health,
        )

    @property
    def latencies_s(self) -> list[float]:
        return self.speaker.latencies_s

    @property
    def played(self) -> list[PlayedPrompt]:
        return self.speaker.played

    def start(self) -> None:
        """Open the outputs (warnings and health 'down' on failure, never an exception) and start the workers."""
        for part in (self.speaker, self.lights):
            try:
                part.start()
            except Exception as e:
                log(
                    logger,
                    "actuator_start_failed",
                    logging.ERROR,
                    part=type(part).__name__,
                    error=f"{type(e).__name__}: {e}",
                )
        self.health.set("time_switch", "up", "", active=self.time_switch.active)

    def on_violation(self, violation_type: str, track_id: int, decided_mono: float | None = None) -> None:
        """Queue the prompt and trigger the lights for one violation; returns at once."""
        try:
            if decided_mono is None:
                decided_mono = time.monotonic()
            if violation_type not in VIOLATION_TYPES:
                log(
                    logger,
                    "persuasion_unknown_violation",
                    logging.WARNING,
                    violation=violation_type,
                    track_id=track_id,
                )
            active = self.time_switch.active
            self.health.update_info("time_switch", active=active)
            if not active:
                log(
                    logger,
                    "persuasion_quiet",
                    reason="outside_time_window",
                    violation=violation_type,
                    track_id=track_id,
                )
                return
            self.speaker.request(violation_type, track_id, decided_mono)
            self.lights.trigger(violation_type)
        except Exception as e:  # never into the daemon
            log(
                logger,
                "persuasion_error",
                logging.ERROR,
                error=f"{type(e).__name__}: {e}",
                violation=violation_type,
                track_id=track_id,
            )

    def close(self) -> None:
        for part in (self.speaker, self.lights):
            try:
                part.close()
            except Exception as e:
                log(
                    logger,
                    "actuator_close_failed",
                    logging.WARNING,
                    part=type(part).__name__,
                    error=f"{type(e).__name__}: {e}",
                )
