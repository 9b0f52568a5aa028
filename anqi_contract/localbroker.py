"""The project's own local mosquitto, started when no broker is configured (development, the edge and
central demos, the tests of both sides; stdlib only, so it lives in the contract both import).
Production always names a broker in ``relay.mqtt.host``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str:
    exe = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None
    )
    if not exe:
        raise FileNotFoundError(
            "mosquitto not found: install the Debian package 'mosquitto' (scripts/setup.sh does)"
        )
    return exe


class LocalBroker:
    """A mosquitto process on 127.0.0.1 with its own config; ``extra_conf`` adds lines (TLS, ACL).

    ``base_conf`` replaces the generated listener / anonymous / persistence / log lines with a
    whole configuration of the caller's (e.g. the deployment ``config/mosquitto/mosquitto.conf``
    rendered for a test); it must itself listen on ``self.port`` at 127.0.0.1.
    """

    def __init__(
        self,
        port: int | None = None,
        extra_conf: str = "",
        workdir: Path | None = None,
        persistence: bool = True,
        base_conf: str | None = None,
    ):
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.base_conf = base_conf
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="anqi-mosquitto-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_conf(self) -> Path:
        root = (
            ["user root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        )  # else mosquitto drops to user 'mosquitto'
        if self.base_conf is not None:
            self.conf_path.write_text("\n".join([*root, self.base_conf, self.extra_conf]) + "\n")
            return self.conf_path
        lines = [f"listener {self.port} 127.0.0.1", *root]
        if "allow_anonymous" not in self.extra_conf:
            lines.append("allow_anonymous true")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        lines += [
            "log_dest file " + str(self.workdir / "mosquitto.log"),
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_inflight_messages 100",
            "max_queued_messages 100000",
            self.extra_conf,
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")
        return self.conf_path

    def start(self, timeout: float = 10.0) -> LocalBroker:
        self.write_conf()
        # not the daemon's systemd service: it must not send READY / WATCHDOG on the daemon's notify socket
        env = {
            k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        }
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=_die_with_parent(os.getpid()) if sys.platform.startswith("linux") else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = self.workdir / "mosquitto.log"
                raise RuntimeError(
                    f"mosquitto exited with {self.proc.returncode}: {err}{log.read_text() if log.exists() else ''}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"mosquitto did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Stop abruptly (as a crash or power cut would)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """For the broker child: the kernel sends it SIGTERM when the process that started it dies, however it
    dies (a SIGKILL'd or crashed daemon leaves no orphan broker holding the port and the persistence file).
    Runs in the child between fork and exec; a parent already gone by then ends the child at once."""

    def arm() -> None:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)

    return arm
