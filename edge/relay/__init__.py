"""Relay stage: the on-disk :class:`Outbox`, the :class:`MqttRelay` that empties it into the
central office, the wire :mod:`~anqi_contract.protocol`, and the development :class:`LocalBroker`.

Wiring (the daemon)::

    relay_cfg, broker = connect_or_start_local(cfg.relay, cfg.data_dir / "dev-broker")  # None: host set
    outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir, health, base_dir=cfg.base_dir)
    relay = MqttRelay(relay_cfg, cfg.device, outbox, health, base_dir=cfg.base_dir).start()
    ... outbox.add(event, {"face.jpg": path, ...}) ...
    relay.wait_drained(timeout)                    # --until-eof
    relay.stop(); outbox.close(); broker and broker.close()
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from anqi_contract.localbroker import LocalBroker
from anqi_contract.logs import log
from edge.config import EdgeConfig
from edge.config.relay import RelayConfig
from edge.relay.diskguard import AlarmBeacon, DiskReserve, ram_outbox_dir, read_beacon
from edge.relay.mqtt import MqttRelay, RelayConfigError, read_password, tls_context
from edge.relay.outbox import EventState, Outbox, OutboxError, OutboxStats, outbox_root

__all__ = [
    "AlarmBeacon",
    "DiskReserve",
    "ram_outbox_dir",
    "read_beacon",
    "check_config",
    "connect_or_start_local",
    "EventState",
    "LocalBroker",
    "MqttRelay",
    "Outbox",
    "OutboxError",
    "OutboxStats",
    "RelayConfigError",
]

logger = logging.getLogger("anqi.relay")


def check_config(cfg: EdgeConfig) -> list[str]:
    """Problems with the relay settings, each ``key.path: message`` (for ``anqi-edge validate``)."""
    problems: list[str] = []
    mc = cfg.relay.mqtt
    if mc.password_env and not mc.username:
        problems.append(
            "relay.mqtt.password_env: set, but relay.mqtt.username is not (the password needs a user)"
        )
    try:
        read_password(mc.password_env)
    except RelayConfigError as e:
        problems.append(str(e))
    if mc.tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            p = getattr(mc.tls, key)
            if p is None:
                continue
            f = cfg.resolve(p)
            if not f.is_file():
                problems.append(f"relay.mqtt.tls.{key}: file not found: {f}")
            elif not os.access(f, os.R_OK):
                problems.append(f"relay.mqtt.tls.{key}: not readable: {f}")
        if not any(p.startswith("relay.mqtt.tls.") for p in problems):
            try:
                tls_context(mc.tls, cfg.base_dir)
            except RelayConfigError as e:
                problems.append(str(e))
    elif mc.host is not None and mc.host not in ("localhost", "127.0.0.1", "::1"):
        problems.append(
            f"relay.mqtt.tls: not set; evidence (faces) would cross the network to {mc.host} unencrypted"
        )
    oc = cfg.relay.outbox
    root = outbox_root(oc, cfg.data_dir, cfg.base_dir)
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problems.append(
            f"relay.outbox.path: cannot create or write the outbox folder {root} (nearest existing: {existing})"
        )
    else:
        # Free space is a runtime condition, not a config error: a full disk (or a backlog after a central
        # outage) is an alarm the running daemon raises and survives (edge.relay.diskguard), and refusing
        # to start would stop detection and the relay of that very backlog. What is refused is a budget
        # the file system could never hold.
        st = os.statvfs(existing)
        total_mb = st.f_blocks * st.f_frsize / 1e6
        budget_mb = oc.max_disk_mb * 1.048576
        if budget_mb > 0.9 * total_mb:
            held_mb = (_tree_bytes(root) + DiskReserve(cfg.data_dir, oc.reserve_mb).held()) / 1e6
            free_mb = st.f_bavail * st.f_frsize / 1e6
            problems.append(
                f"relay.outbox.max_disk_mb: {oc.max_disk_mb:g} MB budget, but the file system of {existing} "
                f"holds only {total_mb:.0f} MB ({free_mb:.0f} MB free, {held_mb:.0f} MB held by the outbox and "
                f"its reserve)"
            )
    return problems


def connect_or_start_local(relay: RelayConfig, workdir: Path) -> tuple[RelayConfig, LocalBroker | None]:
    """When ``relay.mqtt.host`` is None start the project's own mosquitto (development only, its files under
    ``workdir``) and return a copy of the ``relay`` section pointing at it, plus the broker to ``close()`` later;
    else ``(relay, None)``."""
    if relay.mqtt.host is not None:
        return relay, None
    wd = workdir
    broker = LocalBroker(workdir=wd).start()
    mqtt = relay.mqtt.model_copy(
        update={"host": "127.0.0.1", "port": broker.port, "tls": None, "username": None, "password_env": None}  # nosec B105
    )
    local = relay.model_copy(update={"mqtt": mqtt})
    log(
        logger,
        "development_broker_started",
        logging.WARNING,
        port=broker.port,
        workdir=str(wd),
        detail="relay.mqtt.host is not set: events go to a local mosquitto on this machine, not to the central office",
    )
    return local, broker


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
