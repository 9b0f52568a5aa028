"""Issue 20 on the device: evidence sealed before it touches the disk, bystanders blurred in shown frames.

Real parts: YuNet / SFace on LFW photos and frames of the bike-lane clip, the real MP4 of that clip as the
clip, the real outbox (SQLite + files), libsodium sealed boxes through PyNaCl."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from evidence_helpers import head_track

from anqi_contract.event import ViolationType, parse_event
from anqi_contract.sealed import KeyRing, SealError, generate_keypair, parse_private_key
from edge.config.device import DeviceConfig
from edge.config.privacy import SealConfig
from edge.evidence import EventAssembler, FaceCapture
from edge.evidence.privacy import FaceBlur, _overlap
from edge.relay import Outbox
from edge.rules import Violation

SHARED = Path(__file__).resolve().parents[3] / "shared"
LFW = SHARED / "faces" / "lfw-dev"
VIDEO = SHARED / "video" / "bikelane-cyclists.mp4"
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
#: the bearded rider's head in frame 215 of the clip (as in test_evidence)
HEADS = {215: (310, 0, 372, 72)}


def yunet():  # type: ignore[no-untyped-def]
    from anqi_contract.manifest import resolve
    from edge.detect.faces import FaceDetector

    return FaceDetector(resolve("yunet")[1], 0.6, min_face_px=8)


def sface():  # type: ignore[no-untyped-def]
    from anqi_contract.manifest import resolve
    from edge.detect.faces import FaceEmbedder

    return FaceEmbedder(resolve("sface")[1])


def frames_of(wanted: list[int]) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(VIDEO))
    out = {}
    for i in range(max(wanted) + 1):
        ok, f = cap.read()
        assert ok
        if i in wanted:
            out[i] = f
    return out


def _keys(*ids: str) -> tuple[dict[str, str], KeyRing]:
    pub, priv = {}, {}
    for kid in ids:
        sk, pk = generate_keypair()
        pub[kid], priv[kid] = pk, parse_private_key(sk)
    return pub, KeyRing(priv)


def _violation() -> Violation:
    return Violation(
        ViolationType.no_helmet, 3, 7.1, 100.0, T0 + timedelta(seconds=6), 0.8, 18.5, 4.2, 181.0, {}
    )


class _Clip:
    def __init__(self, path: Path):
        self.path = path
        self.start_utc = T0
        self.end_utc = T0 + timedelta(seconds=7)
        self.complete = True
        self.note = ""


def _float_runs(vec: np.ndarray) -> list[bytes]:
    """Byte patterns a clear embedding would leave: 4 consecutive values as float32 / float64, LE and BE."""
    out = []
    for dt in ("<f4", ">f4", "<f8", ">f8"):
        out.append(np.asarray(vec[:4], dtype=dt).tobytes())
        out.append(np.asarray(vec[60:64], dtype=dt).tobytes())
    return out


def test_outbox_holds_no_jpeg_mp4_or_embedding_in_the_clear(tmp_path: Path) -> None:
    from edge.evidence.adapters import SFaceEmbedding
    from edge.evidence.snapshot import ViolationFrame

    frames = frames_of([215])
    capture = FaceCapture(yunet(), min_face_px=12)
    track = head_track({215: HEADS[215]})
    capture.offer(track, frames[215], 215 / 30, T0, heading_away=False)
    face = capture.best(3)
    assert face is not None
    scratch = tmp_path / "ram"
    scratch.mkdir()
    clip_src = scratch / "ev.mp4"
    shutil.copyfile(VIDEO, clip_src)  # a real MP4 (ftyp box, H.264) stands for the clip
    clear_clip = clip_src.read_bytes()
    pub, ring = _keys("c2026a")
    seal = SealConfig(key_id="c2026a", public_key=pub["c2026a"])
    asm = EventAssembler(DeviceConfig(), tmp_path / "work", SFaceEmbedding(sface()), seal=seal)
    vf = ViolationFrame.of(frames[215], track, 215 / 30, "no_helmet", 3, 0.8, 18.5, T0)
    ev = asm.assemble(_violation(), T0, face, None, _Clip(clip_src), violation_frame=vf)
    assert not clip_src.exists(), "the clear clip is removed from the scratch folder once sealed"
    e = parse_event(ev.event.to_json())
    assert e.face.found and e.face.embedding is None and e.face.embedding_sealed
    assert {m.name for m in e.media} == {
        "face.jpg",
        "context.jpg",
        "violation.jpg",
        "preview.jpg",
        "clip.mp4",
    }
    assert all(m.sealed_to == "c2026a" for m in e.media)

    outbox = Outbox(tmp_path / "outbox")
    outbox.add(ev.event, ev.media, move=True)
    outbox.close()

    # central opens each one with its private key
    got = {}
    for m in e.media:
        blob = (tmp_path / "outbox" / "media" / str(e.event_id) / m.name).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == m.sha256
        got[m.name] = ring.open(blob)
    assert got["clip.mp4"] == clear_clip
    for name in ("face.jpg", "context.jpg", "violation.jpg", "preview.jpg"):
        img = cv2.imdecode(np.frombuffer(got[name], np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.size
    clear_emb = np.asarray(ring.open_embedding(e.face.embedding_sealed), np.float64)
    assert clear_emb.shape == (128,) and abs(np.linalg.norm(clear_emb) - 1) < 1e-5

    # what a thief reads off the device: every byte under the outbox and the work folder
    patterns = _float_runs(clear_emb)
    for clear in got.values():  # 32-byte windows of each clear file (start, middle, end)
        patterns += [clear[i : i + 32] for i in (0, len(clear) // 3, len(clear) // 2, len(clear) - 32)]
    decimals = re.compile(rb"-?0\.\d{6,}\s*,\s*-?0\.\d{6,}\s*,\s*-?0\.\d{6,}")
    files = [p for p in (tmp_path / "outbox").rglob("*") if p.is_file()]
    files += [p for p in (tmp_path / "work").rglob("*") if p.is_file()]
    assert len(files) >= 5
    for p in files:
        data = p.read_bytes()
        assert not data.startswith(b"\xff\xd8\xff") and b"JFIF\x00" not in data and b"Exif\x00" not in data, p
        assert b"ftypisom" not in data and b"ftypmp42" not in data and b"ftypavc1" not in data, p
        assert not any(pat in data for pat in patterns), f"clear evidence bytes in {p}"
        assert not decimals.search(data), f"a list of decimals (embedding) in {p}"
        if p.parent.name == str(e.event_id):
            assert data.startswith(b"AQS1") and cv2.imdecode(np.frombuffer(data, np.uint8), 1) is None
    # the clear embedding is what the unsealed pipeline computes
    plain = EventAssembler(DeviceConfig(), tmp_path / "plain", SFaceEmbedding(sface())).assemble(
        _violation(), T0, face, None, None
    )
    assert np.allclose(np.asarray(plain.event.face.embedding), clear_emb, atol=1e-6)


def test_the_device_key_cannot_open_and_a_wrong_or_tampered_blob_is_refused(tmp_path: Path) -> None:
    pub, ring = _keys("k1")
    other_pub, other_ring = _keys("k1")
    from anqi_contract.sealed import Sealer, parse_public_key

    blob = Sealer("k1", parse_public_key(pub["k1"])).seal(b"\xff\xd8\xff face")
    assert ring.open(blob) == b"\xff\xd8\xff face"
    with pytest.raises(SealError, match="does not open"):
        other_ring.open(blob)  # same key id, another private key
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(SealError, match="does not open"):
        ring.open(bytes(tampered))
    with pytest.raises(SealError, match="does not hold"):
        KeyRing({"k2": parse_private_key(generate_keypair()[0])}).open(blob)
    with pytest.raises(SealError, match="not a sealed blob"):
        ring.open(b"\xff\xd8\xff")


def test_key_rotation_the_device_switches_to_the_next_key_at_its_time(tmp_path: Path) -> None:
    pub, ring = _keys("k2026", "k2027")
    switch = datetime(2027, 1, 1, tzinfo=timezone.utc)
    seal = SealConfig(
        key_id="k2026",
        public_key=pub["k2026"],
        next_key_id="k2027",
        next_public_key=pub["k2027"],
        next_from=switch,
    )
    assert seal.current(switch - timedelta(seconds=1))[0] == "k2026"  # type: ignore[index]
    assert seal.current(switch)[0] == "k2027"  # type: ignore[index]
    with pytest.raises(ValueError, match="together"):
        SealConfig(key_id="k2026", public_key=pub["k2026"], next_key_id="k2027")
    with pytest.raises(ValueError, match="32 bytes"):
        SealConfig(key_id="k", public_key=base64.b64encode(b"short").decode())


# --- bystanders -----------------------------------------------------------------------------------


def _lfw(name: str) -> np.ndarray:
    img = cv2.imread(str(next((LFW / name).glob("*.jpg"))))
    assert img is not None
    return img


def _street_frame() -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A bike-lane frame scaled to 1280x720 with three people's LFW photos set into it (the violator first)."""
    base = cv2.resize(frames_of([60])[60], (1280, 720))
    boxes = []
    for name, (x, y), side in (
        ("Adrien_Brody", (60, 330), 200),
        ("Abdullah_Gul", (620, 200), 150),
        ("Alvaro_Uribe", (980, 300), 120),
    ):
        face = cv2.resize(_lfw(name)[60:190, 60:190], (side, side))
        base[y : y + side, x : x + side] = face
        boxes.append((x, y, x + side, y + side))
    return base, boxes


def test_every_face_but_the_violators_is_blurred_beyond_recognition(tmp_path: Path) -> None:
    from anqi_contract.manifest import resolve
    from edge.detect.faces import FaceDetector

    frame, boxes = _street_frame()
    blur = FaceBlur(FaceDetector(resolve("yunet")[1], 0.5, min_face_px=6, max_input_px=4096))
    found = blur.faces(frame)
    assert len(found) >= 3, found
    violator = boxes[0]
    out = blur.blur_others(frame, keep=tuple(float(v) for v in violator))  # type: ignore[arg-type]
    assert blur.last_blurred == len(found) - 1
    cv2.imwrite(str(tmp_path / "before.jpg"), frame)
    cv2.imwrite(str(tmp_path / "after.jpg"), out)
    kept = found[blur.kept_index(found, tuple(float(v) for v in violator))]  # type: ignore[arg-type,index]
    x0, y0, x1, y1 = (int(round(v)) for v in kept)
    assert np.array_equal(out[y0:y1, x0:x1], frame[y0:y1, x0:x1]), "the violator's face stays as it was"
    emb = sface()
    det = yunet()
    for bx0, by0, bx1, by1 in boxes[1:]:
        before, after = frame[by0:by1, bx0:bx1], out[by0:by1, bx0:bx1]
        assert np.abs(before.astype(int) - after.astype(int)).mean() > 10
        # neither the detector nor the recogniser finds the person any more
        assert not [f for f in det.detect(after, min_face_px=6) if f.score > 0.6]
        f0 = det.detect(before, min_face_px=6)
        assert f0
        from edge.detect.faces import cosine

        e0 = emb.embed(before, f0[0])
        e1 = emb.embed(after, f0[0])
        assert cosine(e0, e1) < 0.3, cosine(e0, e1)
    # the frame away from the faces is untouched
    assert np.array_equal(out[650:, :], frame[650:, :])


def test_faces_are_searched_tile_by_tile_and_each_is_found_once() -> None:
    """The bystander search runs on overlapping tiles (the detector's buffers stay one tile's): with tiles
    smaller than the frame, seams through or beside the faces, it finds the faces a whole-frame pass finds,
    each once."""
    from anqi_contract.manifest import resolve
    from edge.detect.faces import FaceDetector

    frame, boxes = _street_frame()

    def finder() -> FaceDetector:
        return FaceDetector(resolve("yunet")[1], 0.5, min_face_px=6, max_input_px=4096)

    whole = FaceBlur(finder(), tile_px=4096).faces(frame)
    for tile in (960, 480, 320):
        tiled = FaceBlur(finder(), tile_px=tile).faces(frame)
        assert len(tiled) == len(whole), (tile, tiled, whole)
        for b in boxes:  # each planted face: one box on it
            on = [f for f in tiled if _overlap(f, tuple(float(v) for v in b)) >= 0.5]  # type: ignore[arg-type]
            assert len(on) == 1, (tile, b, on)


def test_the_assembler_blurs_context_and_deciding_frames_only(tmp_path: Path) -> None:
    from anqi_contract.manifest import resolve
    from edge.detect.faces import FaceDetector
    from edge.evidence.face import FaceCandidate, FaceQuality
    from edge.evidence.snapshot import ViolationFrame

    frame, boxes = _street_frame()
    blur = FaceBlur(FaceDetector(resolve("yunet")[1], 0.5, min_face_px=6, max_input_px=4096))
    x0, y0, x1, y1 = (float(v) for v in boxes[0])
    crop = frame[int(y0) : int(y1), int(x0) : int(x1)].copy()
    face = FaceCandidate(
        3, 1.0, T0, (x0, y0, x1, y1), 0.9, FaceQuality(200, 100.0, 0.9, 0.9), crop, None, frame
    )
    vf = ViolationFrame(frame, (x0 - 40, y0, x1 + 40, y0 + 4 * (y1 - y0)), None, "no_helmet")
    ev = EventAssembler(DeviceConfig(), tmp_path, blur=blur).assemble(
        _violation(), T0, face, None, None, violation_frame=vf
    )
    det = yunet()
    for name in ("context.jpg", "violation.jpg"):
        img = cv2.imread(str(ev.media[name]))
        faces = [f for f in det.detect(img, min_face_px=6) if f.score > 0.6]
        centres = [((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2) for f in faces]
        assert len(faces) >= 1 and all(x0 <= cx <= x1 and y0 <= cy <= y1 for cx, cy in centres), (
            name,
            centres,
        )
    face_jpg = cv2.imread(str(ev.media["face.jpg"]))
    assert face_jpg is not None
    assert face_jpg.shape[:2] == crop.shape[:2]
    # preview.jpg (the cockpit on the big screen): the violator's face is blurred too, and it is at most 640 wide;
    # the same frame merely scaled down still shows faces the detector finds (the check can fail)
    prev = cv2.imread(str(ev.media["preview.jpg"]))
    assert prev is not None and prev.shape[1] == min(640, frame.shape[1])
    scaled = cv2.resize(frame, (prev.shape[1], prev.shape[0]), interpolation=cv2.INTER_AREA)
    k = prev.shape[1] / frame.shape[1]
    in_face = [
        f
        for f in det.detect(scaled, min_face_px=6)
        if f.score > 0.6 and x0 * k <= (f.box[0] + f.box[2]) / 2 <= x1 * k
    ]
    assert in_face, "the violator's face is found in the plainly scaled frame"
    assert not [f for f in det.detect(prev, min_face_px=6) if f.score > 0.6]


def test_the_daemon_seals_every_event_of_the_clip_and_leaves_no_clear_clip(tmp_path: Path) -> None:
    """The whole daemon on the bike-lane clip with privacy.seal: the outbox holds only sealed blobs, the clips
    were encoded in the RAM scratch folder and removed, and central's key opens a real MP4 and JPEGs."""
    import yaml

    from edge.config import load_config
    from edge.daemon import EdgeDaemon

    pub, ring = _keys("c1")
    example = Path(__file__).resolve().parents[2] / "config" / "examples" / "bikelane-cyclists.yaml"
    data = yaml.safe_load(example.read_text())
    data["device"]["data_dir"] = str(tmp_path / "data")
    data["source"]["uri"] = str(VIDEO)
    data["speaker"] = {"enabled": False}
    scratch = tmp_path / "ram"
    (scratch / "anqi-clips-anqi-demo-0001").mkdir(parents=True, mode=0o700)
    crashed = scratch / "anqi-clips-anqi-demo-0001" / "left-by-a-crash.mp4"
    crashed.write_bytes(b"\0\0\0\x18ftypisom")  # a clear clip a killed daemon left in RAM
    data["privacy"] = {"seal": {"key_id": "c1", "public_key": pub["c1"], "clip_scratch_dir": str(scratch)}}
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(data))
    d = EdgeDaemon(load_config(tmp_path / "edge.yaml"), mode="until_eof", relay=False, install_signals=False)
    assert not crashed.exists()
    d.run()
    assert d.events, "the clip has riders without a helmet"
    assert not [p for p in scratch.rglob("*") if p.is_file()], "a clear clip was left in the scratch folder"
    kinds = set()
    for ev in d.events:
        assert ev.face.embedding is None
        for m in ev.media:
            blob = (d.outbox.media_dir / str(ev.event_id) / m.name).read_bytes()
            assert m.sealed_to == "c1" and blob.startswith(b"AQS1")
            clear = ring.open(blob)
            kinds.add(m.kind)
            if m.kind == "clip":
                assert clear[4:8] == b"ftyp"
            else:
                assert clear.startswith(b"\xff\xd8\xff")
    assert {"clip", "context"} <= kinds
    for p in (tmp_path / "data").rglob("*"):
        if p.is_file():
            head = p.read_bytes()[:16]
            assert not head.startswith(b"\xff\xd8\xff") and head[4:8] != b"ftyp", p
