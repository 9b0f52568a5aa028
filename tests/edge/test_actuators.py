"""check_config error paths, prompt loading (any rate, mono/stereo), and the installer's self-test commands."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from scipy.io import wavfile

from anqi_contract.paths import project_home
from edge.actuators import check_config
from edge.actuators.prompts import MESSAGES, PromptLibrary, PromptPacks, load_wav
from edge.cli.actuators import test_lights as cli_test_lights
from edge.config import load_config, parse_config

RED_LIGHT = {
    "enabled": True,
    "stop_line": [[-3.0, 16.0], [3.0, 16.0]],
    "signal": {"source": "image", "region": [10, 10, 8, 8]},
}


def write_pack(root: Path, lang: str, messages: tuple[str, ...] = MESSAGES, rate: int = 16000) -> Path:
    (root / lang).mkdir(parents=True, exist_ok=True)
    t = np.arange(rate // 2) / rate
    for m in messages:
        wavfile.write(
            root / lang / f"{m}.wav", rate, (0.5 * np.sin(2 * np.pi * 500 * t) * 32767).astype(np.int16)
        )
    return root / lang


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


def test_the_example_config_and_the_shipped_packs_pass() -> None:
    cfg = load_config(project_home() / "config" / "edge.example.yaml")
    assert check_config(cfg) == []
    every_rule = parse_config(
        {
            "rules": {"wrong_way": {"enabled": True}, "red_light": RED_LIGHT},
            "speaker": {"languages": ["zh-cmn", "zh-yue"]},
        }
    )
    assert check_config(every_rule) == []


def test_missing_language_pack_and_missing_message_are_named(tmp_path: Path) -> None:
    write_pack(tmp_path, "wuu-huzhou", messages=("no_helmet", "generic"))
    cfg = parse_config(
        {
            "speaker": {"languages": ["zh-cmn", "wuu-huzhou", "zh-xx"], "prompts_dir": str(tmp_path)},
            "rules": {"red_light": RED_LIGHT},
        },
        base_dir=tmp_path,
    )
    problems = check_config(cfg)
    assert f"speaker.languages.1: wuu-huzhou: missing {tmp_path / 'wuu-huzhou' / 'red_light.wav'}" in problems
    assert any(p.startswith("speaker.languages.2: no prompt pack 'zh-xx'") for p in problems)
    assert len(problems) == 2  # wrong_way is not enabled, so its missing file is no problem
    cfg.rules.red_light.enabled = False
    assert len(check_config(cfg)) == 1


def test_unreadable_wav_and_missing_prompts_dir(tmp_path: Path) -> None:
    pack = write_pack(tmp_path / "packs", "wuu-huzhou")
    (pack / "no_helmet.wav").write_bytes(b"RIFF....not a wav")
    cfg = parse_config({"speaker": {"languages": ["wuu-huzhou"], "prompts_dir": "packs"}}, base_dir=tmp_path)
    [problem] = check_config(cfg)
    assert (
        problem.startswith("speaker.languages.0: wuu-huzhou: ")
        and "no_helmet.wav: not a readable WAV" in problem
    )
    cfg = parse_config({"speaker": {"prompts_dir": "nowhere"}}, base_dir=tmp_path)
    assert check_config(cfg) == [f"speaker.prompts_dir: folder not found: {tmp_path / 'nowhere'}"]


def test_site_pack_is_searched_before_the_shipped_one(tmp_path: Path) -> None:
    # a site pack recorded before the passenger message existed: its generic.wav stands in for it
    write_pack(tmp_path, "zh-cmn", messages=tuple(m for m in MESSAGES if m != "passenger"), rate=22050)
    cfg = parse_config(
        {"speaker": {"languages": ["zh-cmn", "zh-yue"], "prompts_dir": str(tmp_path), "gap_s": 0.5}}
    )
    lib = PromptLibrary.load(cfg.speaker, PromptPacks.for_site(cfg.speaker, cfg.rules, cfg.base_dir), 16000)
    assert lib.problems == []
    p = lib.prompts["no_helmet"]
    assert (
        p.files[0] == tmp_path / "zh-cmn" / "no_helmet.wav"
        and p.files[1] == project_home() / "audio_prompts" / "zh-yue" / "no_helmet.wav"
    )
    yue = load_wav(p.files[1], 16000)
    assert len(p.samples) == 8000 + 8000 + len(yue)  # 0.5 s tone, 0.5 s gap, the Cantonese prompt
    assert (
        lib.for_violation("passenger") is lib.prompts["passenger"]
        and lib.prompts["passenger"].files[0].name == "generic.wav"
    )


@pytest.mark.parametrize(
    ("rate", "dtype", "channels"),
    [
        (44100, np.int16, 2),
        (8000, np.uint8, 1),
        (48000, np.float32, 2),
        (22050, np.int32, 1),
        (32000, "int24", 2),
    ],
)
def test_installer_wavs_of_any_rate_and_layout_are_resampled_and_downmixed(
    tmp_path: Path, rate: int, dtype: type, channels: int
) -> None:
    t = np.arange(int(0.8 * rate)) / rate
    x = 0.5 * np.sin(2 * np.pi * 600 * t)
    if dtype == "int24":  # scipy cannot write 24-bit: pack it with the wave module
        i32 = (x * 8388607).astype("<i4")
        frames = np.repeat(i32, channels).view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
        with wave.open(str(tmp_path / "p.wav"), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(3)
            w.setframerate(rate)
            w.writeframes(frames)
        data = None
    elif dtype is np.uint8:
        data = (x * 127 + 128).astype(np.uint8)
    elif dtype is np.float32:
        data = x.astype(np.float32)
    else:
        data = (x * np.iinfo(dtype).max).astype(dtype)
    if data is not None:
        wavfile.write(tmp_path / "p.wav", rate, np.stack([data, data], axis=1) if channels == 2 else data)
    y = load_wav(tmp_path / "p.wav", 16000)
    assert y.ndim == 1 and y.dtype == np.float32
    assert len(y) == pytest.approx(0.8 * 16000, abs=2)
    assert dominant_hz(y, 16000) == pytest.approx(600, abs=2)
    assert np.max(np.abs(y)) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ({"laser": {"pin": "GPIO99"}}, "lights.outputs.laser.pin: GPIO99 is not a valid pin name"),
        (
            {"laser": {"pin": "GPIO17"}, "strobe": {"pin": "BOARD11"}},
            "lights.outputs.strobe.pin: 'BOARD11' is GPIO17, already used by lights.outputs.laser",
        ),
        ({"laser": {"pin": "BOARD1"}}, "lights.outputs.laser.pin:"),  # 3V3 power, not a GPIO
    ],
)
def test_gpio_pin_problems(outputs: dict, expected: str) -> None:
    cfg = parse_config({"lights": {"enabled": True, "outputs": outputs}})
    assert any(p.startswith(expected) for p in check_config(cfg)), check_config(cfg)


def test_valid_pins_pass_in_every_spelling() -> None:
    cfg = parse_config(
        {
            "lights": {
                "enabled": True,
                "outputs": {
                    "a": {"pin": "GPIO17"},
                    "b": {"pin": "BOARD13"},
                    "c": {"pin": 22},
                    "d": {"pin": "BCM23"},
                    "e": {"pin": "gpio24"},
                    "f": {"pin": "J8:37"},
                },
            }
        }
    )
    assert check_config(cfg) == []


def test_serial_port_must_exist_unless_it_is_a_url(tmp_path: Path) -> None:
    frames = {"laser": {"on_frame": "A0 01 01 A2", "off_frame": "A0 01 00 A1"}}
    missing = parse_config(
        {
            "lights": {
                "enabled": True,
                "backend": "rs485",
                "rs485": {"port": "/dev/ttyUSB7"},
                "outputs": frames,
            }
        }
    )
    assert check_config(missing) == [
        "lights.rs485.port: serial port /dev/ttyUSB7 does not exist (is the RS-485 adapter plugged in? or use a pyserial URL)"
    ]
    for port in ("loop://", "socket://10.0.0.5:4001"):
        assert (
            check_config(
                parse_config(
                    {
                        "lights": {
                            "enabled": True,
                            "backend": "rs485",
                            "rs485": {"port": port},
                            "outputs": frames,
                        }
                    }
                )
            )
            == []
        )
    controller, device = os.openpty()
    try:
        tty = parse_config(
            {
                "lights": {
                    "enabled": True,
                    "backend": "rs485",
                    "rs485": {"port": os.ttyname(device)},
                    "outputs": frames,
                }
            }
        )
        assert check_config(tty) == []
    finally:
        os.close(controller)
        os.close(device)


def test_disabled_outputs_are_not_checked() -> None:
    cfg = parse_config(
        {
            "speaker": {"enabled": False, "languages": ["zz-none"]},
            "lights": {"enabled": False, "outputs": {"laser": {"pin": "GPIO99"}}},
        }
    )
    assert check_config(cfg) == []


@pytest.mark.parametrize(
    ("speaker", "key"),
    [
        ({"languages": ["Mandarin"]}, "speaker.languages"),
        ({"languages": []}, "speaker.languages"),
        ({"languages": ["zh-cmn", "zh-cmn"]}, "speaker.languages"),
        ({"volume": 1.5}, "speaker.volume"),
        ({"volume_windows": [{"start": "22:00", "end": "06:00"}]}, "speaker.volume_windows.0.volume"),
        ({"priority": ["speeding"]}, "speaker.priority.0"),
        ({"backend": "alsa"}, "speaker.backend"),
        ({"channels": 6}, "speaker.channels"),
        ({"cooldown": 3}, "speaker.cooldown"),
    ],
)
def test_bad_speaker_config_names_the_key(speaker: dict, key: str) -> None:
    from edge.config import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_config({"speaker": speaker})
    assert any(p.startswith(f"{key}:") for p in e.value.problems), e.value.problems


def test_cli_test_lights_reports_on_off_times(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(yaml.safe_dump({"lights": {"enabled": True, "gpio": {"pin_factory": "mock"}}}))
    res = CliRunner().invoke(cli_test_lights, ["--config", str(cfg), "--on-time", "0.1"])
    assert res.exit_code == 0, res.output
    assert "laser: gpio GPIO17 active_high: on in" in res.output and "held 0.1" in res.output
    assert "strobe: gpio GPIO27 active_high" in res.output


def test_cli_test_lights_over_rs485_reports_the_frames(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"lights": {"backend": "rs485", "rs485": {"port": "loop://", "baud": 19200, "parity": "E"}}}
        )
    )
    res = CliRunner().invoke(
        cli_test_lights, ["--config", str(cfg), "--on-time", "0.05", "--output", "strobe"]
    )
    assert res.exit_code == 0, res.output
    assert "note: lights.enabled is false" in res.output
    assert (
        "strobe: rs485 loop:// 19200 8E1 on=a0 02 01 a3 off=a0 02 00 a2: on in" in res.output
        and "laser:" not in res.output
    )


def test_cli_test_lights_fails_clearly_without_gpio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gpiozero

    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(gpiozero.Device, "pin_factory", None)
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"lights": {"enabled": True, "backend": "rs485", "rs485": {"port": str(tmp_path / "ttyUSB0")}}}
        )
    )
    res = CliRunner().invoke(cli_test_lights, ["--config", str(cfg)])
    assert res.exit_code == 1
    assert "DOWN light.laser: lights.rs485.port: cannot open" in res.output


def test_cli_test_speaker_plays_through_portaudio(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    capture = tmp_path / "capture.raw"
    (home / ".asoundrc").write_text(
        f'pcm.!default {{ type plug; slave {{ pcm {{ type file; slave.pcm "null"; file "{capture}"; format "raw" }}; format S16_LE; rate 16000; channels 1 }} }}\n'
    )
    env = {**os.environ, "HOME": str(home)}
    # the click command itself, in a child process (PortAudio reads ~/.asoundrc when it initialises)
    run = "from edge.cli.actuators import test_speaker; test_speaker(prog_name='anqi-edge test-speaker')"
    cmd = [sys.executable, "-c", run, "--lang", "zh-yue", "--message", "wrong_way"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (
        "device: 'default' (16000 Hz, 1 ch)" in res.stdout
        and "played wrong_way (zh-yue): 2.12 s of audio" in res.stdout
    )
    expected = load_wav(project_home() / "audio_prompts" / "zh-yue" / "wrong_way.wav", 16000)
    assert capture.stat().st_size >= 2 * len(expected)
    empty = tmp_path / "empty"
    empty.mkdir()
    res = subprocess.run(cmd, env={**env, "HOME": str(empty)}, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "speaker DOWN: speaker.device: no default output device" in res.stderr


def test_site_recordings_are_imported_into_a_pack_that_validates(tmp_path: Path) -> None:
    """A site's own recordings (any rate, stereo, silence around them) become a usable dialect pack."""
    rec = tmp_path / "recordings"
    rec.mkdir()
    rate = 44100
    t = np.arange(int(0.5 * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype(np.int16)
    padded = np.concatenate([np.zeros(int(0.4 * rate), np.int16), tone, np.zeros(int(0.6 * rate), np.int16)])
    for m in MESSAGES:
        wavfile.write(rec / f"{m}.wav", rate, np.stack([padded, padded], axis=1))
    script = project_home() / "scripts" / "make_prompts.py"
    res = subprocess.run(
        [
            sys.executable,
            str(script),
            "--import",
            str(rec),
            "--lang",
            "wuu-huzhou",
            "--out",
            str(tmp_path / "packs"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path / "packs" / "wuu-huzhou" / "no_helmet.wav"
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert 0.6 <= w.getnframes() / 16000 <= 0.8  # 0.5 s of speech, silence trimmed, 0.2 s padding
    cfg = parse_config(
        {"speaker": {"languages": ["zh-cmn", "wuu-huzhou"], "prompts_dir": str(tmp_path / "packs")}}
    )
    assert check_config(cfg) == []
    (tmp_path / "packs" / "wuu-huzhou" / "generic.wav").unlink()
    assert check_config(cfg) == [
        f"speaker.languages.1: wuu-huzhou: missing {tmp_path / 'packs' / 'wuu-huzhou' / 'generic.wav'}"
    ]
