#!/usr/bin/env python3
"""Violation decision -> prompt start latency through the real PortAudio path (standard: within 1.5 s).

Two measurements, each in a child process whose HOME holds an ``.asoundrc`` routing ALSA's
``default`` into a ``file`` PCM (slave ``null``), so PortAudio, ALSA's plug conversion and the
speaker's worker all run for real without a sound card (``--real-device`` uses the machine's own
ALSA set-up instead). The file is a plain one (not a ``|cat >>`` pipe, whose fork inside a large
daemon process would add to the latency), so "audio s" is the last prompt's stream only:

* ``replay``: ``anqi-edge replay`` of the clip (default ../shared/video/bikelane-cyclists.mp4)
  through the whole pipeline with ``config/examples/bikelane-cyclists.yaml``; the latencies come
  from the daemon's ``prompt_played`` log lines. Few samples: only as many as the clip has riders.
  The daemon passes the capture time of the frame that showed the violation as ``decided_mono``,
  so ``latency_s`` includes detection lag (large in an unpaced replay on a busy machine);
  ``speaker_only`` is the ``on_violation`` call -> prompt start share.
* ``drill``: ``--n`` violations fed to ``Persuasion.on_violation`` one prompt apart while a thread
  decodes the same clip at camera pace (load), with the shipped prompts.
* ``crowd`` (on request): ``--n`` violations by different riders arriving at random (exponential
  gaps, mean ``--crowd-gap`` s, fixed seed) with the default cooldowns: how many riders get a
  prompt in time, how many are coalesced into another rider's prompt or dropped as stale.

Latency = ``decided_mono`` (the rule's decision) -> first callback of the prompt's output stream
plus PortAudio's own output delay estimate (see ``edge/actuators/audio.py``). Prints a table and a
final JSON line. Example::

    .venv/bin/python benchmarks/prompt_latency.py            # both
    .venv/bin/python benchmarks/prompt_latency.py --mode drill --n 20 --languages zh-cmn zh-yue
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT.parent / "shared" / "video" / "bikelane-cyclists.mp4"
REPLAY_CONFIG = ROOT / "config" / "examples" / "bikelane-cyclists.yaml"
TARGET_S = 1.5
ASOUNDRC = """pcm.!default {{
  type plug
  slave {{ pcm "anqi_bench"; format S16_LE; rate 48000; channels 2 }}
}}
pcm.anqi_bench {{
  type file
  slave.pcm "null"
  file "{capture}"
  format "raw"
}}
"""


def stats(xs: list[float]) -> dict[str, Any]:
    import numpy as np

    if not xs:
        return {"n": 0}
    a = np.asarray(xs)
    return {
        "n": len(xs),
        "p50_s": round(float(np.percentile(a, 50)), 4),
        "p95_s": round(float(np.percentile(a, 95)), 4),
        "max_s": round(float(a.max()), 4),
        "mean_s": round(float(a.mean()), 4),
    }


def child_env(tmp: Path, real_device: bool) -> tuple[dict[str, str], Path]:
    capture = tmp / "capture.raw"
    env = dict(os.environ)
    if not real_device:
        home = tmp / "home"
        home.mkdir(exist_ok=True)
        (home / ".asoundrc").write_text(ASOUNDRC.format(capture=capture))
        env["HOME"] = str(home)
        env.pop("ALSA_CONFIG_PATH", None)
    return env, capture


def run_replay(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    env, capture = child_env(tmp, args.real_device)
    cmd = [
        sys.executable,
        "-m",
        "edge.cli",
        "replay",
        str(args.video),
        "--config",
        str(args.config),
        "--out",
        str(tmp / "replay"),
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    out = proc.stdout + proc.stderr
    lat = [float(m) for m in re.findall(r"msg=prompt_played .*? latency_s=([0-9.eE+-]+)", out)]
    own = [float(m) for m in re.findall(r"msg=prompt_played .*? speaker_latency_s=([0-9.eE+-]+)", out)]
    res: dict[str, Any] = {
        "mode": "replay",
        "video": str(args.video),
        "config": str(args.config),
        "rc": proc.returncode,
        "wall_s": round(time.monotonic() - t0, 1),
        "violations": len(re.findall(r"msg=violation\b|msg=violation_decided", out)),
        "dropped": len(re.findall(r"msg=prompt_dropped", out)),
        "coalesced": len(re.findall(r"msg=prompt_coalesced", out)),
        "captured_s": round(capture.stat().st_size / 4 / 48000, 2) if capture.exists() else 0.0,
        **stats(lat),
        "speaker_only": stats(own),
    }
    if proc.returncode != 0:
        tail = [line for line in out.strip().splitlines() if line.strip()][-1:] or ["?"]
        res["error"] = tail[0][:300]
    return res


def load_thread(video: Path, stop: threading.Event, frames: list[int]) -> None:
    """Decode the clip at its own frame rate, over and over (what the capture thread does)."""
    import cv2

    while not stop.is_set():
        cap = cv2.VideoCapture(str(video))
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        t0 = time.monotonic()
        n = 0
        while not stop.is_set():
            ok, _ = cap.read()
            if not ok:
                break
            n += 1
            frames[0] += 1
            delay = t0 + n / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        cap.release()


def drill_child(args: argparse.Namespace) -> None:
    """In the child (ALSA already pointed at the file PCM): feed violations, print JSON."""
    from edge.actuators.persuasion import Persuasion
    from edge.actuators.prompts import PromptPacks
    from edge.config import parse_config
    from edge.health import Health

    speaker_cfg: dict[str, Any] = {"languages": args.languages}
    if args.cooldown >= 0:  # crowd without --cooldown: the shipped defaults (cooldowns, max_delay_s)
        speaker_cfg["cooldown_global_s"] = args.cooldown
    if args.no_barge_in:
        speaker_cfg["barge_in"] = False
    cfg = parse_config({"speaker": speaker_cfg, "time_switch": {"enabled": False}})
    health = Health(Path(tempfile.gettempdir()) / "bench-health.json", "bench")
    p = Persuasion.from_config(
        cfg.speaker,
        cfg.lights,
        cfg.time_switch,
        cfg.device.timezone,
        PromptPacks.for_site(cfg.speaker, cfg.rules, cfg.base_dir),
        health,
    )
    p.start()
    speaker = p.speaker
    if speaker.library is None or speaker.output is None:
        print(json.dumps({"error": str(health.snapshot()["components"].get("speaker"))}))
        return
    stop = threading.Event()
    frames = [0]
    loader = None
    if args.video.is_file():
        loader = threading.Thread(target=load_thread, args=(args.video, stop, frames), daemon=True)
        loader.start()
    kinds = args.crowd_types if args.crowd_gap else ["no_helmet", "wrong_way", "red_light", "passenger"]
    time.sleep(0.5)
    rng = random.Random(7)
    for i in range(args.n):
        kind = kinds[i % len(kinds)]
        prompt = speaker.library.for_violation(kind)
        p.on_violation(kind, 1000 + i, time.monotonic())
        if args.crowd_gap:
            time.sleep(rng.expovariate(1.0 / args.crowd_gap))
        else:
            time.sleep((prompt.duration_s if prompt else 1.0) + max(args.cooldown, 0.0) + 0.3)
    while not speaker.idle:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    p.close()
    print(
        json.dumps(
            {
                "latencies_s": p.latencies_s,
                "played": len(p.played),
                "outcomes": dict(speaker.outcomes),
                "device": speaker.output.device_name,
                "rate": speaker.output.rate,
                "channels": speaker.output.channels,
                "load_frames": frames[0],
            }
        )
    )


def run_drill(args: argparse.Namespace, tmp: Path, crowd: bool = False) -> dict[str, Any]:
    env, capture = child_env(tmp, args.real_device)
    cooldown = args.cooldown if args.cooldown is not None else (-1.0 if crowd else 0.5)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child-drill",
        "--n",
        str(args.n),
        "--cooldown",
        str(cooldown),
        "--video",
        str(args.video),
        "--languages",
        *args.languages,
        "--crowd-gap",
        str(args.crowd_gap if crowd else 0.0),
        "--crowd-types",
        *args.crowd_types,
    ] + (["--no-barge-in"] if args.no_barge_in else [])
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    rep: dict[str, Any] = (
        json.loads(lines[-1]) if lines else {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    )
    res: dict[str, Any] = {
        "mode": "crowd" if crowd else "drill",
        "languages": args.languages,
        "rc": proc.returncode,
        "wall_s": round(time.monotonic() - t0, 1),
        "requested": args.n,
        "played": rep.get("played", 0),
        "outcomes": rep.get("outcomes", {}),
        "device": rep.get("device"),
        "load_frames": rep.get("load_frames"),
        "captured_s": round(capture.stat().st_size / 4 / 48000, 2) if capture.exists() else 0.0,
        **stats(rep.get("latencies_s", [])),
    }
    if "error" in rep:
        res["error"] = rep["error"]
    return res


def note_for(r: dict[str, Any]) -> str:
    if not r.get("n"):
        return "no prompt played"
    return "meets 1.5 s" if r["p95_s"] <= TARGET_S else "ABOVE 1.5 s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--mode",
        choices=["replay", "drill", "crowd", "both", "all"],
        default="both",
        help="both = replay + drill; all = + crowd.",
    )
    ap.add_argument("--crowd-gap", type=float, default=2.0, help="crowd: mean seconds between violations.")
    ap.add_argument(
        "--crowd-types",
        nargs="+",
        default=["no_helmet", "no_helmet", "no_helmet", "wrong_way"],
        help="crowd: violation types, cycled.",
    )
    ap.add_argument("--video", type=Path, default=VIDEO)
    ap.add_argument("--config", type=Path, default=REPLAY_CONFIG, help="Site config for the replay.")
    ap.add_argument("--n", type=int, default=12, help="drill: violations (one prompt apart).")
    ap.add_argument("--languages", nargs="+", default=["zh-cmn"], help="drill: prompt packs.")
    ap.add_argument(
        "--cooldown",
        type=float,
        default=None,
        help="speaker.cooldown_global_s (drill default 0.5; crowd default: the config default).",
    )
    ap.add_argument(
        "--no-barge-in",
        action="store_true",
        help="speaker.barge_in: false (a prompt waits for the one playing to end).",
    )
    ap.add_argument(
        "--real-device",
        action="store_true",
        help="Use this machine's ALSA default device instead of the file PCM.",
    )
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--child-drill", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_drill:
        drill_child(args)
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="anqi-bench-") as t:
        modes = {"both": ["replay", "drill"], "all": ["replay", "drill", "crowd"]}.get(args.mode, [args.mode])
        for mode in modes:
            tmp = Path(t) / mode
            tmp.mkdir()
            results.append(
                run_replay(args, tmp) if mode == "replay" else run_drill(args, tmp, crowd=mode == "crowd")
            )
    print(f"{'mode':<8} {'n':>3} {'p50 s':>8} {'p95 s':>8} {'max s':>8} {'audio s':>8}  note")
    for r in results:
        if r["mode"] == "crowd" and "error" not in r:
            oc = r["outcomes"]
            dropped = sum(v for k, v in oc.items() if k.startswith("dropped"))
            note = (
                f"{r['requested']} riders: {oc.get('played', 0)} own prompt, {oc.get('coalesced', 0)} heard another's, {dropped} none; "
                + note_for(r)
            )
        elif r["mode"] == "replay" and "error" not in r and r.get("n"):
            so = r["speaker_only"]
            note = (
                f"from frame capture (daemon's decided_mono); on_violation -> start p50 {so['p50_s']:.3f} s max {so['max_s']:.3f} s; "
                + note_for(r)
            )
        else:
            note = r.get("error") or note_for(r)
        print(
            f"{r['mode']:<8} {r.get('n', 0):>3} {r.get('p50_s', float('nan')):>8.3f} {r.get('p95_s', float('nan')):>8.3f} "
            f"{r.get('max_s', float('nan')):>8.3f} {r.get('captured_s', 0):>8.2f}  {note}"
        )
    print(
        json.dumps(
            {
                "benchmark": "prompt_latency",
                "target_s": TARGET_S,
                "sink": "real ALSA default" if args.real_device else "ALSA file->null via PortAudio",
                "results": results,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
