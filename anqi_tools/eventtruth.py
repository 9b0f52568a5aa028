"""Event-level ground truth of a video and the matching of an appliance's events to it.

A truth file (``../shared/video/<clip>.truth.yaml``) names every rider who passes, the seconds in which
the rider is visible, helmet or not, and the events a correct appliance reports for the clip as it is
(``expected.as_is``) and played backwards (``expected.played_backwards``). To tell *which* rider an
event is about, each rider also needs where its head is: ``head_track``, a list of
``[t_s, cx, cy, width]`` key points (head centre and width in the video's pixels, by eye), either in
the truth file itself or in a side file ``<clip stem>.positions.yaml`` (``riders: {<id>: {head_track:
[...]}}``) beside the truth file or, for the shared clip's truth file, in ``anqi_tools/demo/``.
Between key points the head moves linearly.

An event is the violator it names: the rider whose head, at the event's deciding time, is nearest the
head the appliance judged (``detail.head_box``, else the top of ``detail.rider_box``), within a gate of
a few head widths. Then per type:

* true: the first event of an expected (type, rider);
* duplicated: a further event of the same (type, rider);
* false: an event of a type the rider should not get, or one no rider is near;
* missed: an expected (type, rider) with no event;
* outside band: an event whose ``zone_distance_m`` lies outside the capture band;
* wrong face: an event whose face (``detail.face_box`` at ``detail.face_t_s``) is not at the
  violator's head; no face: a true no_helmet event without a face.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

GATE_HEAD_WIDTHS = (
    1.2  #: an event's head is this rider's when its centre is within this many of the rider's head widths ...
)
GATE_MIN_PX = 16.0  #: ... or this many pixels (small far heads: key points by eye are a few px off)


@dataclass(frozen=True)
class TruthRider:
    id: str
    helmet: bool
    visible_s: tuple[float, float]
    head_track: tuple[tuple[float, float, float, float], ...] = ()  #: (t_s, cx, cy, width)

    def head_at(self, t_s: float) -> tuple[float, float, float] | None:
        """(cx, cy, width) of the head at ``t_s``, linear between key points; None outside them."""
        k = self.head_track
        if not k or t_s < k[0][0] - 1e-6 or t_s > k[-1][0] + 1e-6:
            return None
        for a, b in zip(k, k[1:], strict=False):
            if a[0] - 1e-6 <= t_s <= b[0] + 1e-6:
                f = 0.0 if b[0] == a[0] else (t_s - a[0]) / (b[0] - a[0])
                return tuple(a[i] + f * (b[i] - a[i]) for i in (1, 2, 3))  # type: ignore[return-value]
        return k[0][1], k[0][2], k[0][3]


@dataclass(frozen=True)
class VideoTruth:
    video: str
    fps: float
    frames: int
    riders: tuple[TruthRider, ...]
    expected: dict[str, list[str]]  #: violation type -> rider ids
    backwards: bool = False

    @property
    def duration_s(self) -> float:
        return (self.frames - 1) / self.fps

    def rider(self, rider_id: str) -> TruthRider:
        return next(r for r in self.riders if r.id == rider_id)

    def played_backwards(self, expected_backwards: dict[str, list[str]]) -> VideoTruth:
        """The same riders on the reversed clip: frame i becomes frame frames-1-i."""
        d = self.duration_s
        riders = tuple(
            TruthRider(
                r.id,
                r.helmet,
                (max(0.0, d - r.visible_s[1]), d - r.visible_s[0]),
                tuple((d - t, x, y, w) for t, x, y, w in reversed(r.head_track)),
            )
            for r in self.riders
        )
        return VideoTruth(self.video, self.fps, self.frames, riders, expected_backwards, not self.backwards)


def _read_yaml_lenient(path: Path) -> Any:
    """YAML, forgiving one habit of hand-written truth files: a plain value with ``": "`` inside
    (``lane: riders approach (legal direction: towards the camera)``), which YAML reads as a second
    mapping; such values are quoted and the file read again."""
    text = path.read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        fixed = []
        for line in text.splitlines():
            m = re.match(r"^(\s*[\w-]+):\s+([^\"'\[{#|>].*: .*)$", line)
            fixed.append(f"{m.group(1)}: {json.dumps(m.group(2))}" if m else line)
        return yaml.safe_load("\n".join(fixed))


def load_truth(path: Path, positions: Path | None = None, backwards: bool = False) -> VideoTruth:
    """Read a truth file (and its head positions); ``backwards``: the truth of the reversed clip."""
    data = _read_yaml_lenient(Path(path))
    pos: dict[str, Any] = {}
    if positions is not None and Path(positions).is_file():
        pos = (yaml.safe_load(Path(positions).read_text(encoding="utf-8")) or {}).get("riders", {}) or {}
    riders = []
    for r in data["riders"]:
        track = r.get("head_track") or (pos.get(r["id"]) or {}).get("head_track") or []
        riders.append(
            TruthRider(
                str(r["id"]),
                bool(r.get("helmet", True)),
                (float(r["visible_s"][0]), float(r["visible_s"][1])),
                tuple(sorted((float(a), float(b), float(c), float(e)) for a, b, c, e in track)),
            )
        )
    exp = data.get("expected", {})

    def types(block: dict[str, Any] | None) -> dict[str, list[str]]:
        return {str(k): [str(x) for x in (v or [])] for k, v in (block or {}).items()}

    truth = VideoTruth(
        str(data.get("video", Path(path).name)),
        float(data["fps"]),
        int(data["frames"]),
        tuple(riders),
        types(exp.get("as_is")),
    )
    return truth.played_backwards(types(exp.get("played_backwards"))) if backwards else truth


def positions_file(truth_path: Path) -> Path:
    """Where the head positions of a truth file's riders are: beside it, else in ``anqi_tools/demo/``."""
    stem = Path(truth_path).name.removesuffix(".truth.yaml")
    beside = Path(truth_path).with_name(f"{stem}.positions.yaml")
    return beside if beside.is_file() else Path(__file__).resolve().parent / "demo" / f"{stem}.positions.yaml"


def truth_beside(video: Path) -> Path | None:
    """The truth file that sits beside a video (``<stem>.truth.yaml``), if any."""
    p = Path(video).with_name(Path(video).stem + ".truth.yaml")
    return p if p.is_file() else None


def _box(value: Any) -> tuple[float, float, float, float] | None:
    if not value:
        return None
    parts = [float(v) for v in str(value).split(",")]
    return (parts[0], parts[1], parts[2], parts[3]) if len(parts) == 4 else None


@dataclass
class EventView:
    """What matching reads of one event (event JSON, ``detail`` as the edge writes it)."""

    event_id: str
    type: str
    t_s: float
    distance_m: float | None
    head: tuple[float, float, float] | None  #: judged head (cx, cy, width)
    face_found: bool
    face: tuple[float, float, float] | None  #: face (cx, cy, width) at face_t_s
    face_t_s: float | None

    @classmethod
    def of(cls, ev: dict[str, Any]) -> EventView:
        d = ev.get("detail") or {}
        head = None
        hb, rb = _box(d.get("head_box")), _box(d.get("rider_box"))
        if hb is not None:
            head = ((hb[0] + hb[2]) / 2, (hb[1] + hb[3]) / 2, hb[2] - hb[0])
        elif rb is not None:  # the top of the rider box: a head is about a sixth of a rider's height
            h = rb[3] - rb[1]
            head = ((rb[0] + rb[2]) / 2, rb[1] + h / 12, h / 6)
        fb = _box(d.get("face_box"))
        face = None if fb is None else ((fb[0] + fb[2]) / 2, (fb[1] + fb[3]) / 2, fb[2] - fb[0])
        face_t = d.get("face_t_s")
        return cls(
            str(ev.get("event_id")),
            str(ev.get("violation_type")),
            float(d.get("t_s", 0.0)),
            ev.get("zone_distance_m"),
            head,
            bool((ev.get("face") or {}).get("found")),
            face,
            None if face_t is None else float(face_t),
        )


def who(truth: VideoTruth, t_s: float, head: tuple[float, float, float] | None) -> str | None:
    """The rider whose head is nearest ``head`` at ``t_s`` and within the gate; None if nobody's is."""
    if head is None:
        return None
    best, best_d = None, float("inf")
    for r in truth.riders:
        at = r.head_at(t_s)
        if at is None:
            continue
        d = ((at[0] - head[0]) ** 2 + (at[1] - head[1]) ** 2) ** 0.5
        gate = max(GATE_MIN_PX, GATE_HEAD_WIDTHS * at[2])
        if d <= gate and d < best_d:
            best, best_d = r.id, d
    return best


@dataclass
class Matched:
    event: EventView
    rider: str | None
    verdict: str  #: true | duplicated | false
    outside_band: bool
    face_verdict: str  #: right | wrong | none | n/a


@dataclass
class Score:
    true: int = 0
    missed: int = 0
    duplicated: int = 0
    false: int = 0
    outside_band: int = 0
    wrong_face: int = 0
    no_face: int = 0
    events: list[Matched] = field(default_factory=list)
    missed_which: list[str] = field(default_factory=list)

    def row(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in ("true", "missed", "duplicated", "false", "outside_band", "wrong_face", "no_face")
        }

    @property
    def perfect(self) -> bool:
        r = self.row()
        return r["missed"] == r["duplicated"] == r["false"] == r["outside_band"] == r["wrong_face"] == 0


def match_events(
    events: list[dict[str, Any]],
    truth: VideoTruth,
    band: tuple[float, float] = (15.0, 25.0),
    rules: set[str] | None = None,
) -> Score:
    """Score ``events`` (event JSON dicts, any order) against ``truth``; ``rules``: the violation types
    the run judged (expected events of other types are not counted as missed)."""
    views = sorted((EventView.of(e) for e in events), key=lambda v: v.t_s)
    expected = {
        (typ, rid) for typ, ids in truth.expected.items() for rid in ids if rules is None or typ in rules
    }
    seen: set[tuple[str, str]] = set()
    s = Score()
    for v in views:
        rid = who(truth, v.t_s, v.head)
        if rid is None or (v.type, rid) not in expected:
            verdict = "false"
        elif (v.type, rid) in seen:
            verdict = "duplicated"
        else:
            verdict = "true"
            seen.add((v.type, rid))
        outside = v.distance_m is not None and not (band[0] - 0.05 <= float(v.distance_m) <= band[1] + 0.05)
        if not v.face_found:
            face = "none"
        elif rid is None or v.face is None or v.face_t_s is None:
            face = "wrong" if rid is None else "n/a"
        else:
            face = "right" if who(truth, v.face_t_s, v.face) == rid else "wrong"
        setattr(s, verdict, getattr(s, verdict) + 1)
        s.outside_band += outside
        s.wrong_face += face == "wrong"
        s.no_face += verdict == "true" and v.type == "no_helmet" and face == "none"
        s.events.append(Matched(v, rid, verdict, outside, face))
    s.missed_which = sorted(f"{typ}:{rid}" for typ, rid in expected - seen)
    s.missed = len(s.missed_which)
    return s


def report(score: Score, truth: VideoTruth, title: str) -> list[str]:
    """The event-level result as lines of text (what ``anqi-edge run --until-eof`` and ``replay`` print
    when a truth file sits beside the video)."""
    r = score.row()
    lines = [
        f"{title}: {r['true']} true, {r['missed']} missed, {r['duplicated']} duplicated, {r['false']} false, "
        f"{r['outside_band']} decided outside the band, {r['wrong_face']} with another person's face, "
        f"{r['no_face']} true no_helmet without a face"
    ]
    for m in score.events:
        lines.append(
            f"  {m.event.t_s:6.2f} s  {m.event.type:<10} {m.rider or '(nobody)':<16} {m.verdict:<10} face: {m.face_verdict}"
        )
    lines += [f"  missed: {w}" for w in score.missed_which]
    return lines
