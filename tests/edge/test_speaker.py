"""Speaker: real prompts through PortAudio into an ALSA ``file`` PCM (slave ``null``), in a child process.

Each test writes an ``.asoundrc`` into a temporary HOME that routes ``default`` through ``plug``
(fixed S16_LE / 16 kHz / mono) into a ``file`` PCM that appends to one capture file (each prompt
opens its own stream, and a plain file would be truncated at every open), runs ``python -m edge.actuators.drill`` there
(PortAudio reads the ALSA config when it initialises) and checks the captured samples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.io import wavfile
from scipy.signal import correlate

from anqi_contract.paths import audio_prompts_dir
from edge.actuators.prompts import load_wav

RATE = 16000
#: PortAudio pre-fills the ALSA buffer with up to this much silence before the first callback's data
PREFILL = int(0.15 * RATE)  # speaker.latency "high": about 0.1 s
ASOUNDRC = """
pcm.!default {{
  type plug
  slave {{ pcm "anqi_capture"; format S16_LE; rate {rate}; channels 1 }}
}}
pcm.anqi_capture {{
  type file
  slave.pcm "null"
  file "|cat >> {capture}"
  format "raw"
}}
"""


def alsa_home(tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "home"
    home.mkdir()
    capture = tmp_path / "capture.raw"
    (home / ".asoundrc").write_text(ASOUNDRC.format(rate=RATE, capture=capture))
    return home, capture


def drill(
    home: Path,
    cfg: dict,
    script: list,
    tmp_path: Path,
    at: str | None = None,
    close_after: float | None = None,
) -> dict:
    cfg_path = tmp_path / "edge.yaml"
    cfg.setdefault("device", {})["data_dir"] = str(tmp_path / "data")
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "edge.actuators.drill",
        "--config",
        str(cfg_path),
        "--script",
        json.dumps(script),
        "--out",
        str(out),
        "--log-level",
        "INFO",
    ]
    if at:
        cmd += ["--at", at]
    if close_after is not None:
        cmd += ["--close-after", str(close_after)]
    env = {**os.environ, "HOME": str(home)}
    env.pop("ALSA_CONFIG_PATH", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    report["log"] = proc.stderr
    return report


def captured(capture: Path) -> np.ndarray:
    return np.fromfile(capture, dtype="<i2").astype(np.float32) / 32768.0


def best_match(haystack: np.ndarray, needle: np.ndarray) -> tuple[float, int]:
    """(normalised cross-correlation peak, lag) of ``needle`` inside ``haystack``."""
    c = correlate(haystack, needle, mode="valid", method="fft")
    lag = int(np.argmax(c))
    seg = haystack[lag : lag + len(needle)]
    return float(c[lag] / (np.linalg.norm(seg) * np.linalg.norm(needle) + 1e-12)), lag


def tone_pack(
    root: Path, lang: str, freqs: dict[str, float], rate: int = 22050, stereo: bool = True, dur: float = 0.5
) -> None:
    """A prompt pack of short tones, written the way an installer might: 22.05 kHz stereo."""
    (root / lang).mkdir(parents=True)
    t = np.arange(int(dur * rate)) / rate
    for message, f in freqs.items():
        x = (0.6 * np.sin(2 * np.pi * f * t) * 32767).astype(np.int16)
        wavfile.write(root / lang / f"{message}.wav", rate, np.stack([x, x], axis=1) if stereo else x)


TONES = {"no_helmet": 440.0, "wrong_way": 550.0, "red_light": 660.0, "generic": 770.0}


def test_shipped_mandarin_prompt_reaches_the_alsa_device_sample_for_sample(tmp_path: Path) -> None:
    home, capture = alsa_home(tmp_path)
    report = drill(
        home,
        {"speaker": {"languages": ["zh-cmn"]}, "time_switch": {"enabled": False}},
        [[0.0, "no_helmet", 7]],
        tmp_path,
    )

    [played] = report["played"]
    assert (played["message"], played["track_id"], played["languages"]) == ("no_helmet", 7, ["zh-cmn"])
    expected = load_wav(audio_prompts_dir() / "zh-cmn" / "no_helmet.wav", RATE)
    got = captured(capture)
    assert len(expected) <= len(got) < len(expected) + RATE // 2
    ncc, lag = best_match(got, expected)
    assert ncc > 0.99 and 0 <= lag <= PREFILL
    # the measured start includes the pre-filled silence, give or take one ALSA period (PortAudio's
    # reported output latency, used where the sink reports no DAC time, is about a period short)
    assert played["latency_s"] >= lag / RATE - 0.03
    assert (
        played["end_s"] - played["start_s"] >= len(expected) / RATE - 0.01
    )  # held for the prompt's duration
    assert report["latencies_s"] == [played["latency_s"]] and 0 <= played["latency_s"] < 1.5
    assert report["health"]["speaker"]["status"] == "up"


def test_language_sequence_plays_mandarin_then_dialect_with_a_gap(tmp_path: Path) -> None:
    home, capture = alsa_home(tmp_path)
    cfg = {"speaker": {"languages": ["zh-cmn", "zh-yue"], "gap_s": 0.25}, "time_switch": {"enabled": False}}
    report = drill(home, cfg, [[0.0, "wrong_way", 1]], tmp_path)

    assert report["played"][0]["languages"] == ["zh-cmn", "zh-yue"]
    cmn = load_wav(audio_prompts_dir() / "zh-cmn" / "wrong_way.wav", RATE)
    yue = load_wav(audio_prompts_dir() / "zh-yue" / "wrong_way.wav", RATE)
    got = captured(capture)
    ncc_cmn, lag_cmn = best_match(got, cmn)
    ncc_yue, lag_yue = best_match(got, yue)
    assert ncc_cmn > 0.99 and ncc_yue > 0.99
    assert lag_cmn <= PREFILL and lag_yue - lag_cmn == len(cmn) + int(0.25 * RATE)


def test_cooldowns_priority_and_no_overlap(tmp_path: Path) -> None:
    home, capture = alsa_home(tmp_path)
    tone_pack(tmp_path / "packs", "xx-test", TONES, dur=1.0)  # 1 s prompts: wide margins on a busy machine
    cfg = {
        "speaker": {
            "languages": ["xx-test"],
            "prompts_dir": str(tmp_path / "packs"),
            "cooldown_track_s": 30,
            "cooldown_global_s": 0.3,
            "max_delay_s": 3,
            "barge_in": False,
        },
        "time_switch": {"enabled": False},
    }
    script = [
        [0.0, "no_helmet", 1],  # played at once
        [0.05, "no_helmet", 5],  # same message, playing, in its first half: rider 5 hears it
        [0.1, "red_light", 1],  # same rider: dropped (track cooldown)
        [0.1, "wrong_way", 2],  # waits while 1 plays ...
        [0.15, "red_light", 3],  # ... and is out-ranked by red_light: coalesced into it
        [2.0, "no_helmet", 2],  # (red_light plays 1.3-2.3 s) rider 2 heard the coalesced prompt: dropped
        [2.0, "wrong_way", 5],  # rider 5 heard rider 1's prompt: dropped
        [2.0, "passenger", 4],  # played after red_light: no passenger.wav in the pack, so generic.wav
    ]
    report = drill(home, cfg, script, tmp_path)

    played = report["played"]
    assert [(p["message"], p["track_id"]) for p in played] == [
        ("no_helmet", 1),
        ("red_light", 3),
        ("passenger", 4),
    ]
    assert played[1]["coalesced"] == [2]
    # the first found the speaker free; red_light (asked at 0.15 s) and passenger (2.0 s) waited for the one before
    assert [p["waited_for_speaker"] for p in played] == [False, True, True]
    for a, b in zip(played, played[1:], strict=False):
        assert b["start_s"] >= a["end_s"] + 0.3 - 0.02, "prompts overlap or ignore the global cooldown"
    log = report["log"]
    assert log.count("reason=track_cooldown") == 3 and "msg=prompt_coalesced into_track=3" in log
    assert "msg=prompt_coalesced reason=hearing_it into_track=1 violation=no_helmet tracks=5" in log
    # the device got exactly the three prompts, back to back
    got = captured(capture)
    tone = {m: load_wav(tmp_path / "packs" / "xx-test" / f"{m}.wav", RATE) for m in TONES}
    assert 3 * len(tone["generic"]) <= len(got) <= 3 * (len(tone["generic"]) + PREFILL) + RATE // 10
    offset = 0
    for message in ("no_helmet", "red_light", "generic"):
        ncc, lag = best_match(got[offset : offset + len(tone[message]) + PREFILL + RATE // 20], tone[message])
        assert ncc > 0.98, message
        offset += lag + len(tone[message])


def test_first_clause_end_is_the_first_pause_after_a_second_of_sound() -> None:
    from edge.actuators.prompts import first_clause_end_s

    shipped = load_wav(audio_prompts_dir() / "zh-cmn" / "no_helmet.wav", RATE)  # 请戴好安全头盔，安全骑行。
    assert 1.8 <= first_clause_end_s(shipped, RATE) <= 2.1 < len(shipped) / RATE - 1.0
    t = np.arange(RATE) / RATE
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    gap = np.zeros(RATE // 4, dtype=np.float32)
    short = np.zeros(RATE // 20, dtype=np.float32)  # 50 ms: a breath inside the clause, not its end
    assert first_clause_end_s(np.concatenate([gap, tone, short, tone, gap, tone]), RATE) == pytest.approx(
        2.3, abs=0.03
    )
    assert first_clause_end_s(
        np.concatenate([tone[: RATE // 2], gap, tone, gap, tone]), RATE
    ) == pytest.approx(1.75, abs=0.03)
    assert first_clause_end_s(np.concatenate([tone, tone]), RATE) == 2.0  # no pause: the whole prompt
    assert first_clause_end_s(np.zeros(RATE, dtype=np.float32), RATE) == 1.0


def test_another_riders_prompt_cuts_in_after_the_first_clause(tmp_path: Path) -> None:
    """speaker.barge_in: a request while another rider's prompt plays starts as soon as that prompt said its first
    clause (at once when it already has), with no cooldown silence; a pause-less prompt is never cut."""
    home, _ = alsa_home(tmp_path)
    rate = 16000
    (tmp_path / "packs" / "xx-test").mkdir(parents=True)
    t = np.arange(int(1.2 * rate)) / rate
    for message, f in TONES.items():  # "clause" 1.2 s, pause 0.3 s, "clause" 1.0 s: cut at 1.2 s (+ margin)
        x = 0.6 * np.sin(2 * np.pi * f * t)
        pcm = np.concatenate([x, np.zeros(int(0.3 * rate)), x[:rate]])
        wavfile.write(tmp_path / "packs" / "xx-test" / f"{message}.wav", rate, (pcm * 32767).astype(np.int16))
    cfg = {
        "speaker": {
            "languages": ["xx-test"],
            "prompts_dir": str(tmp_path / "packs"),
            "cooldown_global_s": 2.0,
            "max_delay_s": 3,
        },
        "time_switch": {"enabled": False},
    }
    script = [
        [0.0, "no_helmet", 1],  # plays
        [0.3, "wrong_way", 2],  # another rider, another message: waits for rider 1's first clause only
        [2.6, "no_helmet", 3],  # wrong_way is past its first clause: cut at once
        [3.0, "red_light", 4],  # no_helmet for rider 3 began 0.4 s ago: waits for its first clause
    ]
    report = drill(home, cfg, script, tmp_path)
    played = report["played"]
    assert [(p["message"], p["track_id"], p["cut"]) for p in played] == [
        ("no_helmet", 1, True),
        ("wrong_way", 2, True),
        ("no_helmet", 3, True),
        ("red_light", 4, False),
    ]
    first, second, third, fourth = played
    assert 1.2 <= first["end_s"] < 1.9 and second["start_s"] < first["end_s"] + 0.5  # no 2 s cooldown
    assert second["latency_s"] < 1.9  # asked at 0.3 s, started after rider 1's first clause
    assert (
        third["latency_s"] < 0.6 and second["end_s"] < 3.2
    )  # cut at once, long before wrong_way's 2.5 s end
    assert fourth["start_s"] >= third["start_s"] + 1.2  # rider 3 heard the first clause
    assert all(p["waited_for_speaker"] for p in played[1:])
    log = report["log"]
    assert "msg=prompt_cut reason=barge_in track_id=1 for_track=2" in log and log.count("msg=prompt_cut") == 3
    assert report["outcomes"]["cut"] == 3 and report["outcomes"]["played"] == 4


def test_a_rider_joins_the_same_prompt_only_while_its_first_clause_is_still_ahead(tmp_path: Path) -> None:
    """With barge-in a rider joins a playing prompt of the same message only in the first half of its first clause
    (still hearing the instruction's key words); later, the prompt starts again at once for that rider."""
    home, _ = alsa_home(tmp_path)
    rate = 16000
    (tmp_path / "packs" / "xx-test").mkdir(parents=True)
    t = np.arange(int(1.2 * rate)) / rate
    for message, f in TONES.items():  # first clause 1.2 s: joining until 0.6 s
        x = 0.6 * np.sin(2 * np.pi * f * t)
        wavfile.write(
            tmp_path / "packs" / "xx-test" / f"{message}.wav",
            rate,
            (np.concatenate([x, np.zeros(int(0.3 * rate)), x]) * 32767).astype(np.int16),
        )
    cfg = {
        "speaker": {"languages": ["xx-test"], "prompts_dir": str(tmp_path / "packs")},
        "time_switch": {"enabled": False},
    }
    report = drill(home, cfg, [[0.0, "no_helmet", 1], [0.2, "no_helmet", 2], [0.9, "no_helmet", 3]], tmp_path)
    assert [(p["track_id"], p["cut"]) for p in report["played"]] == [(1, True), (3, False)]
    assert "msg=prompt_coalesced reason=hearing_it into_track=1 violation=no_helmet tracks=2" in report["log"]
    assert (
        report["played"][1]["start_s"] < 1.2 and report["played"][1]["latency_s"] < 0.6
    )  # at once, not after the clause


def test_stale_requests_are_dropped_not_played_late(tmp_path: Path) -> None:
    home, capture = alsa_home(tmp_path)
    tone_pack(
        tmp_path / "packs", "xx-test", TONES, dur=1.5
    )  # rider 2 would start 1.8 s late: 0.8 s beyond max_delay_s
    cfg = {
        "speaker": {
            "languages": ["xx-test"],
            "prompts_dir": str(tmp_path / "packs"),
            "cooldown_global_s": 0.5,
            "max_delay_s": 1.0,
        },
        "time_switch": {"enabled": False},
    }
    report = drill(
        home, cfg, [[0.0, "no_helmet", 1], [0.2, "wrong_way", 2]], tmp_path
    )  # another message: it must wait
    assert [p["track_id"] for p in report["played"]] == [1]
    assert "reason=stale track_id=2" in report["log"]
    assert report["outcomes"] == {"played": 1, "dropped.stale": 1}


def test_close_cuts_the_prompt_in_progress_short(tmp_path: Path) -> None:
    home, _ = alsa_home(tmp_path)
    cfg = {"speaker": {"languages": ["zh-cmn", "zh-yue"]}, "time_switch": {"enabled": False}}
    report = drill(home, cfg, [[0.0, "no_helmet", 1], [0.1, "red_light", 2]], tmp_path, close_after=0.6)
    assert report["close_s"] < 1.0  # not the 6.9 s the prompt lasts
    [played] = report["played"]
    assert played["end_s"] < 1.6
    assert "reason=closing" in report["log"] and "tracks=2" in report["log"]
    # (the null PCM takes samples as fast as they come, so the capture file cannot show the cut)


def test_night_volume_window_scales_the_samples(tmp_path: Path) -> None:
    home, capture = alsa_home(tmp_path)
    tone_pack(tmp_path / "packs", "xx-test", TONES, stereo=False, rate=16000)
    cfg = {
        "device": {"timezone": "Asia/Shanghai"},
        "speaker": {
            "languages": ["xx-test"],
            "prompts_dir": str(tmp_path / "packs"),
            "volume": 1.0,
            "volume_windows": [{"start": "22:00", "end": "06:00", "volume": 0.25}],
        },
        "time_switch": {"windows": [{"start": "00:00", "end": "00:00"}]},
    }
    report = drill(home, cfg, [[0.0, "no_helmet", 1]], tmp_path, at="2026-05-01T23:30:00+08:00")
    assert report["played"][0]["volume"] == 0.25
    got = captured(capture)
    ref = load_wav(tmp_path / "packs" / "xx-test" / "no_helmet.wav", RATE)
    _, lag = best_match(got, ref)
    gain = float(np.dot(got[lag : lag + len(ref)], ref) / np.dot(ref, ref))
    assert gain == pytest.approx(0.25, abs=0.01)


def test_outside_the_time_window_nothing_is_played(tmp_path: Path) -> None:
    home, capture = alsa_home(tmp_path)
    cfg = {
        "device": {"timezone": "Asia/Shanghai"},
        "time_switch": {"windows": [{"start": "07:00", "end": "20:00"}]},
    }
    report = drill(home, cfg, [[0.0, "no_helmet", 1]], tmp_path, at="2026-05-01T21:00:00+08:00")
    assert report["played"] == [] and "msg=persuasion_quiet" in report["log"]
    assert not capture.exists() or capture.stat().st_size == 0
    assert (
        report["health"]["speaker"]["status"] == "up" and report["health"]["time_switch"]["active"] is False
    )


def test_speaker_comes_back_when_the_device_appears(tmp_path: Path) -> None:
    """No device at start: health down, the prompt dropped; the device appears; the next prompt re-opens it."""
    home = tmp_path / "home"
    home.mkdir()
    capture = tmp_path / "capture.raw"
    cfg_path = tmp_path / "edge.yaml"
    speaker = {"retry_s": 0.5, "languages": ["zh-yue"]}
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "speaker": speaker,
                "time_switch": {"enabled": False},
                "device": {"data_dir": str(tmp_path / "d")},
            }
        )
    )
    out = tmp_path / "report.json"
    script = json.dumps([[0.0, "no_helmet", 1], [2.0, "wrong_way", 2]])
    cmd = [
        sys.executable,
        "-m",
        "edge.actuators.drill",
        "--config",
        str(cfg_path),
        "--script",
        script,
        "--out",
        str(out),
        "--log-level",
        "INFO",
    ]
    proc = subprocess.Popen(cmd, env={**os.environ, "HOME": str(home)}, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    log = []
    for line in proc.stderr:  # plug the "USB speaker" in once the daemon has said it has none
        log.append(line)
        if "msg=speaker_unavailable" in line:
            (home / ".asoundrc").write_text(ASOUNDRC.format(rate=RATE, capture=capture))
            break
    _, rest = proc.communicate(timeout=90)
    log.append(rest)
    assert proc.returncode == 0, "".join(log)
    report = json.loads(out.read_text())
    assert [p["track_id"] for p in report["played"]] == [2]
    text = "".join(log)
    assert "reason=speaker_down tracks=1" in text and "msg=speaker_ready" in text
    assert report["health"]["speaker"]["status"] == "up"
    ncc, _ = best_match(captured(capture), load_wav(audio_prompts_dir() / "zh-yue" / "wrong_way.wav", RATE))
    assert ncc > 0.99


@pytest.mark.parametrize(
    ("asoundrc", "device", "detail"),
    [
        (None, None, "no default output device"),
        (True, "no-such-speaker", "no output device 'no-such-speaker'"),
    ],
)
def test_missing_audio_device_marks_speaker_down_and_never_raises(
    tmp_path: Path, asoundrc: bool | None, device: str | None, detail: str
) -> None:
    if asoundrc:
        home, _ = alsa_home(tmp_path)
    else:
        home = tmp_path / "empty-home"
        home.mkdir()
    cfg = {"speaker": {"device": device}, "time_switch": {"enabled": False}}
    report = drill(home, cfg, [[0.0, "no_helmet", 1]], tmp_path)
    assert report["played"] == []
    speaker = report["health"]["speaker"]
    assert (
        speaker["status"] == "down" and detail in speaker["detail"] and "speaker.device" in speaker["detail"]
    )
    assert "msg=speaker_unavailable" in report["log"]
