"""The committed detection path on real images from ../shared: output format of `detect-images`,
labelled no-helmet heads found on validation frames, ROI -> full-frame coordinates, face proposals
on the frontal bike-lane clip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from labelled_data import labelled_heads, load, val_images_with

from anqi_contract.paths import project_home, shared_dir
from anqi_tools.prepare import prepare
from edge.config import EdgeConfig, parse_config
from edge.detect import FrameDetections, RiderDetector
from edge.detect.geometry import iou_matrix


def _detector(site: EdgeConfig) -> RiderDetector:
    """The detector of a site's ``detect`` and ``face`` sections."""
    return RiderDetector.from_config(site.detect, site.face)


@pytest.fixture(scope="module")
def detector() -> RiderDetector:
    prepare()
    return _detector(parse_config({}))


# helmet9: no_helmet = class 3, helmet = 1; thaigate: Without Helmet = 1, With-Helmet = 0
CASES = [("helmet9-dev", 3, 1), ("thaigate-dev", 1, 0)]


@pytest.mark.parametrize(("ds", "no_helmet_id", "helmet_id"), CASES)
def test_finds_labelled_no_helmet_heads_on_validation_frames(
    detector: RiderDetector, ds: str, no_helmet_id: int, helmet_id: int
) -> None:
    found = total = 0
    for stem in val_images_with(ds, no_helmet_id, IMAGES_FOUND[ds]):
        img = load(ds, stem)
        det = detector.detect(img)
        gt = labelled_heads(ds, stem, no_helmet_id, img.shape[1], img.shape[0])
        total += len(gt)
        flagged = det.heads[det.head_no_helmet >= 0.5]
        if len(flagged):
            found += int((iou_matrix(gt, flagged).max(axis=1) >= 0.3).sum())
    assert total >= 6
    assert found / total >= MIN_FOUND[ds], (
        f"{ds}: {found} of {total} labelled no-helmet heads found and called no_helmet"
    )


@pytest.mark.parametrize(("ds", "no_helmet_id", "helmet_id"), CASES)
def test_classifier_separates_labelled_heads(
    detector: RiderDetector, ds: str, no_helmet_id: int, helmet_id: int
) -> None:
    """Given the true head boxes, P(no helmet) is high for no-helmet heads and low for helmeted ones."""
    p_nh, p_h = [], []
    for stem in val_images_with(ds, no_helmet_id, 8):
        img = load(ds, stem)
        nh = detector.classify_heads(img, labelled_heads(ds, stem, no_helmet_id, img.shape[1], img.shape[0]))
        assert nh is not None
        p_nh += nh.tolist()
        h = detector.classify_heads(img, labelled_heads(ds, stem, helmet_id, img.shape[1], img.shape[0]))
        assert h is not None
        p_h += h.tolist()
    assert len(p_nh) >= 6 and len(p_h) >= 3
    assert np.mean(np.array(p_nh) >= 0.5) >= MIN_CLASSIFIED[ds], p_nh
    assert np.mean(np.array(p_h) < 0.5) >= 0.75, p_h


def test_roi_detection_returns_full_frame_boxes_inside_the_roi(detector: RiderDetector) -> None:
    ds, stem = "helmet9-dev", val_images_with("helmet9-dev", 3, 1)[0]
    img = load(ds, stem)
    full = detector.detect(img)
    assert len(full.heads) and len(full.riders)
    h, w = img.shape[:2]
    best = full.heads[int(np.argmax(full.head_scores))]
    cx, cy = (best[0] + best[2]) / 2, (best[1] + best[3]) / 2
    roi = (int(max(0, cx - 300)), int(max(0, cy - 200)), int(min(w, cx + 300)), int(min(h, cy + 200)))
    part = detector.detect(img, roi=roi)
    assert len(part.heads)
    assert (part.heads[:, 0] >= roi[0] - 1).all() and (part.heads[:, 2] <= roi[2] + 1).all()
    assert (part.heads[:, 1] >= roi[1] - 1).all() and (part.heads[:, 3] <= roi[3] + 1).all()
    assert iou_matrix(best[None], part.heads).max() >= 0.5  # the same head, in full-frame pixels


def test_a_zone_region_is_scaled_as_the_whole_frame_is(detector: RiderDetector) -> None:
    """Cropping to the zone saves time but must not change the pixel size of heads the model sees
    (it was trained on whole frames 1024 px wide): the region is cut at the frame's scale."""
    img = load("thaigate-dev", val_images_with("thaigate-dev", 1, 1)[0])
    h, w = img.shape[:2]
    full = detector.detect(img)
    assert len(full.heads)
    best = full.heads[int(np.argmax(full.head_scores))]
    x0 = int(
        np.clip((best[0] + best[2]) / 2 - w // 4, 0, w // 2)
    )  # half the frame's width, around the surest head
    y0, x1, y1 = max(0, int(best[1]) - h // 4), x0 + w // 2, h
    assert detector.cfg.input_width == 1024
    full_img, full_lb = detector.detector.prepare(img)
    part_img, part_lb = detector.detector.prepare(img[y0:y1, x0:x1], w)
    assert full_lb.scale == pytest.approx(1024 / w, rel=0.01) and part_lb.scale == pytest.approx(
        full_lb.scale, rel=0.01
    )
    assert part_img.shape[1] < full_img.shape[1] and part_img.shape[1] % 32 == 0
    # a region on its own (no frame width given) is scaled to input_width as a whole frame is, never enlarged past max_upscale
    assert detector.detector.prepare(img[y0:y1, x0:x1])[1].scale == pytest.approx(
        min(1024 / (x1 - x0), detector.cfg.max_upscale), rel=0.01
    )
    # and the detection path hands the frame width on: heads found in the region match the whole-frame ones
    part = detector.detect(img, roi=(x0, y0, x1, y1))
    inside = full.heads[
        (full.heads[:, 0] >= x0 + 8) & (full.heads[:, 2] <= x1 - 8) & (full.heads[:, 1] >= y0 + 8)
    ]
    assert len(inside) and len(part.heads)
    assert (iou_matrix(inside, part.heads).max(axis=1) >= 0.7).mean() >= 0.8


def test_detections_have_the_contract_types(detector: RiderDetector) -> None:
    det = detector.detect(load("thaigate-dev", val_images_with("thaigate-dev", 1, 1)[0]))
    assert isinstance(det, FrameDetections)
    for name, cols in (("riders", 4), ("heads", 4)):
        a = getattr(det, name)
        assert a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == cols
    assert det.rider_scores.shape == (
        len(det.riders),
    ) and det.head_scores.shape == det.head_no_helmet.shape == (len(det.heads),)
    assert ((det.head_no_helmet >= 0) & (det.head_no_helmet <= 1)).all()
    empty = detector.detect(np.full((360, 640, 3), 90, np.uint8))
    assert empty.heads.shape == (0, 4) and empty.riders.shape == (0, 4)


def bikelane_frame(index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(shared_dir() / "video" / "bikelane-cyclists.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    assert ok
    return frame


def test_frontal_cyclist_without_helmet_is_flagged() -> None:
    """bikelane-cyclists.mp4 at 7 s: a close cyclist facing the camera, no helmet, with the shipped config of
    that camera (face proposals and the head heatmap on: the detector knows traffic cameras, not this view)."""
    from edge.config import load_config

    detector = _detector(load_config(project_home() / "config" / "examples" / "bikelane-cyclists.yaml"))
    det = detector.detect(bikelane_frame(210))
    assert len(det.heads), "no head found on the frontal clip"
    big = int(np.argmax((det.heads[:, 2] - det.heads[:, 0]) * (det.heads[:, 3] - det.heads[:, 1])))
    assert det.head_no_helmet[big] >= 0.5  # (riders here come from head-only tracks: track.head_only_tracks)


def test_detect_images_writes_one_normalised_line_per_head(tmp_path: Path, detector: RiderDetector) -> None:
    from edge.cli import main

    src = tmp_path / "images"
    src.mkdir()
    stems = val_images_with("helmet9-dev", 3, 2)
    for stem in stems:
        cv2.imwrite(str(src / f"{stem}.jpg"), load("helmet9-dev", stem))
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "pred"
    r = CliRunner().invoke(main, ["detect-images", str(src), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(p.stem for p in out.glob("*.txt")) == sorted(stems)
    labels = set()
    for f in out.glob("*.txt"):
        for line in f.read_text().splitlines():
            p = line.split()
            assert len(p) == 6 and p[0] in ("helmet", "no_helmet", "rider"), line
            vals = [float(v) for v in p[1:]]
            assert all(0.0 <= v <= 1.0 for v in vals), line
            labels.add(p[0])
    assert "no_helmet" in labels


def test_detect_images_rejects_an_empty_folder_and_a_bad_config(tmp_path: Path) -> None:
    from edge.cli import main

    r = CliRunner().invoke(main, ["detect-images", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "no images" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("detect:\n  input_width: 1000\n")
    (tmp_path / "a.jpg").write_bytes(cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes())
    r = CliRunner().invoke(
        main, ["detect-images", str(tmp_path), "--out", str(tmp_path / "o"), "--config", str(bad)]
    )
    assert r.exit_code == 2 and "detect.input_width" in r.output


# Floors a little under what the committed models measure (helmet9: 13 of 13 found in its first 6
# no-helmet validation frames at the time of writing; thaigate, whose no-helmet heads are small
# frontal heads, often beside a helmeted rider: 4 of 17 in all its no-helmet validation frames;
# classifier on true boxes 0.84 / 0.62): a regression below these fails.
IMAGES_FOUND = {"helmet9-dev": 6, "thaigate-dev": 100}
MIN_FOUND = {"helmet9-dev": 0.75, "thaigate-dev": 0.15}
MIN_CLASSIFIED = {"helmet9-dev": 0.75, "thaigate-dev": 0.5}


def test_the_detector_alone_makes_the_helmet_call_without_the_classifier() -> None:
    """``detect.head_model: ""``: the 3-class detector's own helmet / no_helmet scores decide (a Pi's cheapest path)."""
    alone = _detector(parse_config({"detect": {"head_model": ""}}))
    assert (
        alone.classifier is None
        and alone.classify_heads(np.zeros((64, 64, 3), np.uint8), np.zeros((1, 4))) is None
    )
    ds = "helmet9-dev"
    found = total = 0
    for stem in val_images_with(ds, 3, 3):
        img = load(ds, stem)
        det = alone.detect(img)
        assert (
            not np.isnan(det.head_no_helmet).any()
            and ((det.head_no_helmet >= 0) & (det.head_no_helmet <= 1)).all()
        )
        gt = labelled_heads(ds, stem, 3, img.shape[1], img.shape[0])
        total += len(gt)
        flagged = det.heads[det.head_no_helmet >= 0.5]
        if len(flagged):
            found += int((iou_matrix(gt, flagged).max(axis=1) >= 0.3).sum())
    assert total and found / total >= 0.6, f"{found} of {total}"


def test_heads_without_a_helmet_call_need_the_classifier() -> None:
    from edge.config import ConfigError

    for extra in ({"spot_model": "anqi-head-spot"}, {"face_proposals": True}):
        with pytest.raises(ConfigError, match="head_model is needed"):
            parse_config({"detect": {"head_model": "", **extra}})


def test_the_classifier_keeps_heads_the_detector_is_unsure_of(detector: RiderDetector) -> None:
    """Cascade: detector heads from ``head_proposal_conf`` (0.1) go to the classifier; a sure classifier lifts
    them over ``head_conf``. With the floor at ``head_conf`` (the classifier can only drop heads) fewer of
    thaigate's small frontal no-helmet heads are found."""
    strict = _detector(parse_config({"detect": {"head_proposal_conf": 0.3}}))
    ds, found = "thaigate-dev", {"default": 0, "strict": 0}
    for stem in val_images_with(ds, 1, 100):
        img = load(ds, stem)
        gt = labelled_heads(ds, stem, 1, img.shape[1], img.shape[0])
        for name, d in (("default", detector), ("strict", strict)):
            det = d.detect(img)
            assert (det.head_scores >= 0.3).all()  # head_conf still bounds every kept head
            flagged = det.heads[det.head_no_helmet >= 0.5]
            if len(flagged):
                found[name] += int((iou_matrix(gt, flagged).max(axis=1) >= 0.3).sum())
    assert found["default"] > found["strict"], found


def test_head_conf_alone_can_go_below_the_proposal_floor() -> None:
    """Lowering head_conf alone is valid (the proposal floor follows it) and keeps more heads."""
    loose = _detector(parse_config({"detect": {"head_conf": 0.05, "min_head_prob": 0.0}}))
    default = _detector(parse_config({"detect": {"min_head_prob": 0.0}}))
    n = {"loose": 0, "default": 0}
    for ds, stem in [("helmet9-dev", s) for s in val_images_with("helmet9-dev", 3, 4)] + [
        ("thaigate-dev", s) for s in val_images_with("thaigate-dev", 1, 8)
    ]:
        img = load(ds, stem)
        n["loose"] += len(loose.detect(img).heads)
        n["default"] += len(default.detect(img).heads)
    assert n["loose"] > n["default"], n
