"""The speaker (sound column): a prioritised, cooled-down queue of prompts played by one worker.

``request()`` never blocks; the worker thread (owned here, started by :meth:`Speaker.start`) plays
one prompt at a time. One rider gets one prompt (``cooldown_track_s``). A rider whose violation
comes while the same message is playing, early enough to hear its instruction, hears it: the request
joins that prompt at once (``prompt_coalesced ... reason=hearing_it``) instead of queueing a repeat.
Early enough: within the first half of its first clause with barge-in (the rider still hears the
clause's key words, "安全头盔"; later, the prompt starts again for it), within the first half of the
prompt without.

Another rider's request while a prompt plays (``speaker.barge_in``, the default): the playing
prompt is cut and the new one starts right after it (``prompt_cut`` log line). A prompt of the same
message is cut at once: it starts again from the beginning, which the first rider, a moment ahead,
hears as well. A prompt of another message is cut as soon as it has said its first clause
(:attr:`Prompt.cut_at_s`, plus :data:`CUT_MARGIN_S` for the output buffer), so that its rider has
heard the instruction. Riders close behind each other each hear their instruction within a fraction
of a second instead of waiting for the end of someone else's prompt. Without
barge-in a crowd gets one prompt at a time with ``cooldown_global_s`` of quiet between them. Either
way requests that pile up meanwhile are coalesced into the most urgent one (their riders count as
prompted) and requests older than ``max_delay_s`` are dropped, each with a log line.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from anqi_contract.logs import log
from edge.actuators.audio import AUDIO_OUTPUTS, AudioOutput, AudioUnavailable
from edge.actuators.prompts import Prompt, PromptLibrary
from edge.actuators.timeswitch import DailyWindow, window_value
from edge.config.actuators import SpeakerConfig
from edge.health import Health

logger = logging.getLogger("edge.actuators.speaker")

HEALTH_NAME = "speaker"
MAX_PENDING = 16
#: a prompt is cut this long after its first clause's end in the samples: the output buffer (speaker.latency
#: "high": about 0.1 s) still holds that much, and the pause after the clause is at least 0.1 s
CUT_MARGIN_S = 0.15


@dataclass(frozen=True)
class _NowPlaying:
    message: str
    start_mono: float  # when the samples went to the output
    duration_s: float
    track_id: int
    cut_at_s: float
    seq: int


@dataclass(order=True)
class PromptRequest:
    priority: int
    decided_mono: float
    seq: int
    violation_type: str = field(compare=False)
    track_id: int = field(compare=False)
    requested_mono: float = field(compare=False, default=0.0)


@dataclass(frozen=True)
class PlayedPrompt:
    """One prompt that was played, for tests, the self-test and the benchmark."""

    message: str
    violation_type: str
    track_id: int
    languages: tuple[str, ...]
    decided_mono: float
    start_mono: float
    end_mono: float
    volume: float
    device: str
    coalesced_tracks: tuple[int, ...]
    requested_mono: float = 0.0
    #: requested while another prompt played or in the silence after it (speaker.cooldown_global_s):
    #: its latency is mostly that wait, not the pipeline's
    waited_for_speaker: bool = False
    #: cut short after its first clause by another rider's prompt (speaker.barge_in)
    cut: bool = False

    @property
    def latency_s(self) -> float:
        """Caller's ``decided_mono`` -> prompt start."""
        return self.start_mono - self.decided_mono

    @property
    def speaker_latency_s(self) -> float:
        """``on_violation`` call -> prompt start: the speaker's own share of :attr:`latency_s`."""
        return self.start_mono - self.requested_mono


class Speaker:
    """One output device playing the prompt packs; see the module doc for the queue's rules."""

    def __init__(
        self,
        sc: SpeakerConfig,
        prompts: Callable[[int], PromptLibrary],
        output: AudioOutput | None,
        health: Health,
        local_now: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ):
        """``sc`` is the ``speaker`` section; ``prompts(rate)`` loads the prompt packs at the output's rate
        (the packs searched and the messages required depend on the site: see ``PromptLibrary.load``)."""
        self.cfg = sc
        self.prompts = prompts
        self.output = output
        self.health = health
        self.local_now = local_now
        self.monotonic = monotonic
        self.priority: dict[str, int] = {v: i for i, v in enumerate(sc.priority)}
        self.volume_windows = [(DailyWindow.from_config(w), w.volume) for w in sc.volume_windows]
        self.library: PromptLibrary | None = None
        self.latencies_s: list[float] = []
        self.played: list[PlayedPrompt] = []
        #: what became of the requests, per rider: played, coalesced, dropped.<reason>
        self.outcomes: Counter[str] = Counter()
        self._pending: list[PromptRequest] = []
        self._prompted: dict[int, float] = {}
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._last_end = float("-inf")
        self._last_open_try = float("-inf")
        self._ready = False
        self._busy = False
        self._now_playing: _NowPlaying | None = None
        self._play_seq = itertools.count()
        self._cut_timer: threading.Timer | None = None
        self._cut_for: int | None = None  # the track whose request cut the prompt playing
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(
        cls,
        sc: SpeakerConfig,
        prompts: Callable[[int], PromptLibrary],
        health: Health,
        local_now: Callable[[], datetime],
    ) -> Speaker:
        output_cls = AUDIO_OUTPUTS.get(sc.backend) if sc.enabled else None
        return cls(sc, prompts, output_cls(sc) if output_cls else None, health, local_now)

    # --- life cycle -------------------------------------------------------------------------
    def open(self) -> bool:
        """Open the output and load the prompts; on failure warn, mark health down, return False."""
        if self.output is None:
            self.health.set(
                HEALTH_NAME, "off", "speaker disabled" if not self.cfg.enabled else "backend none"
            )
            return False
        self._last_open_try = self.monotonic()
        try:
            self.output.open()
        except AudioUnavailable as e:
            self._ready = False
            log(logger, "speaker_unavailable", logging.WARNING, error=str(e))
            self.health.set(HEALTH_NAME, "down", str(e))
            return False
        except Exception as e:  # PortAudio can fail in ways of its own; never into the daemon
            self._ready = False
            log(logger, "speaker_unavailable", logging.WARNING, error=f"{type(e).__name__}: {e}")
            self.health.set(HEALTH_NAME, "down", f"{type(e).__name__}: {e}")
            return False
        if self.library is None or any(p.rate != self.output.rate for p in self.library.prompts.values()):
            self.library = self.prompts(self.output.rate)
        lib = self.library
        for p in lib.problems:
            log(logger, "prompt_missing", logging.WARNING, problem=p)
        info: dict[str, Any] = {
            "device": self.output.device_name,
            "rate": self.output.rate,
            "channels": self.output.channels,
            "messages": ",".join(sorted(lib.prompts)),
        }
        if not lib.prompts:
            self.health.set(HEALTH_NAME, "down", "no prompt could be loaded", **info)
            return False
        self._ready = True
        self.health.set(
            HEALTH_NAME, "degraded" if lib.problems else "up", "; ".join(lib.problems[:3]), **info
        )
        log(logger, "speaker_ready", logging.INFO, **info, languages=",".join(self.cfg.languages))
        return True

    def start(self) -> None:
        self.open()
        if self.output is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="speaker", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            dropped, self._pending = self._pending, []
            if self._cut_timer is not None:
                self._cut_timer.cancel()
            self._cond.notify_all()
        if dropped:
            log(logger, "prompt_dropped", reason="closing", tracks=",".join(str(r.track_id) for r in dropped))
            self._count("dropped.closing", len(dropped))
        if self.output is not None:
            self.output.interrupt()  # a prompt in progress stops now, not after its last syllable
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.output is not None:
            self.output.close()

    # --- requests -------------------------------------------------------------------------
    def request(self, violation_type: str, track_id: int, decided_mono: float) -> bool:
        """Queue a prompt for a rider; False (with a log line) when it is dropped. Never blocks on audio."""
        if self.output is None:
            return False
        with self._cond:
            if self._closed:
                return False
            last = self._prompted.get(track_id)
            if last is not None and decided_mono - last < self.cfg.cooldown_track_s:
                log(
                    logger,
                    "prompt_dropped",
                    reason="track_cooldown",
                    track_id=track_id,
                    violation=violation_type,
                    since_s=round(decided_mono - last, 2),
                )
                self._count("dropped.track_cooldown", 1)
                return False
            if any(r.track_id == track_id for r in self._pending):
                log(
                    logger,
                    "prompt_dropped",
                    reason="track_already_queued",
                    track_id=track_id,
                    violation=violation_type,
                )
                self._count("dropped.track_already_queued", 1)
                return False
            if self._hears_current(violation_type, decided_mono):
                assert self._now_playing is not None
                self._prompted[track_id] = decided_mono
                log(
                    logger,
                    "prompt_coalesced",
                    reason="hearing_it",
                    into_track=self._now_playing.track_id,
                    violation=violation_type,
                    tracks=track_id,
                )
                self._count("coalesced", 1)
                return True
            req = PromptRequest(
                self.priority.get(violation_type, len(self.priority)),
                decided_mono,
                next(self._seq),
                violation_type,
                track_id,
                self.monotonic(),
            )
            heapq.heappush(self._pending, req)
            if len(self._pending) > MAX_PENDING:
                worst = max(self._pending)
                self._pending.remove(worst)
                heapq.heapify(self._pending)
                log(
                    logger,
                    "prompt_dropped",
                    reason="queue_full",
                    track_id=worst.track_id,
                    violation=worst.violation_type,
                )
                self._count("dropped.queue_full", 1)
            self._cond.notify_all()
            if self.cfg.barge_in:
                self._barge_in_locked(violation_type, track_id)
        return True

    def _barge_in_locked(self, violation_type: str, track_id: int) -> None:
        """A request waits while another rider's prompt plays: cut that prompt now when it plays the same message
        (it starts again) or is past its first clause, else by a timer at its first clause's end (call with the lock
        held)."""
        now_playing = self._now_playing
        if now_playing is None or self._cut_for is not None or self.output is None:
            return
        prompt = self.library.for_violation(violation_type) if self.library is not None else None
        if prompt is not None and prompt.message == now_playing.message:
            due = 0.0
        else:
            due = now_playing.start_mono + now_playing.cut_at_s + CUT_MARGIN_S - self.monotonic()
        if due <= 0:
            self._cut_locked(track_id)
        elif self._cut_timer is None:
            self._cut_timer = threading.Timer(due, self._cut_when_due, args=(now_playing.seq, track_id))
            self._cut_timer.daemon = True
            self._cut_timer.start()

    def _cut_when_due(self, seq: int, track_id: int) -> None:
        with self._cond:
            self._cut_timer = None
            if (
                not self._closed
                and self._pending
                and self._now_playing is not None
                and self._now_playing.seq == seq
            ):
                self._cut_locked(track_id)

    def _cut_locked(self, track_id: int) -> None:
        assert self.output is not None
        self._cut_for = track_id
        self.output.cut()

    def _count(self, outcome: str, n: int) -> None:
        with self._cond:  # re-entrant: also called with the lock held
            self.outcomes[outcome] += n

    def _hears_current(self, violation_type: str, decided_mono: float) -> bool:
        """The same message is playing and the rider still hears its instruction (see the module doc; call with the
        lock held). Later, with barge-in, the rider's own request starts it again instead."""
        if self._now_playing is None or self.library is None:
            return False
        prompt = self.library.for_violation(violation_type)
        np_ = self._now_playing
        heard_until = np_.cut_at_s / 2 if self.cfg.barge_in else np_.duration_s / 2
        return (
            prompt is not None
            and prompt.message == np_.message
            and decided_mono - np_.start_mono <= heard_until
        )

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing playing."""
        with self._cond:
            return not self._pending and not self._busy

    def volume_now(self) -> float:
        local = self.local_now().replace(tzinfo=None)
        return window_value(self.volume_windows, local, self.cfg.volume)

    # --- worker ---------------------------------------------------------------------------
    def _take_batch(self) -> list[PromptRequest] | None:
        """Wait for requests and for the global cooldown; return every pending request, or None when closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._pending:
                    wait = self._last_end + self._gap_s() - self.monotonic()
                    if wait <= 0:
                        batch, self._pending = sorted(self._pending), []
                        self._busy = True
                        return batch
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._serve(batch)
            except Exception as e:  # the worker must survive anything a device does
                log(logger, "speaker_error", logging.ERROR, error=f"{type(e).__name__}: {e}")
                self.health.set(HEALTH_NAME, "degraded", f"{type(e).__name__}: {e}")
            finally:
                with self._cond:
                    self._busy = False
                    self._now_playing = None
                    if self._cut_timer is not None:
                        self._cut_timer.cancel()
                        self._cut_timer = None

    def _serve(self, batch: list[PromptRequest]) -> None:
        now = self.monotonic()
        max_delay = self.cfg.max_delay_s
        fresh = []
        for r in batch:
            if now - r.decided_mono > max_delay:
                log(
                    logger,
                    "prompt_dropped",
                    reason="stale",
                    track_id=r.track_id,
                    violation=r.violation_type,
                    waited_s=round(now - r.decided_mono, 2),
                )
                self._count("dropped.stale", 1)
            else:
                fresh.append(r)
        if not fresh:
            return
        if not self._ready and (now - self._last_open_try < self.cfg.retry_s or not self.open()):
            log(
                logger,
                "prompt_dropped",
                reason="speaker_down",
                tracks=",".join(str(r.track_id) for r in fresh),
            )
            self._count("dropped.speaker_down", len(fresh))
            return
        chosen, others = fresh[0], fresh[1:]
        with self._cond:
            for r in fresh:
                self._prompted[r.track_id] = now
            self._forget_old(now)
        if others:
            log(
                logger,
                "prompt_coalesced",
                into_track=chosen.track_id,
                violation=chosen.violation_type,
                tracks=",".join(str(r.track_id) for r in others),
            )
            self._count("coalesced", len(others))
        assert self.library is not None and self.output is not None
        prompt = self.library.for_violation(chosen.violation_type)
        if prompt is None:
            log(
                logger,
                "prompt_dropped",
                logging.WARNING,
                reason="no_prompt",
                violation=chosen.violation_type,
                track_id=chosen.track_id,
            )
            self._count("dropped.no_prompt", 1 + len(others))
            return
        self._play(prompt, chosen, tuple(r.track_id for r in others))

    def _play(self, prompt: Prompt, req: PromptRequest, coalesced: tuple[int, ...]) -> None:
        assert self.output is not None
        volume = self.volume_now()
        with self._cond:
            self.output.clear_cut()  # before the prompt is visible to request(): no cut meant for it is lost
            self._cut_for = None
            self._now_playing = _NowPlaying(
                prompt.message,
                self.monotonic(),
                prompt.duration_s,
                req.track_id,
                prompt.cut_at_s,
                next(self._play_seq),
            )
            if self._pending and self.cfg.barge_in:  # asked for while this one was being chosen
                first = min(self._pending)
                self._barge_in_locked(first.violation_type, first.track_id)
        try:
            pb = self.output.play(prompt.samples * volume)
        except AudioUnavailable as e:
            self._ready = False
            self._last_end = self.monotonic()
            self._count("dropped.speaker_down", 1 + len(coalesced))
            log(logger, "speaker_unavailable", logging.WARNING, error=str(e))
            self.health.set(HEALTH_NAME, "down", str(e))
            return
        busy_until = self._last_end + self._gap_s()
        self._last_end = pb.end_mono
        with self._cond:
            cut_for = self._cut_for
        played = PlayedPrompt(
            prompt.message,
            req.violation_type,
            req.track_id,
            prompt.languages,
            req.decided_mono,
            pb.start_mono,
            pb.end_mono,
            volume,
            pb.device,
            coalesced,
            req.requested_mono,
            req.requested_mono < busy_until,
            cut_for is not None,
        )
        if cut_for is not None:
            log(
                logger,
                "prompt_cut",
                reason="barge_in",
                track_id=req.track_id,
                for_track=cut_for,
                played_s=round(pb.end_mono - pb.start_mono, 2),
                duration_s=prompt.duration_s,
            )
            self._count("cut", 1)
        self.played.append(played)
        self.latencies_s.append(played.latency_s)
        self._count("played", 1)
        with self._cond:
            counts = {k.replace(".", "_"): v for k, v in self.outcomes.items()}
        self.health.update_info(HEALTH_NAME, last_latency_s=round(played.latency_s, 3), **counts)
        log(
            logger,
            "prompt_played",
            message=prompt.message,
            violation=req.violation_type,
            track_id=req.track_id,
            languages=",".join(prompt.languages),
            latency_s=played.latency_s,
            speaker_latency_s=played.speaker_latency_s,
            duration_s=prompt.duration_s,
            volume=volume,
            device=pb.device,
        )

    def _gap_s(self) -> float:
        """Silence kept after a prompt before the next: none with barge-in (a new rider is not kept waiting)."""
        return 0.0 if self.cfg.barge_in else self.cfg.cooldown_global_s

    def _forget_old(self, now: float) -> None:
        if len(self._prompted) > 256:
            keep = self.cfg.cooldown_track_s
            self._prompted = {t: m for t, m in self._prompted.items() if now - m < keep}
