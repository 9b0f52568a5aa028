"""Central config: the example is valid, unknown keys and bad values name file and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from central_sync.config import CentralConfig, ConfigError, load_config, parse_config, read_secret

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "central.example.yaml"


def test_example_config_is_valid_and_has_the_standards_thresholds() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.tiers == CentralConfig().tiers
    assert (cfg.tiers.occasional_max_7d, cfg.tiers.occasional_max_30d, cfg.tiers.repeat_window_days) == (
        3,
        7,
        365,
    )
    assert cfg.database_url().startswith("sqlite:////")  # resolved beside the config file


@pytest.mark.parametrize(
    "data,needle",
    [
        ({"tiers": {"occasional_max_7": 3}}, "tiers.occasional_max_7: unknown key"),
        ({"tiers": {"occasional_min_7d": 5}}, "tiers: occasional_min_7d must not exceed occasional_max_7d"),
        ({"mqtt": {"port": 70000}}, "mqtt.port:"),
        ({"database": {"url": "mysql://x"}}, "database.url: unsupported database URL scheme"),
        ({"identity": {"match_threshold": "high"}}, "identity.match_threshold:"),
        ({"tiers": {"repeat_dispositions": ["sms"]}}, "tiers.repeat_dispositions.0:"),
        ({"timezone": "Mars/Base"}, "timezone: unknown IANA time zone"),
        ({"ingest": {"batch_max": 0}}, "ingest.batch_max:"),
        ({"ingest": {"batch_wait_ms": -1}}, "ingest.batch_wait_ms:"),
        ({"database": {"sqlite_synchronous": "OFF"}}, "database.sqlite_synchronous:"),
    ],
)
def test_bad_values_name_the_key_path(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(data, "central.yaml")
    assert any(needle in p for p in e.value.problems), e.value.problems
    assert str(e.value).startswith("central.yaml: ")


def test_unreadable_and_non_mapping_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: line"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(lst)


def test_database_password_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config(
        {"database": {"url": "postgresql+psycopg://anqi@db/anqi", "password_env": "ANQI_TEST_DBPW"}}
    )
    with pytest.raises(ConfigError, match="ANQI_TEST_DBPW"):
        cfg.database_url()
    monkeypatch.setenv("ANQI_TEST_DBPW", "s3cret")
    assert cfg.database_url() == "postgresql+psycopg://anqi:s3cret@db/anqi"
    assert read_secret("ANQI_TEST_DBPW", "k") == "s3cret"


def test_whole_database_url_from_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "database-url").write_text("postgresql+psycopg://anqi:pw@db/anqi\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("database-url", raising=False)
    cfg = parse_config({"database": {"url_env": "database-url"}})
    assert cfg.database_url() == "postgresql+psycopg://anqi:pw@db/anqi"
