"""The relay config section and ``edge.relay.check_config`` (what ``anqi-edge validate`` reports)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.config import ConfigError, parse_config
from edge.relay import check_config


def _cfg(tmp_path: Path, relay: dict[str, Any]) -> Any:
    return parse_config({"device": {"data_dir": str(tmp_path / "data")}, "relay": relay}, "t.yaml", tmp_path)


@pytest.mark.parametrize(
    "relay, problem",
    [
        (
            {"mqtt": {"tls": {"cert_file": "c.pem"}}},
            "relay.mqtt.tls: cert_file and key_file must be given together",
        ),
        (
            {"mqtt": {"reconnect_min_s": 10, "reconnect_max_s": 5}},
            "relay.mqtt: reconnect_max_s must be >= reconnect_min_s",
        ),
        ({"mqtt": {"password_env": "my password"}}, "relay.mqtt.password_env: String should match pattern"),
        ({"mqtt": {"password": "hunter2"}}, "relay.mqtt.password: unknown key"),
        (
            {"mqtt": {"max_inflight": 0}},
            "relay.mqtt.max_inflight: Input should be greater than or equal to 1",
        ),
        ({"mqtt": {"protocol": "4"}}, "relay.mqtt.protocol: Input should be 'auto', '5' or '3.1.1'"),
        ({"outbox": {"when_full": "drop_everything"}}, "relay.outbox.when_full: Input should be"),
        ({"outbox": {"max_disk_mb": 0}}, "relay.outbox.max_disk_mb: Input should be greater than 1"),
        ({"heartbeat_s": 0}, "relay.heartbeat_s: Input should be greater than or equal to 1"),
    ],
)
def test_invalid_relay_settings_name_the_key(tmp_path: Path, relay: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as ei:
        _cfg(tmp_path, relay)
    assert any(p.startswith(problem) for p in ei.value.problems), ei.value.problems


def test_development_config_has_no_problems(tmp_path: Path) -> None:
    assert check_config(_cfg(tmp_path, {})) == []


@pytest.mark.parametrize(
    "relay, env, expected",
    [
        (
            {"mqtt": {"host": "b.example", "username": "d", "password_env": "ANQI_T_PW", "tls": {}}},
            {},
            "relay.mqtt.password_env: environment variable ANQI_T_PW is not set",
        ),
        (
            {"mqtt": {"host": "b.example", "password_env": "ANQI_T_PW", "tls": {}}},
            {"ANQI_T_PW": "x"},
            "relay.mqtt.password_env: set, but relay.mqtt.username is not",
        ),
        (
            {"mqtt": {"host": "b.example", "tls": {"ca_file": "nope/ca.crt"}}},
            {},
            "relay.mqtt.tls.ca_file: file not found",
        ),
        (
            {"mqtt": {"host": "b.example"}},
            {},
            "relay.mqtt.tls: not set; evidence (faces) would cross the network",
        ),
        (
            {"outbox": {"path": "blocker/outbox"}},
            {},
            "relay.outbox.path: cannot create or write the outbox folder",
        ),
        (
            {"outbox": {"max_disk_mb": 1e12}},
            {},
            "relay.outbox.max_disk_mb: 1e+12 MB budget, but the file system of",
        ),
    ],
)
def test_check_config_reports_each_problem_with_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: dict[str, Any], env: dict[str, str], expected: str
) -> None:
    monkeypatch.delenv("ANQI_T_PW", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    problems = check_config(_cfg(tmp_path, relay))
    assert any(p.startswith(expected) for p in problems), problems


def test_password_from_systemd_credential_passes_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "ANQI_T_PW").write_text("secret\n")
    monkeypatch.delenv("ANQI_T_PW", raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = _cfg(tmp_path, {"mqtt": {"host": "localhost", "username": "d", "password_env": "ANQI_T_PW"}})
    assert check_config(cfg) == []
    from edge.relay.mqtt import read_password

    assert read_password("ANQI_T_PW") == "secret"


def test_example_config_relay_section_and_its_commented_production_block_are_valid(tmp_path: Path) -> None:
    import re

    import yaml

    from edge.config import load_config

    example = Path(__file__).resolve().parents[2] / "config" / "edge.example.yaml"
    cfg = load_config(example)
    assert cfg.relay.mqtt.host is None  # as shipped: the development broker
    text = example.read_text(encoding="utf-8")
    block = re.findall(
        r"^    #   (.*)$", text[text.index("\nrelay:") :], flags=re.M
    )  # the commented deployment keys
    production = yaml.safe_load("\n".join(block))
    assert production["host"] and production["password_env"] and production["tls"]["ca_file"]
    mqtt = {k: v for k, v in yaml.safe_load(text)["relay"]["mqtt"].items() if k != "host"}
    parse_config({"relay": {"mqtt": {**mqtt, **production}}}, "example", tmp_path)
