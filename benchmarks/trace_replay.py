"""Per-frame trace of a replay through the whole pipeline (the daemon in replay mode, as
``anqi-edge replay`` runs it): what the detector returned on each detected frame, and the tracks and
their helmet votes the rules saw. Made to tell where two machines (x86 and arm64 under emulation)
part: record on both, diff, and play one machine's detections through the other's tracker and rules.

    .venv/bin/python benchmarks/trace_replay.py record CLIP --config C --trace T.json
    .venv/bin/python benchmarks/trace_replay.py play T.json --config C   # recorded detections, no models
    .venv/bin/python benchmarks/trace_replay.py play T.json --config C --jitter 3   # scores moved by noise (sd 0.01)
    .venv/bin/python benchmarks/trace_replay.py play R.json --config C --truth anqi_tools/demo/bikelane-cyclists.truth.yaml \
        --backwards   # R recorded on a reversed copy: matched to the truth played backwards
    .venv/bin/python benchmarks/trace_replay.py diff A.json B.json       # detections and tracks, per frame
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

# this checkout's code (run as a script, an installed anqi, e.g. another checkout's editable install, would
# be imported instead)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.detect.rider import FrameDetections  # noqa: E402

FIELDS = ("riders", "rider_scores", "heads", "head_scores", "head_no_helmet")


def _dets_json(d: FrameDetections) -> dict[str, Any]:
    return {f: np.asarray(getattr(d, f), np.float32).tolist() for f in FIELDS}


def _dets_from(j: dict[str, Any]) -> FrameDetections:
    boxes = {"riders", "heads"}
    return FrameDetections(
        **{f: np.asarray(j[f], np.float32).reshape((-1, 4) if f in boxes else (-1,)) for f in FIELDS}
    )


def _track_json(t: Any) -> dict[str, Any]:
    p = t.last
    r = lambda v: None if v is None else round(float(v), 3)  # noqa: E731
    return {
        "id": t.track_id,
        "kind": t.kind,
        "hits": t.hits,
        "box": [round(v, 1) for v in p.box],
        "head": None if p.head_box is None else [round(v, 1) for v in p.head_box],
        "in_zone": p.in_zone,
        "dist": r(p.distance_m),
        "nh": r(p.no_helmet),
        "matched": t.matched_now,
    }


def _jittered(d: FrameDetections, rng: np.random.Generator, score_sd: float = 0.01) -> FrameDetections:
    """``d`` as another machine's kernels might have returned it: every score moved by a little noise
    (sd ``score_sd``), boxes by a fraction of a pixel; heads that fall below the detector's head_conf
    (0.3) are gone, as they would be there."""
    n_r, n_h = len(d.riders), len(d.heads)
    hs = d.head_scores + rng.normal(0, score_sd, n_h).astype(np.float32)
    keep = hs >= 0.3
    return FrameDetections(
        d.riders + rng.normal(0, 0.5, (n_r, 4)).astype(np.float32),
        d.rider_scores + rng.normal(0, score_sd, n_r).astype(np.float32),
        (d.heads + rng.normal(0, 0.5, (n_h, 4)).astype(np.float32))[keep],
        hs[keep],
        np.clip(d.head_no_helmet + rng.normal(0, score_sd, n_h).astype(np.float32), 0, 1)[keep],
    )


def _run(
    clip: Path,
    config: Path,
    frames: list[dict[str, Any]],
    play: list[dict[str, Any]] | None,
    jitter: np.random.Generator | None = None,
    truth: Path | None = None,
    backwards: bool = False,
) -> list[str]:
    """The daemon in replay mode over ``clip``; fills ``frames`` (one dict per detected frame). With
    ``play``, the recorded detections instead of the models' (``jitter``: moved a little, see
    :func:`_jittered`)."""
    import edge.detect.rider as rider_mod
    from edge.config import load_config
    from edge.daemon import EdgeDaemon
    from edge.rules import RuleSet

    real_from_config = rider_mod.RiderDetector.from_config
    queue = list(play or [])

    class Recorder:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def detect(self, image: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> FrameDetections:
            md5 = hashlib.md5(np.ascontiguousarray(image).tobytes()).hexdigest()
            if play is not None:
                rec = queue.pop(0)
                if rec["md5"] != md5:
                    print(f"trace: frame {len(frames)} decoded differently here (md5)", file=sys.stderr)
                dets = _dets_from(rec["dets"])
                if jitter is not None:
                    dets = _jittered(dets, jitter)
            else:
                dets = self.inner.detect(image, roi=roi)
            frames.append({"md5": md5, "dets": _dets_json(dets)})
            return dets

    def from_config(d: Any, face: Any) -> Any:
        return Recorder(None if play is not None else real_from_config(d, face))

    real_check = RuleSet.check

    def check(self: RuleSet, tracks: Any) -> Any:
        out = real_check(self, tracks)
        if frames:
            frames[-1]["tracks"] = [_track_json(t) for t in tracks if t.track_id is not None]
            frames[-1]["violations"] = [f"{v.type.value} t{v.track_id}" for v in out]
        return out

    rider_mod.RiderDetector.from_config = from_config  # type: ignore[method-assign]
    RuleSet.check = check  # type: ignore[method-assign]
    cfg = load_config(config)
    with tempfile.TemporaryDirectory() as out:
        daemon = EdgeDaemon(cfg, mode="replay", source_uri=str(clip.resolve()), out_dir=Path(out))
        daemon.run()
        from edge.cli.pipeline import _print_truth

        # against <clip>.truth.yaml beside the clip, when there is one, or the --truth file
        _print_truth(daemon, truth, backwards)
        events = [
            f"{e['violation_type']} track {e['track_id']} t {e['detail'].get('t_s')} s "
            f"at {e.get('zone_distance_m')} m"
            for e in (json.loads(p.read_text()) for p in sorted((Path(out) / "events").glob("*.json")))
        ]
    return sorted(events)


def _match(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int, float]]:
    """Greedy IoU pairs (i, j, iou) of two box sets."""
    from edge.track.tracker import iou_matrix

    if len(a) == 0 or len(b) == 0:
        return []
    m = iou_matrix(a, b)
    pairs = []
    while m.size and m.max() > 0.3:
        i, j = np.unravel_index(int(m.argmax()), m.shape)
        pairs.append((int(i), int(j), float(m[i, j])))
        m[i, :] = -1
        m[:, j] = -1
    return pairs


def _fmt(d: FrameDetections, boxes: str, scores: str, i: int) -> str:
    return f"{[round(float(v)) for v in getattr(d, boxes)[i]]} s={float(getattr(d, scores)[i]):.3f}"


def diff(a: dict[str, Any], b: dict[str, Any]) -> None:
    print("events A:", a["events"])
    print("events B:", b["events"])
    fa, fb = a["frames"], b["frames"]
    if len(fa) != len(fb):
        print(f"detected frames differ: {len(fa)} vs {len(fb)}")
    worst = {"rider_scores": 0.0, "head_scores": 0.0, "head_no_helmet": 0.0, "box_px": 0.0}
    for k, (x, y) in enumerate(zip(fa, fb, strict=False)):
        notes = []
        if x["md5"] != y["md5"]:
            notes.append("decoded image differs")
        dx, dy = _dets_from(x["dets"]), _dets_from(y["dets"])
        for boxes, scores, extra in (
            ("riders", "rider_scores", None),
            ("heads", "head_scores", "head_no_helmet"),
        ):
            ba, bb = getattr(dx, boxes), getattr(dy, boxes)
            pairs = _match(ba, bb)
            if len(ba) != len(bb) or len(pairs) != len(ba):
                lone_a = sorted(set(range(len(ba))) - {i for i, _, _ in pairs})
                lone_b = sorted(set(range(len(bb))) - {j for _, j, _ in pairs})
                notes.append(
                    f"{boxes} {len(ba)} vs {len(bb)}; only A: {[_fmt(dx, boxes, scores, i) for i in lone_a]}"
                    f" only B: {[_fmt(dy, boxes, scores, j) for j in lone_b]}"
                )
            for i, j, _ in pairs:
                worst["box_px"] = max(worst["box_px"], float(np.abs(ba[i] - bb[j]).max()))
                for f in (scores, extra) if extra else (scores,):
                    d = abs(float(getattr(dx, f)[i]) - float(getattr(dy, f)[j]))
                    worst[f] = max(worst[f], d)
                    if d > 0.05:
                        notes.append(f"{f} {float(getattr(dx, f)[i]):.3f} vs {float(getattr(dy, f)[j]):.3f}")
        ta = [(t["id"], t["in_zone"], t["nh"]) for t in x.get("tracks", [])]
        tb = [(t["id"], t["in_zone"], t["nh"]) for t in y.get("tracks", [])]
        if [t[0] for t in ta] != [t[0] for t in tb]:
            notes.append(f"tracks A {ta} B {tb}")
        if x.get("violations") != y.get("violations"):
            notes.append(f"violations A {x.get('violations')} B {y.get('violations')}")
        if notes:
            print(f"detected frame {k}:")
            for n in notes:
                print("   ", n)
    print("largest difference of paired detections:", {k: round(v, 4) for k, v in worst.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("clip", type=Path)
    r.add_argument("--config", type=Path, required=True)
    r.add_argument("--trace", type=Path, required=True)
    p = sub.add_parser("play")
    for q in (r, p):
        q.add_argument(
            "--truth",
            type=Path,
            help="match the events to this truth file (default: <clip>.truth.yaml beside it)",
        )
        q.add_argument(
            "--backwards", action="store_true", help="the clip is the truth's video reversed (with --truth)"
        )
    p.add_argument("trace", type=Path)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--clip", type=Path, help="the clip (default: the one recorded)")
    p.add_argument("--save", type=Path, help="write this run's trace too")
    p.add_argument(
        "--jitter", type=int, metavar="SEED", help="move the recorded detections a little (seeded)"
    )
    d = sub.add_parser("diff")
    d.add_argument("a", type=Path)
    d.add_argument("b", type=Path)
    args = ap.parse_args()
    import platform

    if args.cmd == "diff":
        diff(json.loads(args.a.read_text()), json.loads(args.b.read_text()))
        return
    frames: list[dict[str, Any]] = []
    if args.cmd == "record":
        events = _run(args.clip, args.config, frames, None, None, args.truth, args.backwards)
        clip = args.clip
        out = args.trace
    else:
        rec = json.loads(args.trace.read_text())
        clip = args.clip or Path(rec["clip"])
        rng = None if args.jitter is None else np.random.default_rng(args.jitter)
        events = _run(clip, args.config, frames, rec["frames"], rng, args.truth, args.backwards)
        out = args.save
    print("events:", *events, sep="\n   ")
    if out is not None:
        out.write_text(
            json.dumps({"machine": platform.machine(), "clip": str(clip), "events": events, "frames": frames})
        )


if __name__ == "__main__":
    main()
