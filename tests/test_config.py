"""Site config: loading, defaults, and every error path names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge.config import ConfigError, EdgeConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "edge.example.yaml"


def write(tmp_path: Path, text: str, name: str = "edge.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_example_config_loads_with_documented_values() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.zone.near_m == 15 and cfg.zone.far_m == 25
    assert cfg.buffer.pre_s == 6.0 and cfg.buffer.post_s == 1.0
    assert len(cfg.zone.calibration) >= 4


def test_empty_file_gives_all_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert cfg == parse_config({}, base_dir=tmp_path)
    assert cfg.device.timezone == "Asia/Shanghai"
    assert cfg.data_dir == (tmp_path / "anqi-data").resolve()


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "site"
    sub.mkdir()
    cfg = load_config(write(sub, "device:\n  data_dir: var/anqi\n"))
    assert cfg.data_dir == (sub / "var" / "anqi").resolve()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "zone:\n  near_m: 25\n  far_m: 15\n",
            "edge.yaml: zone.far_m: must be greater than zone.near_m (got 15 <= 25)",
        ),
        ("zone:\n  near_m: -3\n", "edge.yaml: zone.near_m: Input should be greater than or equal to 0"),
        ("detect:\n  rider_modle: x\n", "edge.yaml: detect.rider_modle: unknown key"),
        ("zonee: {}\n", "edge.yaml: zonee: unknown key"),
        ("source:\n  detect_fps: fast\n", "edge.yaml: source.detect_fps: Input should be a valid number"),
        (
            "device:\n  timezone: Mars/Olympus\n",
            "edge.yaml: device.timezone: unknown IANA time zone 'Mars/Olympus'",
        ),
        (
            "device:\n  device_id: 'bad id/with#'\n",
            "edge.yaml: device.device_id: String should match pattern",
        ),
        (
            "zone:\n  calibration:\n    - {image: [0, 0], ground: [0, 0]}\n",
            "edge.yaml: zone.calibration: needs at least 4 points",
        ),
        ("buffer:\n  pre_s: 100\n", "edge.yaml: buffer.pre_s: Input should be less than or equal to 30"),
        (
            "relay:\n  mqtt:\n    port: 70000\n",
            "edge.yaml: relay.mqtt.port: Input should be less than or equal to 65535",
        ),
        (
            "source:\n  reconnect_initial_s: 10\n  reconnect_max_s: 2\n",
            "edge.yaml: source: reconnect_max_s must be >= reconnect_initial_s",
        ),
    ],
)
def test_bad_values_name_file_key_and_expectation(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert any(line.startswith(expected) for line in str(err.value).splitlines()), str(err.value)


def test_all_problems_are_listed_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(
            write(tmp_path, "zone:\n  near_m: 30\n  far_m: 20\nspeeker: {}\nsource:\n  detect_fps: -1\n")
        )
    assert len(err.value.problems) == 3
    keys = {p.split(":")[0] for p in err.value.problems}
    assert keys == {"zone.far_m", "speeker", "source.detect_fps"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("zone: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "(top level): must be a mapping"),
    ],
)
def test_unreadable_yaml_is_reported_with_position(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert fragment in str(err.value) and str(err.value).startswith("edge.yaml: ")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"edge\.yaml: file not found"):
        load_config(tmp_path / "edge.yaml")


def test_config_roundtrips_through_yaml(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE)
    dumped = yaml.safe_dump(cfg.model_dump(mode="json"))
    again = load_config(write(tmp_path, dumped))
    assert again.model_dump() == cfg.model_dump()


def test_base_dir_cannot_be_set_from_yaml() -> None:
    with pytest.raises(ConfigError, match="base_dir: unknown key"):
        parse_config({"base_dir": "/"})


def test_models_are_typed_sections() -> None:
    assert set(EdgeConfig.model_fields) >= {
        "device",
        "source",
        "buffer",
        "detect",
        "track",
        "zone",
        "rules",
        "face",
        "speaker",
        "lights",
        "time_switch",
        "relay",
    }


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        # a GBK-encoded YAML (a Chinese comment saved by a Windows editor)
        (
            "device:\n  site_id: huzhou-demo  # 湖州示范点\n".encode("gbk"),
            "line 2: not UTF-8 text (byte 0xba",
        ),
        (bytes(range(256)) * 4, "is a binary file, not YAML text"),
        (b"\x7fELF\x02\x01\x01\x00" + bytes(64), "is a binary file"),
    ],
)
def test_a_config_that_is_not_utf8_text_is_named_not_a_traceback(
    tmp_path: Path, data: bytes, fragment: str
) -> None:
    from central_sync.config import load_config as load_central

    for name, load in (("edge.yaml", load_config), ("central.yaml", load_central)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ConfigError) as err:
            load(tmp_path / name)
        assert str(err.value).startswith(f"{name}: ") and fragment in str(err.value), str(err.value)


def test_a_utf8_bom_and_chinese_text_are_fine(tmp_path: Path) -> None:
    (tmp_path / "edge.yaml").write_bytes("\ufeffdevice:\n  site_id: huzhou-demo  # 湖州示范点\n".encode())
    assert load_config(tmp_path / "edge.yaml").device.site_id == "huzhou-demo"
