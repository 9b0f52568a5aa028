"""Fixtures shared by the whole suite.

``broker``: a real mosquitto (:class:`anqi_contract.localbroker.LocalBroker`) on a free port of
127.0.0.1, anonymous, with persistence, stopped after the test. ``broker_factory(...)`` starts
more (or differently configured: ``extra_conf`` for TLS / ACL lines, ``persistence``), all closed
at teardown. Never the system mosquitto on 1883.

``camera_stream(port)`` starts FFmpeg serving ../shared/video/bikelane-cyclists.mp4 as MPEG-TS over
TCP in real time, one client, like a network camera; ``.stop()`` makes the camera vanish (all are
stopped at teardown).

``make_event(tmp, i, media_sizes)`` builds a valid event with real random media files;
``relay_config(tmp, port, **mqtt)`` a config whose relay points at a test broker.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from anqi_contract.event import FaceInfo, MediaKind, MediaRef, ViolationEvent, ViolationType
from anqi_contract.localbroker import LocalBroker
from edge.config import EdgeConfig, parse_config

BrokerFactory = Callable[..., LocalBroker]
SHARED_VIDEO = Path(__file__).resolve().parents[1].parent / "shared" / "video" / "bikelane-cyclists.mp4"


class CameraStream:
    """FFmpeg serving the shared clip as MPEG-TS over TCP in real time (one client, like a camera)."""

    def __init__(self, port: int):
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CameraStream:
        ffmpeg = shutil.which("ffmpeg")
        assert ffmpeg, "ffmpeg (Debian package) is needed"
        self.proc = subprocess.Popen(
            [
                ffmpeg,
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
                str(SHARED_VIDEO),
                "-c",
                "copy",
                "-f",
                "mpegts",
                f"tcp://127.0.0.1:{self.port}?listen=1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while (
            time.monotonic() < deadline
        ):  # wait until it listens (connect-probing would take the one client slot)
            if f":{self.port:04X} " in Path("/proc/net/tcp").read_text():
                return self
            time.sleep(0.02)
        raise TimeoutError("ffmpeg did not listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def camera_stream() -> Iterator[Callable[[int], CameraStream]]:
    started: list[CameraStream] = []

    def start(port: int) -> CameraStream:
        cam = CameraStream(port).start()
        started.append(cam)
        return cam

    yield start
    for cam in started:
        cam.stop()


@pytest.fixture
def broker_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerFactory]:
    started: list[LocalBroker] = []

    def make(
        extra_conf: str = "",
        persistence: bool = True,
        port: int | None = None,
        workdir: Path | None = None,
        base_conf: str | None = None,
    ) -> LocalBroker:
        wd = workdir or tmp_path_factory.mktemp("mosquitto")
        b = LocalBroker(
            port=port, extra_conf=extra_conf, workdir=wd, persistence=persistence, base_conf=base_conf
        )
        started.append(b)
        return b.start()

    yield make
    for b in started:
        b.close()


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> LocalBroker:
    return broker_factory()


T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)


def _make_event(
    tmp: Path,
    i: int = 0,
    media_sizes: dict[str, int] | None = None,
    device: str = "anqi-dev-0001",
    site: str = "huzhou-demo",
) -> tuple[ViolationEvent, dict[str, Path]]:
    """An event numbered ``i`` (track_id = i) with random media files of the given sizes."""
    sizes = {"face.jpg": 2000} if media_sizes is None else media_sizes
    eid = uuid.uuid4()
    files: dict[str, Path] = {}
    refs: list[MediaRef] = []
    folder = tmp / f"evidence-{eid}"
    folder.mkdir(parents=True)
    for name, size in sizes.items():
        data = os.urandom(size)
        p = folder / name
        p.write_bytes(data)
        files[name] = p
        kind: MediaKind = (
            "face" if name.startswith("face") else "clip" if name.endswith(".mp4") else "context"
        )
        ctype = "video/mp4" if name.endswith(".mp4") else "image/jpeg"
        refs.append(
            MediaRef(
                name=name, kind=kind, content_type=ctype, size=size, sha256=hashlib.sha256(data).hexdigest()
            )
        )
    ev = ViolationEvent(
        event_id=eid,
        device_id=device,
        site_id=site,
        point_id="point-1",
        violation_type=ViolationType.no_helmet,
        time=T0 + timedelta(seconds=i),
        track_id=i,
        confidence=0.9,
        face=FaceInfo(found="face.jpg" in sizes),
        media=refs,
    )
    return ev, files


def _relay_config(tmp: Path, port: int, **mqtt: Any) -> EdgeConfig:
    """A config whose relay points at 127.0.0.1:``port``; ``mqtt`` overrides relay.mqtt keys, and
    the special keys ``outbox`` / ``relay`` / ``device`` update those sections."""
    outbox = mqtt.pop("outbox", {})
    relay_extra = mqtt.pop("relay", {})
    device = mqtt.pop("device", {})
    data: dict[str, Any] = {
        "device": {"data_dir": str(tmp / "data"), **device},
        "relay": {
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 1,
                "keepalive_s": 5,
                **mqtt,
            },
            "outbox": {"ack_timeout_s": 30, **outbox},
            "heartbeat_s": 1,
            **relay_extra,
        },
    }
    return parse_config(data, "test", tmp)


MakeEvent = Callable[..., tuple[ViolationEvent, dict[str, Path]]]


@pytest.fixture
def make_event() -> MakeEvent:
    return _make_event


@pytest.fixture
def relay_config() -> Callable[..., EdgeConfig]:
    return _relay_config
