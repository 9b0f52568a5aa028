"""The edge daemon: wires the stages (built by :mod:`edge.build`) to its two threads (capture, pipeline) and
owns the detection queue, the signals, the systemd watchdog, the health file and the shutdown. The per-frame
work is :class:`edge.pipeline.FramePipeline`'s, the evidence :class:`edge.evidence.EvidenceCollector`'s; the
data path and every thread are drawn in docs/ARCHITECTURE.md. A failing stage is logged and survived (a
missing model is retried every ``MODEL_RETRY_S`` in live mode while the ring buffer keeps recording).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from anqi_contract.event import ViolationEvent
from anqi_contract.logs import log
from anqi_contract.notify import SystemdNotifier
from edge.build import MODEL_RETRY_S, Mode, StartupError, build_stages, pass_counter
from edge.config import EdgeConfig
from edge.evidence import EvidenceCollector, write_event_json
from edge.health import Health, HealthFile
from edge.passes import KeptPasses
from edge.pipeline import Decision, FramePipeline, PipelineStats
from edge.track import Track

__all__ = ["MODEL_RETRY_S", "EdgeDaemon", "Mode", "StartupError"]

logger = logging.getLogger("edge.daemon")

HEALTH_EVERY_S = 5.0
PIPELINE_STALL_S = 60.0  #: no pipeline loop for this long: stop feeding the systemd watchdog (it restarts us)


class EdgeDaemon:
    """One appliance run. ``mode``: ``live`` (until stopped), ``until_eof`` (a file: stop at its end,
    wait for the relay), ``replay`` (a file as fast as possible, events also as JSON under ``out_dir``)."""

    def __init__(
        self,
        cfg: EdgeConfig,
        *,
        mode: Mode = "live",
        source_uri: str | None = None,
        out_dir: Path | None = None,
        relay: bool = True,
        relay_wait_s: float = 20.0,
        install_signals: bool = True,
    ):
        self.cfg = cfg
        self.mode = mode
        if source_uri is not None:
            src = cfg.source.model_copy(update={"uri": source_uri})
            self.cfg = cfg = cfg.model_copy(update={"source": src})
        self.out_dir = out_dir
        self.data_dir = Path(out_dir) if (mode == "replay" and out_dir is not None) else cfg.data_dir
        self.use_relay = relay
        self.relay_wait_s = relay_wait_s
        self.install_signals = install_signals
        self.stats = PipelineStats()
        self.health = Health(self.data_dir / "health.json", cfg.device.device_id)
        self.notifier = SystemdNotifier()
        self._stop = threading.Event()
        #: why a file run was stopped before its end (frames that do not fit the calibration); None: it was not
        self.fatal: str | None = None
        self._threads: list[threading.Thread] = []
        self._pipeline_beat = time.monotonic()
        self._stall_reported = False
        self.events: list[ViolationEvent] = []
        self.event_media: dict[str, list[Path]] = {}
        # riders through the zone per interval (the heartbeat's pass counters); a live run goes on counting
        # the interval a restart interrupted, restored before the relay's first heartbeat
        self.passes = KeptPasses(pass_counter(cfg.device, cfg.relay), self.data_dir, keep=mode == "live")
        self.passes.restore(datetime.now(timezone.utc))
        self._build()

    # ------------------------------------------------------------------ construction (edge/build.py)
    def _build(self) -> None:
        cfg = self.cfg
        st = build_stages(
            cfg, self.mode, self.data_dir, self.use_relay, self.health, self.passes.heartbeat_info
        )
        self.source, self.buffer, self.recorder, self.sampler = st.source, st.buffer, st.recorder, st.sampler
        self.to_detect = st.to_detect
        #: the detection queue of a paced source (it drops frames when detection lags); None for files read unpaced
        self.live_queue = st.to_detect if st.to_detect.drop_oldest else None
        self.tracker, self.rules, self.detector = st.tracker, st.rules, st.detector
        self.persuasion = st.persuasion
        self.health_file = HealthFile(self.health, st.reserve, st.beacon, self.data_dir)
        self.outbox, self.relay, self.broker = st.outbox, st.relay, st.broker
        self.evidence = EvidenceCollector(
            rules=cfg.rules,
            post_s=cfg.buffer.post_s,
            work_dir=st.work_dir,
            clip_dir=st.clip_dir,
            recorder=self.recorder,
            assembler=st.assembler,
            outbox=self.outbox,
            health=self.health,
            faces=st.faces.capture,
            face_error=st.faces.error,
            records=self.stats.violations,
            on_stored=self._event_stored,
            on_track_done=self._forget_track,
            on_recovered=self._write_event_json,
        )
        self.pipeline = FramePipeline(
            cfg.detect,
            cfg.rules,
            cfg.track.motion_window_s,
            st.zone,
            self.tracker,
            self.rules,
            st.faces.capture,
            self.health,
            self.stats,
            pending_tracks=self.evidence.pending_tracks,
            on_violation=self._on_violation,
            passes=self.passes.counter,
        )
        self.recovered = self.evidence.recover()

    def _write_event_json(self, event: ViolationEvent) -> None:
        """Replay: the event as JSON under ``out_dir/events/``."""
        if self.out_dir is not None and self.mode == "replay":
            write_event_json(self.out_dir / "events", event)

    def _event_stored(self, event: ViolationEvent, media: list[Path]) -> None:
        self.events.append(event)
        self.event_media[str(event.event_id)] = media
        self._write_event_json(event)

    # ------------------------------------------------------------------ threads
    def _capture_loop(self) -> None:
        try:
            for frame in self.source.frames():
                self.stats.frames += 1
                self.recorder.push(frame)
                if self.sampler.want(frame):
                    self.to_detect.put(frame, self._stop)  # a camera's never waits; an unpaced file's does
                if self._stop.is_set():
                    break
        except Exception as e:  # the source never raises by contract; if it does, say so
            log(logger, "capture_crashed", logging.ERROR, error=f"{type(e).__name__}: {e}")
            self.health.set("camera", "down", f"capture crashed: {e}"[:300])
        finally:
            self.to_detect.close()

    def _pipeline_loop(self) -> None:
        while True:
            self._pipeline_beat = time.monotonic()
            frame = self.to_detect.get(timeout=0.5)
            if frame is None and self.to_detect.drained:
                break
            if frame is None:
                self._finalize_ready(force_wall=True)
                continue
            try:
                self._process(frame)
            except Exception as e:  # a bug in one frame must not stop the appliance
                self.stats.detect_errors += 1
                log(
                    logger, "frame_failed", logging.ERROR, frame=frame.index, error=f"{type(e).__name__}: {e}"
                )
        # end of stream (or stop): every track ends, every clip is finished with what exists
        for t in self.tracker.close_all():
            self._track_closed(t)
        try:
            self.recorder.flush()
        except Exception as e:
            log(logger, "clip_flush_failed", logging.ERROR, error=str(e)[:300])
        self._finalize_ready(force=True)

    # ------------------------------------------------------------------ per frame
    def _process(self, frame: Any) -> None:
        detector = self.detector.current()  # live: a model that failed to load is retried now and then
        if detector is None:
            return
        result = self.pipeline.process(frame, detector)
        if result.refused is not None:  # the frame does not fit the survey (logged once per size)
            if self.mode != "live":  # a file run stops: its results would mean nothing (the CLI exits 5)
                self.fatal = result.refused
                self.stop()
            return
        if not result.detected:
            return
        for t in result.closed:
            self._track_closed(t)
        self._finalize_ready()

    def _on_violation(self, d: Decision) -> None:
        """A decision goes to the speaker and lights at once, then to the evidence."""
        v = d.violation
        if self.persuasion is not None:
            try:
                # latency counted from the capture of the frame that showed the violation
                self.persuasion.on_violation(v.type.value, v.track_id, v.mono)
            except Exception as e:
                log(logger, "persuasion_failed", logging.ERROR, error=str(e)[:300])
        self.evidence.decide(v, d.image, d.track, d.first_seen, d.band_edges, d.decided_mono)

    def _track_closed(self, t: Track) -> None:
        if t.track_id is None:
            return
        if not self.evidence.track_closed(t.track_id):  # else forgotten once its events are stored
            self._forget_track(t.track_id)

    def _forget_track(self, track_id: int) -> None:
        """Drop every per-track state (a daemon runs for months: nothing may grow with the track count)."""
        self.pipeline.forget(track_id)

    # ------------------------------------------------------------------ evidence -> outbox
    def _finalize_ready(self, force: bool = False, force_wall: bool = False) -> None:
        self.evidence.finalize_ready(self.pipeline.last_t_s, force=force, force_wall=force_wall)

    # ------------------------------------------------------------------ run / stop
    def stop(self) -> None:
        """Ask the daemon to shut down (signal handlers call this)."""
        self._stop.set()
        self.source.stop()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log(logger, "signal_received", signal=signal.Signals(signum).name)
        self.stop()

    def run(self) -> PipelineStats:
        """Run until the file ends (until_eof, replay) or :meth:`stop` / SIGTERM / SIGINT (live)."""
        previous: dict[signal.Signals, Any] = {}
        if self.install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            return self._run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _run(self) -> PipelineStats:
        self.recorder.start()
        self.stats.started_mono = time.monotonic()
        cap = threading.Thread(target=self._capture_loop, name="anqi-capture", daemon=True)
        pipe = threading.Thread(target=self._pipeline_loop, name="anqi-pipeline", daemon=True)
        self._threads = [cap, pipe]
        cap.start()
        pipe.start()
        self.health.set("daemon", "up", f"mode {self.mode}")
        self._write_health()
        self.notifier.ready(f"watching {self.source.display_uri}")
        log(
            logger,
            "daemon_started",
            mode=self.mode,
            source=self.source.display_uri,
            data_dir=str(self.data_dir),
        )
        next_health = time.monotonic() + HEALTH_EVERY_S
        watchdog_every = self.notifier.watchdog_interval_s or HEALTH_EVERY_S
        next_watchdog = time.monotonic()
        while pipe.is_alive():
            pipe.join(timeout=0.2)
            now = time.monotonic()
            if now >= next_health:
                self._write_health()
                next_health = now + HEALTH_EVERY_S
            if now >= next_watchdog:
                next_watchdog = now + watchdog_every
                if now - self._pipeline_beat < PIPELINE_STALL_S:
                    self.notifier.watchdog()
                    self._stall_reported = False
                elif not self._stall_reported:  # a stuck detector: let systemd restart the service
                    self._stall_reported = True
                    self.health.set(
                        "daemon", "degraded", f"pipeline stalled for {now - self._pipeline_beat:.0f} s"
                    )
                    log(
                        logger,
                        "pipeline_stalled",
                        logging.ERROR,
                        stalled_s=round(now - self._pipeline_beat, 1),
                    )
        cap.join(timeout=5)
        self.stats.ended_mono = time.monotonic()
        if self.mode == "live" and not self._stop.is_set():
            log(logger, "source_finished_waiting_for_stop")
            while not self._stop.wait(HEALTH_EVERY_S):
                self._write_health()
                self.notifier.watchdog()
        self._shutdown()
        return self.stats

    def _shutdown(self) -> None:
        self.notifier.stopping()
        self.stats.detect_dropped = self.to_detect.dropped
        try:
            self.recorder.close()
        except Exception as e:
            log(logger, "recorder_close_failed", logging.ERROR, error=str(e)[:300])
        if self.evidence.pending:  # clips flushed by close(): commit what is left
            self._finalize_ready(force=True)
        self.evidence.log_leftovers()
        if self.persuasion is not None:
            self.stats.prompt_latencies_s = list(self.persuasion.latencies_s)
            self.stats.prompt_waited = [p.waited_for_speaker for p in self.persuasion.played]
            try:
                self.persuasion.close()
            except Exception as e:
                log(logger, "persuasion_close_failed", logging.ERROR, error=str(e)[:300])
        self.passes.save()
        if self.relay is not None:
            if self.mode != "live":
                ok = self.relay.wait_drained(self.relay_wait_s, until="published")
                if not ok:
                    log(logger, "relay_not_drained", logging.WARNING, wait_s=self.relay_wait_s)
            self.stats.relay_published = self.relay.published_events
            self.relay.stop()
        self.rules.close()
        self.outbox.close()
        if self.broker is not None:
            self.broker.close()
        self.health.set("daemon", "off", "stopped")
        self._write_health()
        log(
            logger,
            "daemon_stopped",
            **{k: v for k, v in self.stats.summary().items() if not isinstance(v, (list, dict))},
        )

    def _write_health(self) -> None:
        self.stats.detect_dropped = self.to_detect.dropped
        self.health_file.write(**self.stats.health_info(pending_events=len(self.evidence.pending)))
