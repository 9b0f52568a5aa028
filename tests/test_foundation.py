"""The frame every stage plugs into: CLI init/validate/status/schema, systemd units, sd_notify, logs."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from anqi_contract.event import SCHEMA_VERSION, json_schema
from anqi_contract.logs import log, setup_logging
from anqi_contract.notify import SystemdNotifier
from edge.cli import main
from edge.config import load_config
from edge.health import Health

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_init_writes_a_valid_commented_config_for_the_site(tmp_path: Path) -> None:
    out = tmp_path / "site.yaml"
    res = run_cli(
        "init", str(out), "--device-id", "hz-nanxun-07", "--site-id", "nanxun", "--point-id", "gate-3"
    )
    assert res.exit_code == 0, res.output
    text = out.read_text(encoding="utf-8")
    assert text.lstrip().startswith("#")
    cfg = load_config(out)
    assert (cfg.device.device_id, cfg.device.site_id, cfg.device.point_id) == (
        "hz-nanxun-07",
        "nanxun",
        "gate-3",
    )
    again = run_cli("init", str(out))
    assert again.exit_code != 0 and "exists" in again.output


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("zone:\n  near_m: -1\n", "zone.near_m"),
        ("detect:\n  providers: [CPUExecutionProvider]\n  rider_modle: x\n", "detect.rider_modle"),
        ("zone:\n  near_m: 25\n  far_m: 15\n", "zone.far_m"),
    ],
)
def test_validate_rejects_bad_config_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    p = tmp_path / "edge.yaml"
    p.write_text(text)
    res = CliRunner().invoke(main, ["validate", str(p)])
    assert res.exit_code != 0
    assert f"edge.yaml: {key}:" in res.output


def test_status_reports_components_and_fails_when_stale_or_down(tmp_path: Path) -> None:
    cfg_path = tmp_path / "edge.yaml"
    cfg_path.write_text("device:\n  data_dir: data\n")
    res = CliRunner().invoke(main, ["status", "--config", str(cfg_path)])
    assert res.exit_code == 1 and "no health file" in res.output

    h = Health(tmp_path / "data" / "health.json", "dev-1")
    h.set("camera", "up", "rtsp ok", fps=25.0)
    h.set("speaker", "up")
    h.write()
    res = CliRunner().invoke(main, ["status", "--config", str(cfg_path)])
    assert res.exit_code == 0, res.output
    assert "camera" in res.output and "fps=25.0" in res.output

    h.set("speaker", "down", "no audio device")
    h.write()
    res = CliRunner().invoke(main, ["status", "--config", str(cfg_path)])
    assert res.exit_code == 1 and "no audio device" in res.output

    h.set("speaker", "up")
    h.write()
    time.sleep(1.1)
    res = CliRunner().invoke(main, ["status", "--config", str(cfg_path), "--max-age", "1"])
    assert res.exit_code == 1 and "STALE" in res.output


def test_schema_command_matches_the_committed_json_schema() -> None:
    res = run_cli("schema")
    committed = json.loads((ROOT / "config" / "schema" / f"event.v{SCHEMA_VERSION}.json").read_text())
    assert json.loads(res.output) == committed == json_schema()


def _verify_unit(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    # The units name /opt/anqi; point them at this checkout so ExecStart= binaries exist.
    unit = tmp_path / name
    unit.write_text(text.replace("/opt/anqi", str(ROOT)))
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (Debian package systemd)"
)
@pytest.mark.parametrize("name", ["anqi-edge.service", "anqi-central.service"])
def test_systemd_units_verify_clean_and_are_hardened(tmp_path: Path, name: str) -> None:
    if not (ROOT / ".venv" / "bin" / "anqi-edge").exists():
        pytest.skip("needs the .venv made by scripts/setup.sh")
    text = (ROOT / "systemd" / name).read_text()
    res = _verify_unit(tmp_path, name, text)
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr
    for directive in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "PrivateTmp=yes",
        "StandardOutput=journal",
    ):
        assert directive in text, directive
    assert "User=" in text and "User=root" not in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    text = (
        (ROOT / "systemd" / "anqi-edge.service").read_text().replace("WatchdogSec=30", "WatchdogSec=thirty")
    )
    res = _verify_unit(tmp_path, "anqi-edge.service", text)
    assert "WatchdogSec" in res.stderr or "sec value" in res.stderr


def test_notifier_sends_ready_and_watchdog_over_the_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        srv.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        n = SystemdNotifier()
        assert n.enabled and n.watchdog_interval_s == 15.0
        n.ready("watching")
        n.watchdog()
        assert srv.recv(256) == b"READY=1\nSTATUS=watching"
        assert srv.recv(256) == b"WATCHDOG=1"


def test_notifier_is_silent_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    assert not n.enabled
    n.ready()  # no socket: nothing happens, nothing raises


def test_log_lines_are_one_logfmt_line_and_mask_secrets() -> None:
    buf = io.StringIO()
    setup_logging("INFO", stream=buf)
    try:
        log(
            logging.getLogger("anqi.test"),
            "violation",
            event_id="e1",
            type="no_helmet",
            password="hunter2",
            embedding=[0.1, 0.2],
            note="two words",
        )
    finally:
        setup_logging("INFO")
    line = buf.getvalue()
    assert line.count("\n") == 1
    assert "msg=violation" in line and "event_id=e1" in line and 'note="two words"' in line
    assert "hunter2" not in line and "0.1" not in line and "password=***" in line


def test_cli_entry_point_is_installed() -> None:
    exe = Path(sys.executable).with_name("anqi-edge")
    if not exe.exists():
        pytest.skip("console script not installed in this interpreter's environment")
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60, env={**os.environ})
    assert res.returncode == 0
    for cmd in (
        "init",
        "validate",
        "run",
        "replay",
        "status",
        "calibrate",
        "detect-images",
        "models",
        "test-speaker",
        "test-lights",
    ):
        assert cmd in res.stdout


# ---------------------------------------------------------------- validate: files and pins the config names
EXAMPLE_SITE = ROOT / "config" / "examples" / "bikelane-cyclists.yaml"


def _site_copy(tmp_path: Path, edit: dict[str, object] | None = None) -> Path:
    import yaml

    data = yaml.safe_load(EXAMPLE_SITE.read_text(encoding="utf-8"))
    data["source"]["uri"] = str((EXAMPLE_SITE.parent / data["source"]["uri"]).resolve())
    for dotted, value in (edit or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    out = tmp_path / "site.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return out


def test_validate_accepts_the_shipped_site_configs() -> None:
    for cfg in (EXAMPLE_SITE, ROOT / "config" / "edge.example.yaml"):
        res = CliRunner().invoke(main, ["validate", str(cfg)])
        assert res.exit_code == 0, res.output
        assert res.output.strip().endswith("OK")


def test_validate_names_a_missing_model_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    shutil.copytree(
        ROOT / "models", models, ignore=shutil.ignore_patterns("cache", "train", "runs", "datasets", "logs")
    )
    (models / "onnx" / "anqi-head-cls.onnx").unlink()
    monkeypatch.setenv("ANQI_MODELS_DIR", str(models))
    res = CliRunner().invoke(main, ["validate", str(_site_copy(tmp_path))])
    assert res.exit_code == 1
    assert "site.yaml: detect.head_model:" in res.output and "anqi-head-cls.onnx" in res.output


def test_validate_names_a_corrupt_model_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    shutil.copytree(
        ROOT / "models", models, ignore=shutil.ignore_patterns("cache", "train", "runs", "datasets", "logs")
    )
    (models / "onnx" / "anqi-rider-head.onnx").write_bytes(b"not an onnx file")
    monkeypatch.setenv("ANQI_MODELS_DIR", str(models))
    res = CliRunner().invoke(main, ["validate", str(_site_copy(tmp_path))])
    assert res.exit_code == 1
    assert "site.yaml: detect.rider_model:" in res.output and "anqi-rider-head.onnx" in res.output


@pytest.mark.parametrize(
    ("pin", "fragment"), [("GPIO17x", "not a gpiozero pin name"), (99, "GPIO number must be 0..53")]
)
def test_validate_rejects_a_bad_gpio_pin_naming_the_key(tmp_path: Path, pin: object, fragment: str) -> None:
    site = _site_copy(
        tmp_path,
        {"lights.enabled": True, "lights.backend": "gpio", "lights.outputs": {"laser": {"pin": pin}}},
    )
    res = CliRunner().invoke(main, ["validate", str(site)])
    assert res.exit_code != 0
    assert "site.yaml: lights.outputs.laser.pin:" in res.output and fragment in res.output


def test_validate_lists_every_problem_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    shutil.copytree(
        ROOT / "models", models, ignore=shutil.ignore_patterns("cache", "train", "runs", "datasets", "logs")
    )
    (models / "onnx" / "anqi-head-cls.onnx").unlink()
    monkeypatch.setenv("ANQI_MODELS_DIR", str(models))
    site = _site_copy(tmp_path, {"speaker.languages": ["zh-cmn", "wuu-huzhou"]})
    res = CliRunner().invoke(main, ["validate", str(site)])
    assert res.exit_code == 1
    assert "detect.head_model:" in res.output and "speaker.languages" in res.output
    assert "problem(s) found" in res.output


def test_status_fails_when_the_daemon_is_gone_or_evidence_was_lost(
    tmp_path: Path, make_event: object
) -> None:
    cfg_path = tmp_path / "edge.yaml"
    cfg_path.write_text(
        "device:\n  data_dir: data\nrelay:\n  outbox:\n    max_disk_mb: 1.05\n    when_full: drop_oldest_unsent_media\n"
    )
    # a daemon that wrote its health and then died (a real process, now gone)
    code = (
        "import sys; from pathlib import Path; from edge.health import Health; "
        "h = Health(Path(sys.argv[1]), 'dev-1'); h.set('camera', 'up'); h.write()"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "data" / "health.json")], check=True, cwd=ROOT)
    res = CliRunner().invoke(main, ["status", "--config", str(cfg_path)])
    assert res.exit_code == 1 and "daemon NOT RUNNING" in res.output, res.output
    # this process's own health (alive): fine until the outbox lost evidence
    h = Health(tmp_path / "data" / "health.json", "dev-1")
    h.set("camera", "up")
    h.write()
    assert CliRunner().invoke(main, ["status", "--config", str(cfg_path)]).exit_code == 0
    from edge.relay import Outbox

    site = load_config(cfg_path)
    ob = Outbox.for_config(site.relay.outbox, site.data_dir, base_dir=site.base_dir)
    for i in range(3):  # 3 x 400 kB into a 1.05 MB budget: the oldest unsent clip is dropped
        ev, files = make_event(tmp_path, i, {"clip.mp4": 400_000})  # type: ignore[operator]
        ob.add(ev, files)
    res = CliRunner().invoke(main, ["status", "--config", str(cfg_path)])
    ob.close()
    assert res.exit_code == 1 and "LOST: 1 media file(s) of 1 event(s)" in res.output, res.output
