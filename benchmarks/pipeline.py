#!/usr/bin/env python3
"""The full edge daemon on a 1080p25 clip: real-time and max mode, against the peer.

The clip is made at run time (never committed) by upscaling ../shared/video/bikelane-cyclists.mp4
to 1920x1080 at 25 fps, H.264, a keyframe every 2 s, like a camera's main stream
(``anqi_tools.testclips.make_test_clip``). Each mode runs in its own child process (so peak RSS and
CPU are the daemon's own), with the site config ``config/examples/bikelane-cyclists.yaml`` (its
calibration is rescaled to the frame size), the real models, a real local mosquitto, and the
speaker playing through PortAudio into an ALSA ``file`` PCM (an ``.asoundrc`` in the child's HOME):

* ``realtime``: the daemon in ``live`` mode on the file paced at 25 fps, as a camera delivers it:
  capture never waits for detection; detection samples at ``source.detect_fps``.
* ``max``: the daemon in ``until_eof`` mode, the file as fast as it decodes, detection on every frame
  (``detect_fps`` = 25) so the frames/s compare with the peer, which runs its model on every frame.
* ``peer``: PyPI ``helmet-detector`` 2.1.0's own video command on the same clip (needs the
  ``[train]`` environment ``.train/``: torch + ultralytics; skipped with the reason otherwise).

Prints one table and, last, one JSON line with the keys ``input_fps``, ``dropped_frames``,
``detect_fps``, ``prompt_latency_p50_s``, ``prompt_latency_p95_s``, ``peak_rss_mb``,
``ringbuffer_mb_7s``, ``peer_fps``, ``speedup_vs_peer`` (real-time figures unless named).

    .venv/bin/python benchmarks/pipeline.py                 # ~3-5 min on 2 cores
    .venv/bin/python benchmarks/pipeline.py --skip-peer --loops 2
    ANQI_BENCH_LOG=/tmp/bench ANQI_BENCH_LOG_LEVEL=INFO .venv/bin/python benchmarks/pipeline.py   # + the daemons' logs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from prompt_latency import ASOUNDRC  # noqa: E402  (ALSA default -> file PCM into a null sink)

CONFIG = ROOT / "config" / "examples" / "bikelane-cyclists.yaml"
TRAIN_PY = ROOT / ".train" / "bin" / "python"
PEER = ROOT / "benchmarks" / "peer" / "run_helmet_detect.py"


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    import numpy as np

    return float(np.percentile(np.asarray(xs, dtype=float), q))


# ----------------------------------------------------------------------------- child side
def child(mode: str, clip: Path, work: Path, settle_s: float, overrides: dict[str, str]) -> dict[str, Any]:
    import yaml

    from anqi_contract.logs import setup_logging
    from edge.config import parse_config
    from edge.daemon import EdgeDaemon

    setup_logging(os.environ.get("ANQI_BENCH_LOG_LEVEL", "WARNING"), sys.stderr)
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["device"]["data_dir"] = str(work / "data")
    data["source"]["uri"] = str(clip)
    data["source"]["realtime"] = mode == "realtime"
    if mode == "max":
        data["source"]["detect_fps"] = 25
    for dotted, value in overrides.items():  # --set section.key=value (YAML value)
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    cfg = parse_config(data, CONFIG.name, CONFIG.parent)
    daemon = EdgeDaemon(
        cfg, mode="live" if mode == "realtime" else "until_eof", install_signals=False, relay_wait_s=30
    )

    capture_end: list[float] = []

    def watch_capture() -> None:
        while daemon.stats.frames == 0 or daemon._threads[0].is_alive():  # noqa: SLF001 (benchmark)
            time.sleep(0.02)
        capture_end.append(time.monotonic())
        if mode == "realtime":
            time.sleep(settle_s)
            daemon.stop()

    # a live daemon keeps running after its file ends: watch_capture stops it once capture has
    # finished and the last violation's clip (post_s) and event have had time to be committed
    threading.Thread(target=watch_capture, daemon=True).start()

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    stats = daemon.run()
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    src, buf, summary = daemon.source.stats, daemon.buffer.stats, stats.summary()
    capture_wall = (
        capture_end[0] if capture_end else (stats.ended_mono or time.monotonic())
    ) - stats.started_mono
    return {
        "mode": mode,
        "frames": stats.frames,
        "capture_s": round(capture_wall, 2),
        "input_fps": round(stats.frames / capture_wall, 2) if capture_wall > 0 else 0.0,
        "realtime_lag_max_s": round(src.realtime_lag_max_s, 3),
        "corrupt_skipped": src.corrupt_skipped,
        "buffer_frames": buf.frames,
        "buffer_dropped": buf.groups_dropped_for_bytes,
        "buffer_unusable_packets": buf.packets_unusable,
        "detect_skipped": daemon.live_queue.dropped if daemon.live_queue is not None else 0,
        "detect_frames": stats.detect_frames,
        "detect_fps": round(stats.detect_fps, 2),
        "detect_rate_fps": round(stats.detect_frames / capture_wall, 2) if capture_wall > 0 else 0.0,
        "violations": summary["violations"],
        "events_committed": summary["events_committed"],
        "relay_published": summary["relay_published"],
        "prompt_latencies_s": summary["prompt_latencies_s"],
        "prompt_waited_for_speaker": summary["prompt_waited_for_speaker"],
        "decide_latencies_s": [round(v.decide_latency_s, 3) for v in stats.violations],
        "outbox_latencies_s": summary["outbox_latencies_s"],
        "cpu_pct": round(100 * ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) / wall, 1),
        "peak_rss_mb": round(ru1.ru_maxrss / 1024, 1),
        "wall_s": round(wall, 2),
    }


# ----------------------------------------------------------------------------- parent side
def split_prompts(r: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(latencies of prompts requested while the speaker was free, of those queued behind another prompt)."""
    lat, waited = r.get("prompt_latencies_s", []), r.get("prompt_waited_for_speaker", [])
    return [x for x, w in zip(lat, waited, strict=False) if not w], [
        x for x, w in zip(lat, waited, strict=False) if w
    ]


def run_child(mode: str, clip: Path, settle_s: float, sets: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"anqi-bench-{mode}-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        (home / ".asoundrc").write_text(ASOUNDRC.format(capture=Path(tmp) / "speaker.raw"))
        env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            mode,
            "--clip",
            str(clip),
            "--work",
            tmp,
            "--settle",
            str(settle_s),
        ] + [a for kv in sets for a in ("--set", kv)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        if os.environ.get(
            "ANQI_BENCH_LOG"
        ):  # the daemon's own log lines (ANQI_BENCH_LOG_LEVEL=INFO for every event)
            Path(os.environ["ANQI_BENCH_LOG"]).with_suffix(f".{mode}.log").write_text(res.stderr)
        if res.returncode != 0:
            sys.stderr.write(res.stderr[-4000:])
            raise SystemExit(f"{mode} run failed with exit code {res.returncode}")
        return json.loads(res.stdout.strip().splitlines()[-1])


def run_peer(clip: Path) -> dict[str, Any]:
    if not TRAIN_PY.exists():
        return {
            "skipped": f"no [train] environment at {TRAIN_PY.parent.parent} (torch + ultralytics + helmet-detector)"
        }
    with tempfile.TemporaryDirectory(prefix="anqi-bench-peer-") as tmp:
        env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        res = subprocess.run(
            [str(TRAIN_PY), str(PEER), str(clip), str(Path(tmp) / "out")],
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if res.returncode != 0:
            return {
                "skipped": f"peer failed (exit {res.returncode}): {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ''}"
            }
        return json.loads(res.stdout.strip().splitlines()[-1])


def ringbuffer_mb_7s(clip: Path) -> float:
    """Largest number of bytes the encoded stream needs for any 7 s window, from the keyframe before it."""
    import av

    sizes: list[tuple[float, int, bool]] = []
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        for p in c.demux(s):
            if p.size and p.pts is not None:
                sizes.append((float(p.pts * s.time_base), p.size, bool(p.is_keyframe)))
    sizes.sort()
    best, keys = 0, [i for i, (_, _, k) in enumerate(sizes) if k]
    for i, (t, _, _) in enumerate(sizes):
        start = max([k for k in keys if sizes[k][0] <= max(0.0, t - 7.0)] or [0])
        best = max(best, sum(sz for _, sz, _ in sizes[start : i + 1]))
    return round(best / 2**20, 2)


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--loops", type=int, default=1, help="Play the source clip this many times in a row (longer run)."
    )
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--modes", nargs="+", default=["realtime", "max"], choices=["realtime", "max"])
    ap.add_argument(
        "--settle", type=float, default=4.0, help="Seconds a live run keeps going after its file ends."
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a config key for every mode, e.g. --set detect.input_width=640.",
    )
    ap.add_argument("--child", choices=["realtime", "max"], help=argparse.SUPPRESS)
    ap.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        overrides = dict(kv.split("=", 1) for kv in args.set)
        print(json.dumps(child(args.child, args.clip, args.work, args.settle, overrides)))
        return

    from anqi_tools.testclips import make_test_clip

    t = time.monotonic()
    clip = make_test_clip(width=1920, height=1080, fps=25, gop=50, loops=args.loops)
    print(f"clip: {clip} (made/cached in {time.monotonic() - t:.1f} s)", file=sys.stderr)
    results = {m: run_child(m, clip, args.settle, args.set) for m in args.modes}
    peer = {"skipped": "--skip-peer"} if args.skip_peer else run_peer(clip)
    rb = ringbuffer_mb_7s(clip)

    rows = [
        ("input fps sustained", "input_fps"),
        ("frames in", "frames"),
        ("capture lag max (s)", "realtime_lag_max_s"),
        ("frames dropped by capture", "corrupt_skipped"),
        ("frames dropped by ring buffer", "buffer_dropped"),
        ("sampled frames skipped by detection", "detect_skipped"),
        ("detection fps (model throughput)", "detect_fps"),
        ("frames detected per second", "detect_rate_fps"),
        ("violations", "violations"),
        ("events in outbox", "events_committed"),
        ("events relayed (PUBACK)", "relay_published"),
        ("CPU %", "cpu_pct"),
        ("peak RSS (MB)", "peak_rss_mb"),
        ("wall (s)", "wall_s"),
    ]
    modes = list(results)
    print(f"\n{'':38}" + "".join(f"{m:>16}" for m in modes) + f"{'peer':>16}")
    for label, key in rows:
        peer_v = {
            "input_fps": peer.get("fps"),
            "frames": peer.get("frames"),
            "detect_fps": peer.get("fps"),
            "wall_s": peer.get("seconds"),
            "violations": peer.get("no_helmet_tracks"),
        }.get(key)
        print(
            f"{label:38}" + "".join(f"{fmt(results[m].get(key)):>16}" for m in modes) + f"{fmt(peer_v):>16}"
        )
    for m in modes:
        r = results[m]
        print(
            f"{m}: violation->prompt start p50 {fmt(percentile(r['prompt_latencies_s'], 50))} s, p95 {fmt(percentile(r['prompt_latencies_s'], 95))} s"
            f" (n={len(r['prompt_latencies_s'])}); frame->decision p95 {fmt(percentile(r['decide_latencies_s'], 95))} s;"
            f" decision->outbox p50 {fmt(percentile(r['outbox_latencies_s'], 50))} s (includes the post_s clip tail)"
        )
        idle, waited = split_prompts(r)
        print(
            f"{m}: prompts to an idle speaker: p50 {fmt(percentile(idle, 50))} s, p95 {fmt(percentile(idle, 95))} s (n={len(idle)});"
            f" asked for while another rider's prompt played (speaker.barge_in cuts that one: at once for the same message,"
            f" after its first clause for another; without barge-in they wait for its end + speaker.cooldown_global_s): {waited}"
        )
    print(f"ring buffer for 7 s of this 1080p25 stream: {rb} MB")
    if "skipped" in peer:
        print(f"peer: skipped: {peer['skipped']}")
    else:
        print(
            f"peer helmet-detector: {peer['frames']} frames in {peer['seconds']} s = {peer['fps']} fps; "
            f"no-helmet tracks {peer['no_helmet_tracks']}, verified {peer['no_helmet_verified']}"
        )

    rt = results.get("realtime", {})
    mx = results.get("max", {})
    peer_fps = peer.get("fps")
    print(
        json.dumps(
            {
                "input_fps": rt.get("input_fps"),
                "dropped_frames": (rt.get("corrupt_skipped", 0) + rt.get("buffer_dropped", 0))
                if rt
                else None,
                "detect_fps": rt.get("detect_fps"),
                "prompt_latency_p50_s": percentile(rt.get("prompt_latencies_s", []), 50),
                "prompt_latency_p95_s": percentile(rt.get("prompt_latencies_s", []), 95),
                "prompt_latency_idle_speaker_p95_s": percentile(split_prompts(rt)[0], 95) if rt else None,
                "prompts_queued_behind_another": len(split_prompts(rt)[1]) if rt else None,
                "peak_rss_mb": max((r["peak_rss_mb"] for r in results.values()), default=None),
                "ringbuffer_mb_7s": rb,
                "max_input_fps": mx.get("input_fps"),
                "peer_fps": peer_fps,
                "speedup_vs_peer": round(mx["input_fps"] / peer_fps, 2) if mx and peer_fps else None,
            }
        )
    )


if __name__ == "__main__":
    main()
