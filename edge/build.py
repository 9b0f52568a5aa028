"""Building the stages of one daemon run from the config: each stage from its own section, each failure that
stops the start named by the key and file at fault (:class:`StartupError`); failures the appliance survives
(no face model, no sound card, no broker, a full disk) leave the part off, say so in health and the log, and the
run goes on.

:func:`build_stages` returns :class:`Stages`; :class:`edge.daemon.EdgeDaemon` wires them to its threads.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from anqi_contract.logs import log
from anqi_contract.manifest import ModelFileError
from edge.config import EdgeConfig
from edge.config.detect import DetectConfig
from edge.config.device import DeviceConfig
from edge.config.face import FaceConfig
from edge.config.privacy import PrivacyConfig, SealConfig
from edge.config.relay import RelayConfig
from edge.evidence import EventAssembler, FaceCapture
from edge.health import Health, disk_check
from edge.passes import PassCounter
from edge.pipeline import Detector
from edge.relay import AlarmBeacon, DiskReserve, OutboxError, ram_outbox_dir
from edge.rules import RuleSet, RuleSetError
from edge.track import RiderTracker
from edge.zone import CalibrationError, CaptureZone

if TYPE_CHECKING:
    from anqi_contract.localbroker import LocalBroker
    from edge.actuators import Persuasion
    from edge.buffer import ClipRecorder, PrerollBuffer
    from edge.evidence.adapters import SFaceEmbedding
    from edge.evidence.privacy import FaceBlur
    from edge.relay import MqttRelay, Outbox
    from edge.source import DetectQueue, DetectSampler, FrameSource

logger = logging.getLogger("edge.daemon")

Mode = Literal["live", "until_eof", "replay"]

MODEL_RETRY_S = 30.0


class StartupError(RuntimeError):
    """The daemon cannot start (bad source, unusable calibration, missing model in replay); the message says which key or file."""


class DetectorSlot:
    """The rider detector, loaded at start; in live mode a missing or corrupt model is retried every
    ``MODEL_RETRY_S`` while the ring buffer keeps recording, elsewhere it stops the start."""

    def __init__(self, detect: DetectConfig, face: FaceConfig, health: Health, live: bool):
        self.detect = detect
        self.face = face
        self.health = health
        self.live = live
        self.detector: Detector | None = None
        self.error: str | None = None
        self._retry_at = 0.0

    def load(self, first: bool = False) -> None:
        try:
            from edge.detect import RiderDetector

            self.detector = RiderDetector.from_config(self.detect, self.face)
            self.error = None
            self.health.set("detector", "up", f"{self.detect.rider_model} + {self.detect.head_model}")
            if not first:
                log(logger, "detector_loaded", model=self.detect.rider_model)
        except Exception as e:  # missing / corrupt model file: say which, keep recording, retry
            self.detector = None
            self.error = f"{type(e).__name__}: {e}"
            self._retry_at = time.monotonic() + MODEL_RETRY_S
            self.health.set("detector", "down", self.error[:300])
            log(logger, "detector_unavailable", logging.ERROR, error=self.error[:300], retry_s=MODEL_RETRY_S)
            if not self.live:  # DetectorLoadError names the key and file that failed
                raise StartupError(str(e) if isinstance(e, ModelFileError) else f"detect: {e}") from None

    def current(self) -> Detector | None:
        """The detector; ``None`` while none could be loaded (live: retried when the retry time has come)."""
        if self.detector is None and self.live and time.monotonic() >= self._retry_at:
            self.load()
        return self.detector


@dataclass
class Faces:
    """Face capture for the evidence; ``error`` says why there is none (it goes into the event)."""

    capture: FaceCapture | None = None
    embedder: SFaceEmbedding | None = None
    error: str | None = None


def load_faces(face: FaceConfig, health: Health) -> Faces:
    if not face.enabled:
        health.set("faces", "off", "face.enabled is false")
        return Faces()
    try:
        from edge.detect.faces import FaceDetector, FaceEmbedder
        from edge.evidence.adapters import SFaceEmbedding

        capture = FaceCapture(FaceDetector.from_config(face), face.min_face_px, face.score_threshold)
    except Exception as e:  # events still go out, saying why there is no face
        health.set("faces", "down", str(e)[:300])
        log(logger, "face_detector_unavailable", logging.ERROR, error=str(e)[:300])
        return Faces(error=f"face detector unavailable ({type(e).__name__})")
    try:
        embedder = SFaceEmbedding(FaceEmbedder.from_config(face), face.embedder_model)
    except Exception as e:
        log(logger, "face_embedder_unavailable", logging.ERROR, error=str(e)[:300])
        health.set("faces", "degraded", f"no embedding: {e}"[:300])
        return Faces(capture)
    health.set("faces", "up", f"{face.detector_model} + {face.embedder_model}")
    return Faces(capture, embedder)


def load_blur(privacy: PrivacyConfig, face: FaceConfig, health: Health) -> FaceBlur | None:
    """The bystander blur (privacy.blur_bystanders): YuNet on the whole frame at full resolution."""
    if not privacy.blur_bystanders:
        return None
    try:
        from anqi_contract.manifest import resolve
        from edge.detect.faces import FaceDetector
        from edge.evidence.privacy import FaceBlur

        _, path = resolve(face.detector_model)
        return FaceBlur(FaceDetector(path, 0.5, face.nms_iou, min_face_px=6, max_input_px=4096, top_k=500))
    except Exception as e:  # shown frames would carry unblurred bystanders: loud, but evidence still kept
        health.alarm("bystander_blur", f"bystanders cannot be blurred: {e}"[:300])
        log(logger, "bystander_blur_unavailable", logging.ERROR, error=str(e)[:300])
        return None


def clip_dir(seal: SealConfig, work_dir: Path, device_id: str) -> Path:
    """Where clips are encoded: with sealing on, a RAM folder (the clear clip never reaches the disk)."""
    if not seal.enabled:
        log(logger, "evidence_not_sealed", logging.WARNING, hint="set privacy.seal.key_id/public_key")
        return work_dir
    ram = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or "/dev/shm"  # nosec B108
    d = Path(seal.clip_scratch_dir or ram) / f"anqi-clips-{device_id}"
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(d)
    except OSError as e:
        raise StartupError(f"privacy.seal.clip_scratch_dir: cannot create {d}: {e.strerror or e}") from None
    # a shared RAM folder: refuse one another user made (or a link), clips must not be readable by others
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise StartupError(
            f"privacy.seal.clip_scratch_dir: {d} is not a private folder of this user (mode 700, not a link)"
        )
    # clear clips a crash left behind (/dev/shm outlives the process): their events never reached the
    # outbox, so nothing refers to them; they must not stay readable in the clear
    left = [p for p in d.iterdir() if p.is_file()]
    for p in left:
        p.unlink(missing_ok=True)
    if left:
        log(logger, "clip_scratch_cleared", logging.WARNING, files=len(left), folder=str(d))
    return d


def start_persuasion(cfg: EdgeConfig, health: Health) -> Persuasion | None:
    try:
        from edge.actuators import Persuasion, PromptPacks

        packs = PromptPacks.for_site(cfg.speaker, cfg.rules, cfg.base_dir)
        p = Persuasion.from_config(
            cfg.speaker, cfg.lights, cfg.time_switch, cfg.device.timezone, packs, health
        )
        p.start()
        return p
    except Exception as e:  # no sound card, bad pin: prompts off, evidence still collected
        health.set("speaker", "down", str(e)[:300])
        log(logger, "persuasion_unavailable", logging.ERROR, error=str(e)[:300])
        return None


def open_outbox(cfg: EdgeConfig, data_dir: Path, replay: bool, health: Health) -> Outbox:
    from edge.relay import Outbox

    if replay:
        return Outbox(data_dir, cfg.relay.outbox, health)
    try:
        return Outbox.for_config(cfg.relay.outbox, cfg.data_dir, health, base_dir=cfg.base_dir)
    except OutboxError as e:
        # a disk too full to open even the outbox: events still go out through a RAM outbox
        # (lost on a power cut before central acknowledges them: the alarm says so)
        ram = ram_outbox_dir(cfg.device.device_id)
        why = f"outbox on disk unusable ({e}); events kept in RAM at {ram} until central acks them"
        health.alarm("outbox_in_ram", why[:300])
        log(logger, "outbox_in_ram", logging.ERROR, error=str(e)[:300], path=str(ram))
        small = cfg.relay.outbox.model_copy(update={"max_disk_mb": 64.0})
        return Outbox(ram, small, health)


def start_relay(
    cfg: EdgeConfig,
    outbox: Outbox,
    data_dir: Path,
    health: Health,
    heartbeat_info: Callable[[], dict[str, Any]] | None = None,
) -> tuple[MqttRelay | None, LocalBroker | None]:
    """The relay (and the development mosquitto when ``relay.mqtt.host`` is not set); a broker that is down or
    a bad TLS setting leave it off: events stay in the outbox."""
    from edge.relay import MqttRelay, connect_or_start_local

    broker = None
    # the development mosquitto must not inherit systemd's NOTIFY_SOCKET: it would tell systemd
    # READY=1 on our behalf before the daemon is ready
    notify_socket = os.environ.pop("NOTIFY_SOCKET", None) if cfg.relay.mqtt.host is None else None
    try:
        try:
            relay_cfg, broker = connect_or_start_local(cfg.relay, data_dir / "dev-broker")
        finally:
            if notify_socket is not None:
                os.environ["NOTIFY_SOCKET"] = notify_socket
        relay = MqttRelay(relay_cfg, cfg.device, outbox, health, heartbeat_info, base_dir=cfg.base_dir)
        return relay.start(), broker
    except Exception as e:  # broker down / bad TLS: events stay in the outbox
        if broker is not None:
            broker.close()
        health.set("relay", "down", str(e)[:300])
        log(logger, "relay_unavailable", logging.ERROR, error=str(e)[:300])
        return None, None


@dataclass
class Stages:
    """Everything one run needs, built and (where they run on their own) started, in the order of the data path."""

    zone: CaptureZone
    source: FrameSource
    work_dir: Path
    buffer: PrerollBuffer
    recorder: ClipRecorder
    sampler: DetectSampler
    to_detect: DetectQueue
    tracker: RiderTracker
    rules: RuleSet
    detector: DetectorSlot
    faces: Faces
    assembler: EventAssembler
    clip_dir: Path
    persuasion: Persuasion | None
    reserve: DiskReserve
    beacon: AlarmBeacon
    outbox: Outbox
    relay: MqttRelay | None
    broker: LocalBroker | None


def pass_counter(device: DeviceConfig, relay: RelayConfig) -> PassCounter:
    """Riders through the zone per ``relay.pass_interval_s`` (the heartbeat's pass counters), an hour kept."""
    return PassCounter(
        device.point_id, relay.pass_interval_s, keep=max(2, math.ceil(3600 / relay.pass_interval_s))
    )


def build_stages(
    cfg: EdgeConfig,
    mode: Mode,
    data_dir: Path,
    use_relay: bool,
    health: Health,
    heartbeat_info: Callable[[], dict[str, Any]] | None = None,
) -> Stages:
    """The stages of one run, in the daemon's order (``heartbeat_info``: what the relay's heartbeat adds).
    Raises :class:`StartupError` naming the key or file."""
    from edge.buffer import ClipRecorder, PrerollBuffer
    from edge.source import DetectQueue, DetectSampler, FrameSource

    try:
        zone = CaptureZone.from_config(cfg.zone)
    except ValueError as e:
        key = e.key if isinstance(e, CalibrationError) else "zone.calibration"
        raise StartupError(f"{key}: {e}") from None
    try:
        source = FrameSource(cfg.source, base_dir=cfg.base_dir, health=health)
    except ValueError as e:
        raise StartupError(str(e)) from None
    if mode != "live" and source.kind != "file":
        raise StartupError(
            f"source.uri: {mode.replace('_', ' ')} needs a video file, got a {source.kind} source"
        )
    work_dir = data_dir / "evidence-work"
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StartupError(f"device.data_dir: cannot create {work_dir}: {e.strerror or e}") from None
    buffer = PrerollBuffer(cfg.buffer, health=health)
    recorder = ClipRecorder(buffer, cfg.buffer, work_dir, health=health)
    # cameras and paced files (source.realtime): never slow capture down (drop the oldest sampled
    # frame); unpaced files: every sampled frame is detected and capture waits for detection
    paced = mode == "live" or cfg.source.realtime
    tracker = RiderTracker(cfg.track, zone)
    try:  # a GPIO pin or serial port of the signal input that cannot be opened: named by its key
        rules = RuleSet.from_config(cfg.rules, cfg.track.motion_window_s, zone_calibrated=cfg.zone.calibrated)
    except RuleSetError as e:
        raise StartupError(str(e)) from None
    # a start stopped below (the model, the clip folder) releases the pins, ports and files opened above it,
    # so a caller in the same process (a test, a check) can open them again
    undo = ExitStack()
    undo.callback(rules.close)
    with undo:
        detector = DetectorSlot(cfg.detect, cfg.face, health, live=mode == "live")
        detector.load(first=True)
        faces = load_faces(cfg.face, health)
        assembler = EventAssembler(
            cfg.device,
            work_dir,
            faces.embedder,
            cfg.face.save_context_frame,
            seal=cfg.privacy.seal,
            blur=load_blur(cfg.privacy, cfg.face, health),
        )
        clips = clip_dir(cfg.privacy.seal, work_dir, cfg.device.device_id)
        persuasion = start_persuasion(cfg, health)
        if persuasion is not None:
            undo.callback(persuasion.close)
        reserve = DiskReserve(data_dir, cfg.relay.outbox.reserve_mb if mode != "replay" else 0)
        disk_check(reserve, data_dir, health)  # a full disk: the ballast is freed before the outbox opens
        beacon = AlarmBeacon(data_dir)
        beacon.allocate()
        outbox = open_outbox(cfg, data_dir, mode == "replay", health)
        undo.callback(outbox.close)
        relay, broker = None, None
        if use_relay:
            relay, broker = start_relay(cfg, outbox, data_dir, health, heartbeat_info)
        else:
            health.set("relay", "off", "relay disabled for this run")
        stages = Stages(
            zone=zone,
            source=source,
            work_dir=work_dir,
            buffer=buffer,
            recorder=recorder,
            sampler=DetectSampler(cfg.source.detect_fps),
            to_detect=DetectQueue(cfg.source.detect_queue if paced else 2, drop_oldest=paced),
            tracker=tracker,
            rules=rules,
            detector=detector,
            faces=faces,
            assembler=assembler,
            clip_dir=clips,
            persuasion=persuasion,
            reserve=reserve,
            beacon=beacon,
            outbox=outbox,
            relay=relay,
            broker=broker,
        )
        undo.pop_all()
    return stages
