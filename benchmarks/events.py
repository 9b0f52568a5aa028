#!/usr/bin/env python3
"""Event-level truth: the daemon's whole pipeline over annotated videos, its events matched to the truth.

For each video with a truth file beside it (``<clip>.truth.yaml``, see ``anqi_tools/eventtruth.py``),
played forwards and backwards (the reversed clip is made at run time with ffmpeg, never committed),
in two modes, each run in its own child process with the ``anqi-edge replay`` machinery
(``EdgeDaemon(mode="replay")``, the real models, the site config):

* ``realtime``: the file paced at its frame rate as a camera delivers it (``source.realtime``): capture
  never waits for detection, a detection that cannot keep up skips frames;
* ``max``: as fast as it decodes, every sampled frame detected.

Per video, direction and mode it prints the events (true, missed, duplicated, false, decided outside
the capture band, face not the violator's, true no_helmet without a face), each event with the rider
it was matched to, and the tracks per true rider (confirmed tracks whose head follows that rider,
and tracks that follow nobody). The last line is JSON.

    .venv/bin/python benchmarks/events.py                      # the shared clip, both directions and modes (~1 min)
    .venv/bin/python benchmarks/events.py --modes max --directions backwards
    .venv/bin/python benchmarks/events.py --config config/examples/uncalibrated.yaml
    .venv/bin/python benchmarks/events.py --set rules.wrong_way.enabled=false
    .venv/bin/python benchmarks/events.py --size 1920x1080   # each clip upscaled to 1080p25 first (a camera's
                                                             # main stream: real-time detection skips frames)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# this checkout's code, in this process and in each child (run as a script, the script's folder comes first
# on sys.path and an installed anqi, e.g. another checkout's editable install, would be measured instead)
sys.path.insert(0, str(ROOT))

from anqi_tools.eventtruth import VideoTruth, load_truth, match_events, positions_file, who  # noqa: E402

CONFIG = ROOT / "config" / "examples" / "bikelane-cyclists.yaml"
VIDEOS = [ROOT.parent / "shared" / "video" / "bikelane-cyclists.mp4"]


def truth_beside(video: Path) -> Path:
    return video.with_name(video.stem + ".truth.yaml")


def upscaled(clip: Path, size: str, tmp: Path) -> Path:
    """``clip`` as a camera's 1080p25-like stream (anqi_tools.testclips.make_test_clip: same timeline)."""
    from anqi_tools.testclips import make_test_clip

    w, h = (int(v) for v in size.lower().split("x"))
    return make_test_clip(tmp / f"{clip.stem}-{w}x{h}.mp4", source=clip, width=w, height=h, fps=25)


def rescaled(events: list[dict[str, Any]], factor: float) -> list[dict[str, Any]]:
    """Events whose boxes (detail.rider_box / head_box / face_box) are scaled by ``factor`` (to the
    pixels of the video the truth was drawn on)."""
    if factor == 1.0:
        return events
    out = []
    for e in events:
        d = dict(e.get("detail") or {})
        for k in ("rider_box", "head_box", "face_box"):
            if d.get(k):
                d[k] = ",".join(f"{float(v) * factor:.1f}" for v in str(d[k]).split(","))
        out.append({**e, "detail": d})
    return out


def reverse_clip(video: Path, out: Path) -> Path:
    """The clip played backwards (every frame, same rate), H.264 with a keyframe every second."""
    import cv2

    fps = cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FPS) or 25.0
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(video), "-vf", "reverse", "-an"]
        + ["-c:v", "libx264", "-crf", "18", "-g", str(round(fps)), "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )
    return out


# ----------------------------------------------------------------------------- child side
def child(mode: str, clip: Path, config: Path, work: Path, overrides: dict[str, str]) -> dict[str, Any]:
    import yaml

    from anqi_contract.logs import setup_logging
    from edge.config import parse_config
    from edge.daemon import EdgeDaemon

    setup_logging(os.environ.get("ANQI_BENCH_LOG_LEVEL", "WARNING"), sys.stderr)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["source"]["uri"] = str(clip)
    data["source"]["realtime"] = mode == "realtime"
    data.setdefault("speaker", {})["enabled"] = False  # events, not sound, are measured here
    for dotted, value in overrides.items():  # --set section.key=value (YAML value)
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    cfg = parse_config(data, config.name, config.parent)
    daemon = EdgeDaemon(cfg, mode="replay", out_dir=work, install_signals=False)
    # instrumentation: every confirmed track's judged head per detection frame (tracks per rider)
    seen: dict[int, list[tuple[float, float, float, float]]] = {}
    update = daemon.tracker.update

    def recording_update(*a: Any, **kw: Any) -> Any:
        upd = update(*a, **kw)
        for t in upd.active:
            p = t.last
            hb = p.head_box
            if hb is None:  # the top of the rider box
                h = p.box[3] - p.box[1]
                head = ((p.box[0] + p.box[2]) / 2, p.box[1] + h / 12, h / 6)
            else:
                head = ((hb[0] + hb[2]) / 2, (hb[1] + hb[3]) / 2, hb[2] - hb[0])
            seen.setdefault(int(t.track_id), []).append((p.t_s, *head))  # type: ignore[arg-type]
        return upd

    daemon.tracker.update = recording_update  # type: ignore[method-assign]
    stats = daemon.run()
    events = sorted((json.loads(e.to_json()) for e in daemon.events), key=lambda e: e["detail"].get("t_s", 0))
    return {
        "mode": mode,
        "frames": stats.frames,
        "detect_frames": stats.detect_frames,
        "detect_skipped": daemon.live_queue.dropped if daemon.live_queue is not None else 0,
        "band": [cfg.zone.near_m, cfg.zone.far_m],
        "calibrated": cfg.zone.calibrated,
        "rules": [k for k in ("no_helmet", "wrong_way", "red_light") if getattr(cfg.rules, k).enabled],
        "events": events,
        "tracks": {str(k): v for k, v in seen.items()},
    }


# ----------------------------------------------------------------------------- parent side
def run_child(mode: str, clip: Path, config: Path, sets: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"anqi-events-{mode}-") as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--clip", str(clip)]
        cmd += ["--config", str(config), "--work", tmp] + [a for kv in sets for a in ("--set", kv)]
        res = subprocess.run(
            cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=1800
        )
        if os.environ.get("ANQI_BENCH_LOG"):
            Path(os.environ["ANQI_BENCH_LOG"]).with_suffix(f".{clip.stem}.{mode}.log").write_text(res.stderr)
        if res.returncode != 0:
            sys.stderr.write(res.stderr[-4000:])
            raise SystemExit(f"{mode} run on {clip.name} failed with exit code {res.returncode}")
        return json.loads(res.stdout.strip().splitlines()[-1])


def tracks_per_rider(tracks: dict[str, list[list[float]]], truth: VideoTruth) -> dict[str, Any]:
    """Each confirmed track goes to the rider most of its observed heads belong to (or to nobody)."""
    per: Counter[str] = Counter()
    nobody = 0
    for pts in tracks.values():
        votes = Counter(who(truth, p[0], (p[1], p[2], p[3])) for p in pts)
        rid, n = votes.most_common(1)[0]
        if rid is None or n < len(pts) / 2:
            nobody += 1
        else:
            per[rid] += 1
    riders = [r.id for r in truth.riders]
    followed = sum(per.values())
    return {
        "per_rider": {r: per.get(r, 0) for r in riders},
        "tracks_per_rider": round(followed / max(1, len([r for r in riders if per.get(r)])), 2),
        "riders_followed": len([r for r in riders if per.get(r)]),
        "tracks_of_nobody": nobody,
        "tracks": len(tracks),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=["realtime", "max"], help=argparse.SUPPRESS)
    ap.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--video", type=Path, action="append", help="annotated video (repeatable)")
    ap.add_argument("--config", type=Path, default=CONFIG, help="site config (default: the example's)")
    ap.add_argument("--modes", default="realtime,max")
    ap.add_argument("--directions", default="forwards,backwards")
    ap.add_argument("--set", action="append", default=[], help="config override section.key=value")
    ap.add_argument("--size", help="upscale each clip to WIDTHxHEIGHT at 25 fps first (e.g. 1920x1080)")
    args = ap.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    if args.child:
        print(json.dumps(child(args.child, args.clip, args.config.resolve(), args.work, overrides)))
        return

    videos = args.video or VIDEOS
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="anqi-events-") as tmp:
        for video in videos:
            tpath = truth_beside(video)
            if not tpath.is_file():
                print(f"{video.name}: no truth file {tpath.name} beside it, skipped")
                continue
            for direction in args.directions.split(","):
                backwards = direction == "backwards"
                truth = load_truth(tpath, positions_file(tpath), backwards=backwards)
                clip = reverse_clip(video, Path(tmp) / f"{video.stem}.backwards.mp4") if backwards else video
                factor = 1.0
                if args.size:
                    import cv2

                    native_w = cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_WIDTH)
                    clip = upscaled(clip, args.size, Path(tmp))
                    factor = float(native_w) / int(args.size.lower().split("x")[0])
                for mode in args.modes.split(","):
                    r = run_child(mode, clip, args.config, args.set)
                    band = (r["band"][0], r["band"][1]) if r["calibrated"] else (0.0, float("inf"))
                    score = match_events(rescaled(r["events"], factor), truth, band, set(r["rules"]))
                    tracks = {
                        k: [[p[0], p[1] * factor, p[2] * factor, p[3] * factor] for p in v]
                        for k, v in r["tracks"].items()
                    }
                    tr = tracks_per_rider(tracks, truth)
                    results.append(
                        {
                            "video": video.name + (f"@{args.size}" if args.size else ""),
                            "direction": direction,
                            "mode": mode,
                            **score.row(),
                            "missed_which": score.missed_which,
                            "perfect": score.perfect,
                            **tr,
                            "detect_frames": r["detect_frames"],
                            "detect_skipped": r["detect_skipped"],
                            "events": [
                                {
                                    "type": m.event.type,
                                    "rider": m.rider,
                                    "verdict": m.verdict,
                                    "t_s": round(m.event.t_s, 2),
                                    "distance_m": m.event.distance_m,
                                    "face": m.face_verdict,
                                }
                                for m in score.events
                            ],
                        }
                    )
                    print_run(results[-1])
    print()
    hdr = f"{'video':<24} {'direction':<10} {'mode':<9} true missed dup false out_band wrong_face no_face  tracks/rider (nobody)"
    print(hdr)
    for x in results:
        print(
            f"{x['video']:<24} {x['direction']:<10} {x['mode']:<9} {x['true']:>4} {x['missed']:>6} {x['duplicated']:>3} "
            f"{x['false']:>5} {x['outside_band']:>8} {x['wrong_face']:>10} {x['no_face']:>7}  "
            f"{x['tracks_per_rider']:>5} ({x['tracks_of_nobody']})"
        )
    if not results:
        print("no annotated video was run (a truth file must sit beside each video)")
    # no run is no evidence: all_perfect needs at least one run
    print(json.dumps({"runs": results, "all_perfect": bool(results) and all(x["perfect"] for x in results)}))


def print_run(x: dict[str, Any]) -> None:
    print(
        f"{x['video']} {x['direction']} {x['mode']}: {x['detect_frames']} frames detected, "
        f"{x['detect_skipped']} skipped; tracks {x['per_rider']} + {x['tracks_of_nobody']} of nobody"
    )
    for e in x["events"]:
        print(
            f"  {e['t_s']:5.2f} s  {e['type']:<10} {str(e['rider']):<15} {e['verdict']:<10} "
            f"{e['distance_m']} m  face: {e['face']}"
        )
    for m in x["missed_which"]:
        print(f"  missed: {m}")


if __name__ == "__main__":
    main()
