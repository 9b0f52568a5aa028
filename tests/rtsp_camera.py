"""A real RTSP camera on loopback for the tests: GStreamer's RTSP server (Debian's
``gir1.2-gst-rtsp-server-1.0``) serving a video file's H.264 over RTSP, paced in real time, in a
loop, the way an IP camera serves its main stream.

It runs under the system Python (``/usr/bin/python3``, where Debian's ``python3-gi`` lives), not the
project's venv: ``python3 tests/rtsp_camera.py --port N --file clip.mp4 [--path /stream1]``. It prints
``ready`` once the server listens and runs until SIGTERM/SIGINT. The test side is
:class:`RtspCamera` (start / stop / kill), which a test uses to make the camera "reboot".
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"


def gst_rtsp_available() -> str | None:
    """None when a GStreamer RTSP server can be started here, else why not (for a skip reason)."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} missing"
    probe = (
        "import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "import sys; sys.exit(0 if all(Gst.ElementFactory.find(e) for e in "
        "('qtdemux','h264parse','rtph264pay')) else 3)"
    )
    r = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, check=False)
    if r.returncode:
        return (
            "GStreamer RTSP server not installed (apt-get install gir1.2-gst-rtsp-server-1.0 "
            "gstreamer1.0-rtsp gstreamer1.0-plugins-good gstreamer1.0-plugins-bad python3-gi): "
            + (r.stderr.strip().splitlines() or ["missing elements"])[-1]
        )
    return None


class RtspCamera:
    """The test side: one server process serving ``file`` at ``rtsp://127.0.0.1:port/path``."""

    def __init__(self, port: int, file: Path, path: str = "/stream1") -> None:
        self.port, self.file, self.path = port, file, path
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self, timeout_s: float = 15.0) -> RtspCamera:
        self.proc = subprocess.Popen(
            [
                SYSTEM_PYTHON,
                __file__,
                "--port",
                str(self.port),
                "--file",
                str(self.file),
                "--path",
                self.path,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = self.proc.stdout.readline()
        if line.strip() != "ready" or time.monotonic() > deadline:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {line!r} {err[-500:]}")
        return self

    def stop(self) -> None:
        """Power the camera off (SIGKILL: no RTSP TEARDOWN reaches the client, like a reboot)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def serve(port: int, file: Path, path: str) -> None:  # pragma: no cover - runs under the system Python
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    # The file's own H.264 (no re-encoding), SPS/PPS sent with every keyframe like a camera does.
    factory.set_launch(
        f'( filesrc location="{file}" ! qtdemux ! h264parse config-interval=-1 '
        "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(True)
    factory.set_eos_shutdown(False)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        sys.exit(2)
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--file", type=Path, required=True)
    ap.add_argument("--path", default="/stream1")
    a = ap.parse_args()
    if not a.file.is_file():
        sys.exit(f"{a.file}: no such file")
    serve(a.port, a.file.resolve(), a.path)
