"""The deployment broker config (config/mosquitto/) rendered for a test: dev PKI paths, a free port, a work folder."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOSQ = ROOT / "config" / "mosquitto"
DEV_A, DEV_B, CENTRAL, DISPATCH = "anqi-dev-0001", "anqi-dev-0002", "anqi-central", "anqi-dispatch"
SITE = "huzhou-demo"


def render_conf(pki: Path, port: int, workdir: Path, conf: str = "mosquitto.conf", **changes: str) -> str:
    text = (MOSQ / conf).read_text()
    text = text.replace("/etc/mosquitto/anqi/", f"{pki}/").replace(
        "listener 8883", f"listener {port} 127.0.0.1"
    )
    text = text.replace("persistence_location /var/lib/mosquitto/", f"persistence_location {workdir}/")
    text = text.replace("log_dest syslog", f"log_dest file {workdir}/mosquitto.log")
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    return text


def password(pki: Path, user: str) -> str:
    return (pki / "passwords" / user).read_text()
