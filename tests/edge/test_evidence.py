"""Face evidence on real faces (frames of the bike-lane clip, LFW photos) with the real YuNet and SFace
models, and the event assembled from it (files, SHA-256, embedding)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from evidence_helpers import head_track

from anqi_contract.event import ViolationType, parse_event
from edge.config.device import DeviceConfig
from edge.evidence import EventAssembler, FaceCapture, FaceQuality, frontalness
from edge.rules import Violation

SHARED = Path(__file__).resolve().parents[3] / "shared"
VIDEO = SHARED / "video" / "bikelane-cyclists.mp4"
LFW = SHARED / "faces" / "lfw-dev"
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)

# hand-placed head boxes of the bearded rider (frames 150-215 of the clip, 640x360)
HEADS = {150: (110, 40, 140, 75), 180: (115, 30, 150, 72), 200: (190, 20, 232, 75), 215: (310, 0, 372, 72)}


def _yunet():  # type: ignore[no-untyped-def]
    from anqi_contract.manifest import ModelFileError, resolve
    from edge.detect.faces import FaceDetector

    try:
        return FaceDetector(resolve("yunet")[1], 0.6, min_face_px=8)
    except ModelFileError as e:
        pytest.fail(f"YuNet model missing ({e}); run: anqi-edge models prepare")


def _sface():  # type: ignore[no-untyped-def]
    from anqi_contract.manifest import resolve
    from edge.detect.faces import FaceEmbedder

    return FaceEmbedder(resolve("sface")[1])


@pytest.fixture(scope="module")
def frames() -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(VIDEO))
    out = {}
    for i in range(max(HEADS) + 1):
        ok, f = cap.read()
        assert ok
        if i in HEADS:
            out[i] = f
    return out


def test_best_face_of_a_track_is_the_largest_sharpest_frontal_one(frames: dict[int, np.ndarray]) -> None:
    capture = FaceCapture(_yunet(), min_face_px=12, score_threshold=0.6)
    for i in sorted(HEADS):
        # the track as the tracker has it on frame i: every observation up to i, frame i's last
        track = head_track({k: hb for k, hb in HEADS.items() if k <= i})
        capture.offer(track, frames[i], i / 30, T0, heading_away=False)
    best = capture.best(3)
    assert best is not None
    assert capture.crops_run == len(HEADS)  # one crop per observation, never the whole frame
    # the face gets bigger as the rider approaches: the last frames give the best face
    assert best.t_s == pytest.approx(215 / 30) or best.t_s == pytest.approx(200 / 30)
    assert best.quality.size_px >= 30
    assert best.crop.shape[0] >= 30 and best.crop.shape[1] >= 25
    assert best.frame is not None and best.frame.shape == (360, 640, 3)
    # the face lies inside the head box it was searched in
    hb = HEADS[int(round(best.t_s * 30))]
    cx, cy = (best.box[0] + best.box[2]) / 2, (best.box[1] + best.box[3]) / 2
    assert hb[0] - 5 <= cx <= hb[2] + 5 and hb[1] - 5 <= cy <= hb[3] + 5


def test_a_face_nearer_another_head_is_not_the_tracks_face(frames: dict[int, np.ndarray]) -> None:
    """The search region around a head is generous, so it can hold the face of a rider just behind or beside:
    that face belongs to whichever head of the frame lies nearest it (the reversed demo clip once gave
    teal-jacket's wrong_way event the helmeted woman's face)."""
    beard = HEADS[200]
    # a loose head box of another rider just below the bearded rider's head (as on the reversed clip): his
    # face is inside its search region and within half a head of the box
    loose = (185.0, 52.0, 235.0, 102.0)
    alone = FaceCapture(_yunet(), min_face_px=12)
    alone.offer(head_track({200: loose}), frames[200], 200 / 30, T0, heads_seen=np.array([loose], np.float32))
    assert alone.best(3) is not None  # nobody else's head seen: the face is taken (the old behaviour)
    capture = FaceCapture(_yunet(), min_face_px=12)
    seen = np.array([loose, beard], np.float32)
    capture.offer(head_track({200: loose}), frames[200], 200 / 30, T0, heading_away=False, heads_seen=seen)
    assert capture.best(3) is None
    assert "other people's" in capture.no_face_reason(3)
    # the bearded rider's own track, with the same heads seen, keeps his face
    own = FaceCapture(_yunet(), min_face_px=12)
    own.offer(head_track({200: beard}), frames[200], 200 / 30, T0, heading_away=False, heads_seen=seen)
    best = own.best(3)
    assert best is not None
    cx, cy = (best.box[0] + best.box[2]) / 2, (best.box[1] + best.box[3]) / 2
    assert beard[0] <= cx <= beard[2] and beard[1] <= cy <= beard[3]
    # a second, tighter box on the same head (centre on the track's own box) is not another person: a track
    # whose head box sits high on the hair keeps its face
    hair = (188.0, 8.0, 234.0, 60.0)
    tight = (199.0, 33.0, 223.0, 63.0)
    same = FaceCapture(_yunet(), min_face_px=12)
    same.offer(
        head_track({200: hair}), frames[200], 200 / 30, T0, heads_seen=np.array([hair, tight], np.float32)
    )
    assert same.best(3) is not None


def test_no_face_reason_for_a_rider_seen_from_behind(frames: dict[int, np.ndarray]) -> None:
    capture = FaceCapture(_yunet())
    # a "head" on the empty road surface: nothing to find, and the track moves away
    track = head_track({150: (450, 300, 480, 330)})
    capture.offer(track, frames[150], 5.0, T0, heading_away=True)
    assert capture.best(3) is None
    assert capture.no_face_reason(3) == "rider seen from behind"
    assert FaceCapture(_yunet()).no_face_reason(99) == "rider never in view long enough for a face search"


def test_sharpness_and_size_rank_faces() -> None:
    img = cv2.imread(str(LFW / "Andre_Agassi" / "Andre_Agassi_0004.jpg"))
    assert img is not None
    face = img[47:113, 51:99]
    sharp = FaceQuality.measure(face, 66, None)
    blurred = FaceQuality.measure(cv2.GaussianBlur(face, (9, 9), 4), 66, None)
    small = FaceQuality.measure(face, 20, None)
    assert sharp.sharpness > 3 * blurred.sharpness
    assert sharp.score > blurred.score and sharp.score > small.score


@pytest.mark.parametrize(
    "landmarks, low, high",
    [
        ([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], 0.95, 1.0),  # symmetric: looking at the camera
        ([[30, 40], [50, 40], [58, 60], [35, 80], [50, 80]], 0.0, 0.3),  # nose beyond the eye: turned away
    ],
)
def test_frontalness_from_landmark_symmetry(landmarks: list, low: float, high: float) -> None:
    assert low <= frontalness(np.array(landmarks, float)) <= high


def test_frontal_lfw_faces_score_high_frontalness() -> None:
    det = _yunet()
    values = []
    for person in sorted(LFW.iterdir())[:10]:
        img = cv2.imread(str(sorted(person.glob("*.jpg"))[0]))
        faces = det.detect(img)
        big = max(faces, key=lambda f: f.width * f.height)
        values.append(frontalness(big.landmarks))
    assert np.median(values) > 0.6


def test_event_assembled_with_face_embedding_and_hashed_media(
    tmp_path: Path, frames: dict[int, np.ndarray]
) -> None:
    from edge.evidence.adapters import SFaceEmbedding

    capture = FaceCapture(_yunet(), min_face_px=12)
    track = head_track({215: HEADS[215]})
    capture.offer(track, frames[215], 215 / 30, T0, heading_away=False)
    face = capture.best(3)
    assert face is not None
    clip = tmp_path / "some.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))

    class _Clip:
        path = clip
        start_utc = T0
        end_utc = T0 + timedelta(seconds=7)
        complete = True
        note = ""

    v = Violation(
        ViolationType.no_helmet,
        3,
        7.1,
        100.0,
        T0 + timedelta(seconds=6),
        0.8,
        18.5,
        4.2,
        181.0,
        {"observations": 5},
    )
    asm = EventAssembler(DeviceConfig(), tmp_path / "work", SFaceEmbedding(_sface()))
    ev = asm.assemble(v, T0, face, None, _Clip())
    e = parse_event(ev.event.to_json())
    assert e.face.found and e.face.embedding_model == "sface" and (e.face.size_px or 0) >= 30
    emb = np.array(e.face.embedding)
    assert emb.shape == (128,) and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-6)
    assert {m.name: m.kind for m in e.media} == {
        "face.jpg": "face",
        "context.jpg": "context",
        "clip.mp4": "clip",
    }
    for m in e.media:
        data = ev.media[m.name].read_bytes()
        assert hashlib.sha256(data).hexdigest() == m.sha256 and len(data) == m.size
    jpg = cv2.imread(str(ev.media["face.jpg"]))
    assert jpg is not None and jpg.shape[0] >= 30
    assert e.clip_start == T0 and e.detail["observations"] == 5


def test_event_without_face_says_why(tmp_path: Path) -> None:
    v = Violation(ViolationType.wrong_way, 4, 2.0, 1.0, T0, 0.7, 20.0, 5.0, 0.0, {})
    ev = EventAssembler(DeviceConfig(), tmp_path).assemble(
        v, None, None, "rider seen from behind", None, "clip not written: OSError: disk full"
    )
    assert not ev.event.face.found and ev.event.face.reason == "rider seen from behind"
    assert ev.event.media == [] and ev.media == {}
    assert str(ev.event.detail["clip_note"]).startswith("clip not written")


def test_violation_frame_marks_the_rider_and_the_judged_head(
    tmp_path: Path, frames: dict[int, np.ndarray]
) -> None:
    from edge.evidence import ViolationFrame

    track = head_track({k: hb for k, hb in HEADS.items() if k <= 200})
    img = frames[200]
    before = img.copy()
    from edge.config import load_config
    from edge.zone import CaptureZone

    example = Path(__file__).resolve().parents[2] / "config" / "examples" / "bikelane-cyclists.yaml"
    band = CaptureZone.from_config(load_config(example).zone).band_edges(640, 360)
    vf = ViolationFrame.of(
        img, track, 200 / 30, "no_helmet", 3, 0.87, 21.04, T0 + timedelta(seconds=200 / 30), band
    )
    # the point of the deciding frame, not an earlier one
    assert vf.head_box == HEADS[200] and vf.box == track.history[-1].box
    assert (
        "no_helmet" in vf.label
        and "track 3" in vf.label
        and "21.0 m" in vf.label
        and "08:00:06.666 UTC" in vf.label
    )
    out = vf.render()
    assert np.array_equal(img, before), "the source frame is never drawn on"
    assert out.shape == img.shape
    x0, y0, x1, y1 = HEADS[200]
    # the head box edge is yellow (B low, G and R high), drawn where the frame was not
    edge = out[y0 + 20, x0].astype(int)
    assert edge[0] < 90 and edge[1] > 180 and edge[2] > 180, edge
    rx0 = int(round(vf.box[0]))
    red = out[y1 + 40, max(rx0, 0)].astype(int)
    assert red[2] > 180 and red[0] < 90 and red[1] < 90, red
    # the band's edges (across the example's bike lane, zone.lane_polygon) are drawn in orange where
    # they run clear of the boxes
    edges = np.concatenate(band)
    clear = edges[(edges[:, 0] < vf.box[0] - 10) | (edges[:, 0] > vf.box[2] + 10)]
    assert len(clear) > 20
    px = out[clear[:, 1], clear[:, 0]].astype(int)
    assert (px[:, 2] > 150).mean() > 0.8 and (px[:, 0] < 120).mean() > 0.8, px[:5]
    # they stop at the lane: on the road beside it (and away from the label) the frame is as it was
    assert edges[:, 0].max() < 400
    assert np.abs(out[30:, 420:].astype(int) - img[30:, 420:].astype(int)).max() == 0
    # the label sits on a dark band at the top left
    assert out[6:8, 4:200].mean() < 40

    # the event carries it as violation.jpg (context), with or without a face
    v = Violation(ViolationType.no_helmet, 3, 200 / 30, 100.0, T0, 0.87, 21.04, 4.2, 181.0, {})
    ev = EventAssembler(DeviceConfig(), tmp_path).assemble(
        v, T0, None, "rider seen from behind", None, "clip not started", violation_frame=vf
    )
    e = parse_event(ev.event.to_json())
    # and preview.jpg: the same with the violator's face blurred too (the cockpit's big screen)
    assert [(m.name, m.kind) for m in e.media] == [("violation.jpg", "context"), ("preview.jpg", "context")]
    data = ev.media["violation.jpg"].read_bytes()
    assert hashlib.sha256(data).hexdigest() == e.media[0].sha256 and len(data) == e.media[0].size
    back = cv2.imread(str(ev.media["violation.jpg"]))
    assert back is not None and back.shape == img.shape
    assert not e.face.found


def test_violation_frame_without_track_and_a_broken_frame(tmp_path: Path) -> None:
    from edge.evidence import ViolationFrame

    img = np.full((120, 200, 3), 90, np.uint8)
    vf = ViolationFrame.of(img, None, 1.0, "red_light", 7, 0.6, None, T0)
    assert vf.box is None and vf.head_box is None and " m " not in vf.label
    out = vf.render()
    assert (out[60:, :] == 90).all()  # nothing but the label is drawn
    # a frame that cannot be drawn on does not hold the event back: said in the event's detail
    broken = ViolationFrame(np.zeros((0,), np.uint8), (1.0, 1.0, 5.0, 5.0), None, "x")
    v = Violation(ViolationType.red_light, 7, 1.0, 1.0, T0, 0.6, None, None, None, {})
    ev = EventAssembler(DeviceConfig(), tmp_path).assemble(
        v, None, None, "no face", None, "clip not started", violation_frame=broken
    )
    assert ev.event.media == [] and ev.event.detail["violation_frame_error"]
