"""Rider / head detection: the single-frame detection path the daemon runs.

A cascade that suits an edge CPU:
1. the YOLOv8 detector on the frame or the capture zone's region, scaled as the whole frame
   scaled to ``detect.input_width`` would be (dynamic-input ONNX: no padding to a square). Its classes are either
   ``rider, helmet, no_helmet`` (it decides helmet or not itself) or ``rider, head`` (the head
   classifier decides). Optionally the head-centre heatmap (``detect.spot_model``) on the same
   input, whose heads are merged by NMS;
2. optionally YuNet faces as extra head proposals (frontal cameras: close riders the detector,
   trained on traffic cameras, may miss);
3. optionally the helmet classifier on 64x64 head crops: P(no helmet) and P(is a head) per head,
   a head is called no-helmet when the detector or the classifier calls it so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from anqi_contract.logs import log
from anqi_contract.manifest import ModelFileError, ModelSpec, resolve
from edge.config.detect import DetectConfig
from edge.config.face import FaceConfig
from edge.detect.faces import Face, FaceDetector
from edge.detect.geometry import (
    Letterbox,
    bgr_to_nchw,
    clip_boxes,
    cxcywh_to_xyxy,
    iou_matrix,
    letterbox,
    nms,
)
from edge.detect.heads import HelmetClassifier
from edge.detect.session import open_session
from edge.detect.spot import HeadSpotter

logger = logging.getLogger("edge.detect")

STRIDE = 32


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


def _empty_scores() -> np.ndarray:
    return np.zeros(0, np.float32)


def lift_low_light(image_bgr: np.ndarray, target: float) -> np.ndarray:
    """``image_bgr`` with its median grey (0-1, measured on every 4th pixel) raised to ``target`` by one
    gamma curve when it is darker than that; the same array when it is not (or ``target`` is 0, or the frame is
    black). A dusk camera's heads are then as contrasted as the daylight ones the models learnt; the curve keeps
    the order of grey levels and leaves white white. About 1 ms (a lookup table) on a 1080p frame."""
    if target <= 0:
        return image_bgr
    sample = image_bgr[::4, ::4]
    grey = sample.mean(axis=2) if sample.ndim == 3 else sample
    m = float(np.median(grey)) / 255.0
    if not 0 < m < target:
        return image_bgr
    gamma = np.log(target) / np.log(m)
    lut = np.round(255.0 * (np.arange(256, dtype=np.float64) / 255.0) ** gamma).astype(np.uint8)
    return cv2.LUT(image_bgr, lut)


@dataclass
class FrameDetections:
    """Detections of one frame, full-frame pixel boxes ``xyxy`` (float32)."""

    riders: np.ndarray = field(default_factory=_empty_boxes)  # (N, 4)
    rider_scores: np.ndarray = field(default_factory=_empty_scores)  # (N,)
    heads: np.ndarray = field(default_factory=_empty_boxes)  # (M, 4)
    head_scores: np.ndarray = field(default_factory=_empty_scores)  # (M,)
    head_no_helmet: np.ndarray = field(default_factory=_empty_scores)  # (M,) P(no helmet)


@dataclass(frozen=True)
class RawBoxes:
    boxes: np.ndarray  # (N, 4) xyxy in the region's pixels
    scores: np.ndarray  # (N,) best class score
    classes: np.ndarray  # (N,) index of the best class
    class_scores: np.ndarray  # (N, C) every class's score


def head_box_from_face(face: Face) -> np.ndarray:
    """The head box (hair/helmet included) around a YuNet face box (brows to chin)."""
    x0, y0, x1, y1 = face.box
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    return np.array([cx - 0.75 * w, y0 - 0.45 * h, cx + 0.75 * w, y1 + 0.1 * h], np.float32)


def heatmap_head_box_from_face(face: Face) -> np.ndarray:
    """The head box a face implies, drawn the way the head heatmap draws heads: 1.6 face widths wide,
    from 0.44 face heights above the face's top to 0.2 above its bottom (medians over the 18 heads where
    both a confident heatmap box (>= 0.5) and a face were found: ../shared bikelane clip 8, helmet9-dev 7,
    thaigate-dev 3). A track ranges a head-only rider from its box height: a box of another shape in
    one frame throws the range by 30-50 %."""
    x0, y0, x1, y1 = face.box
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    return np.array([cx - 0.8 * w, y0 - 0.44 * h, cx + 0.8 * w, y1 - 0.2 * h], np.float32)


def rider_box_from_head(head: np.ndarray) -> np.ndarray:
    """A rough rider box (person on a two-wheeler) hanging below a head box."""
    x0, y0, x1, y1 = head
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    return np.array([cx - 1.4 * w, y0 - 0.1 * h, cx + 1.4 * w, y0 + 5.5 * h], np.float32)


def _grow(boxes: np.ndarray, frac: float) -> np.ndarray:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes + np.stack([-w * frac, -h * frac, w * frac, h * frac], 1) if len(boxes) else boxes


def _centres_inside(inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """For each box of ``inner``: is its centre inside any box of ``outer``?"""
    if not len(outer):
        return np.zeros(len(inner), bool)
    cx, cy = (inner[:, 0] + inner[:, 2]) / 2, (inner[:, 1] + inner[:, 3]) / 2
    return (
        (cx[:, None] >= outer[None, :, 0])
        & (cx[:, None] <= outer[None, :, 2])
        & (cy[:, None] >= outer[None, :, 1])
        & (cy[:, None] <= outer[None, :, 3])
    ).any(axis=1)


def scale_and_pad(
    region: np.ndarray, input_width: int, frame_width: int | None = None, max_upscale: float = 1e9
) -> tuple[np.ndarray, Letterbox]:
    """A dynamic-input detector's input: ``region`` scaled by ``input_width / frame_width`` (its own
    width when ``frame_width`` is None), at most ``max_upscale``, padded right and down to a multiple of 32."""
    h, w = region.shape[:2]
    scale = min(input_width / max(frame_width or w, 1), max_upscale)
    nw, nh = max(STRIDE, round(w * scale)), max(STRIDE, round(h * scale))
    img = (
        region
        if (nw, nh) == (w, h)
        else cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    )
    pw, ph = -nw % STRIDE, -nh % STRIDE
    if pw or ph:
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return img, Letterbox(nw / w, 0.0, 0.0)


class YoloDetector:
    """A YOLOv8 ONNX model (output ``(1, 4 + C, N)``, cx cy w h in input pixels, sigmoid class scores)."""

    def __init__(self, spec: ModelSpec, session: object, input_width: int, max_upscale: float):
        import onnxruntime as ort

        assert isinstance(session, ort.InferenceSession)
        self.spec = spec
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.input_width = input_width
        self.max_upscale = max_upscale
        self._input: np.ndarray | None = None
        out_shape = session.get_outputs()[0].shape
        if len(out_shape) != 3 or (isinstance(out_shape[1], int) and out_shape[1] != 4 + len(spec.classes)):
            raise ModelFileError(
                f"{spec.path()}: output shape {out_shape} does not match {len(spec.classes)} classes {spec.classes} in the manifest"
            )

    @property
    def last_input(self) -> np.ndarray | None:
        """The input tensor of the last call (reused by the heatmap model on the same prepared image)."""
        return self._input

    def prepare(self, region: np.ndarray, frame_width: int | None = None) -> tuple[np.ndarray, Letterbox]:
        """Scale ``region`` by ``input_width / frame_width`` (the whole frame's width when the region
        is a crop of it: objects keep the pixel size the model was trained at, whether or not the
        frame is cropped to the zone), at most ``max_upscale``, and pad to a multiple of 32."""
        if not self.spec.dynamic_input:
            return letterbox(region, self.spec.input_size)
        return scale_and_pad(region, self.input_width, frame_width, self.max_upscale)

    def __call__(
        self, region: np.ndarray, conf: float, prepared: tuple[np.ndarray, Letterbox] | None = None
    ) -> RawBoxes:
        img, lb = prepared or self.prepare(region)
        x = self._input = bgr_to_nchw(img, self._input)  # one buffer, reused while the input size stays
        out = self.session.run(None, {self.input_name: x})[0][0]  # (4 + C, N)
        scores_all = out[4:]
        cls = scores_all.argmax(0)
        scores = scores_all[cls, np.arange(scores_all.shape[1])]
        keep = scores >= conf
        boxes = lb.to_image(cxcywh_to_xyxy(out[:4, keep].T))
        h, w = region.shape[:2]
        return RawBoxes(
            clip_boxes(boxes, w, h),
            scores[keep].astype(np.float32),
            cls[keep],
            scores_all[:, keep].T.astype(np.float32),
        )


class DetectorLoadError(ModelFileError):
    """A detection model that cannot be used; ``key`` is the config key that names it (``detect.head_model``,
    ``face.detector_model``...), and the message names the model file."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


_T = TypeVar("_T")


def _load(key: str, name: str, build: Callable[[ModelSpec, Path], _T]) -> _T:
    """``build(spec, path)`` for the manifest model ``name``; any failure becomes a :class:`DetectorLoadError`
    naming ``key`` (the manifest and loader messages already name the file)."""
    try:
        spec, path = resolve(name)
        return build(spec, path)
    except Exception as e:  # noqa: BLE001 - missing, corrupt or unreadable model: reported with its key
        raise DetectorLoadError(
            key, f"{type(e).__name__}: {e}" if not isinstance(e, ModelFileError) else str(e)
        ) from None


class RiderDetector:
    """``detect(image_bgr, roi=None) -> FrameDetections`` and ``classify_heads(image_bgr, boxes)``."""

    def __init__(
        self,
        cfg: DetectConfig,
        detector: YoloDetector,
        classifier: HelmetClassifier | None,
        faces: FaceDetector | None,
        spotter: HeadSpotter | None = None,
    ):
        self.cfg = cfg
        self.detector = detector
        self.spotter = spotter
        self.classifier = classifier
        self.faces = faces
        classes = detector.spec.classes
        self._rider_cls = classes.index("rider") if "rider" in classes else -1
        if "helmet" in classes and "no_helmet" in classes:
            self._head_cls: tuple[int, ...] = (classes.index("helmet"), classes.index("no_helmet"))
        elif "head" in classes:
            self._head_cls = (classes.index("head"),)
        else:
            raise ModelFileError(
                f"{detector.spec.path()}: detector classes {classes} must include 'helmet' and 'no_helmet', or 'head'"
            )
        if self._rider_cls < 0:
            raise ModelFileError(f"{detector.spec.path()}: detector classes {classes} must include 'rider'")
        if classifier is None and (len(self._head_cls) == 1 or spotter is not None or faces is not None):
            raise ModelFileError(
                f"{detector.spec.path()}: detect.head_model is needed: the detector's 'head' class, the head heatmap and face proposals give heads without a helmet decision"
            )
        self.last_timing_ms: dict[str, float] = {}

    @classmethod
    def from_config(cls, d: DetectConfig, face: FaceConfig) -> RiderDetector:
        """The detector of the ``detect`` section (face proposals use ``face.detector_model``). A model that
        cannot be loaded raises :class:`DetectorLoadError` naming the key and the file that failed."""
        spec, detector = _load(
            "detect.rider_model",
            d.rider_model,
            lambda spec, path: (
                spec,
                YoloDetector(
                    spec,
                    open_session(path, list(d.providers), d.threads, name=spec.name),
                    d.input_width,
                    d.max_upscale,
                ),
            ),
        )
        classifier = None
        if d.head_model:
            classifier = _load(
                "detect.head_model",
                d.head_model,
                lambda hspec, hpath: HelmetClassifier.from_file(
                    hpath, hspec.classes, list(d.providers), d.threads
                ),
            )
        faces = None
        if d.face_proposals:
            faces = _load(
                "face.detector_model (detect.face_proposals)",
                face.detector_model,
                lambda _, fpath: FaceDetector(
                    fpath,
                    score_threshold=max(0.5, face.score_threshold - 0.1),
                    min_face_px=10,
                    max_input_px=d.face_input_width,
                ),
            )
        spotter = None
        if d.spot_model:
            spotter = _load(
                "detect.spot_model",
                d.spot_model,
                lambda sspec, spath: HeadSpotter(
                    open_session(spath, list(d.providers), d.threads, name=sspec.name)
                ),
            )
        log(
            logger,
            "rider_detector_ready",
            detector=spec.name,
            classifier=d.head_model or "off",
            spotter=d.spot_model or "off",
            face_proposals=faces is not None,
            input_width=d.input_width,
        )
        try:
            return cls(d, detector, classifier, faces, spotter)
        except ModelFileError as e:  # the models do not fit together (classes, missing head classifier)
            raise DetectorLoadError("detect.rider_model", str(e)) from None

    def classify_heads(self, image_bgr: np.ndarray, head_boxes: np.ndarray) -> np.ndarray | None:
        """P(no helmet) for each full-frame xyxy head box, ``(M,)`` float32; None without a head classifier."""
        if self.classifier is None:
            return None
        boxes = np.asarray(head_boxes, np.float32).reshape(-1, 4)
        return self.classifier.score(image_bgr, boxes).p_no_helmet

    def detect(self, image_bgr: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> FrameDetections:
        t0 = time.perf_counter()
        image_bgr = lift_low_light(image_bgr, self.cfg.low_light_lift)
        H, W = image_bgr.shape[:2]
        x0 = y0 = 0
        region = image_bgr
        if roi is not None:
            x0, y0 = max(0, int(roi[0])), max(0, int(roi[1]))
            x1, y1 = min(W, int(roi[2])), min(H, int(roi[3]))
            if x1 - x0 < 8 or y1 - y0 < 8:
                raise ValueError(f"roi {roi} is empty or outside the {W}x{H} frame")
            region = image_bgr[y0:y1, x0:x1]
        c = self.cfg
        prepared = self.detector.prepare(region, W)
        # with the classifier, heads the detector is unsure of are proposed and the fused score decides
        head_floor = min(c.head_proposal_conf, c.head_conf) if self.classifier is not None else c.head_conf
        raw = self.detector(region, min(c.rider_conf, head_floor), prepared)
        offset = np.array([x0, y0, x0, y0], np.float32)
        is_rider = (raw.classes == self._rider_cls) & (raw.scores >= c.rider_conf)
        is_head = np.isin(raw.classes, self._head_cls)
        riders, rider_scores = raw.boxes[is_rider] + offset, raw.scores[is_rider]
        k = nms(riders, rider_scores, c.nms_iou)
        riders, rider_scores = riders[k], rider_scores[k]
        heads, det_scores = raw.boxes[is_head] + offset, raw.scores[is_head]
        if len(self._head_cls) == 2:  # the detector's own helmet decision; NaN = none (proposals below)
            hs_ = raw.class_scores[is_head][:, list(self._head_cls)]
            det_scores = hs_.max(axis=1)
            det_nh = hs_[:, 1] / np.maximum(hs_.sum(axis=1), 1e-6)
        else:
            det_nh = np.full(len(heads), np.nan, np.float32)
        from_spot = np.zeros(len(heads), bool)  #: heads boxed by the heatmap (not by the detector)
        if self.spotter is not None:
            sb, ss = self.spotter(
                prepared[0],
                prepared[1],
                (region.shape[1], region.shape[0]),
                c.spot_conf,
                x=self.detector.last_input,
            )
            heads, det_scores = np.concatenate([heads, sb + offset]), np.concatenate([det_scores, ss])
            det_nh = np.concatenate([det_nh, np.full(len(sb), np.nan, np.float32)])
            from_spot = np.r_[from_spot, np.ones(len(sb), bool)]
        k = nms(heads, det_scores, c.nms_iou)
        heads, det_scores, det_nh, from_spot = heads[k], det_scores[k], det_nh[k], from_spot[k]
        t1 = time.perf_counter()
        if self.faces is not None:
            faces = [f.shifted(x0, y0) for f in self.faces.detect(region)]
            extra = [head_box_from_face(f) for f in faces]
            if extra:
                fb = clip_boxes(np.array(extra, np.float32), W, H)
                fs = np.array([f.score for f in faces], np.float32)
                iou = iou_matrix(fb, heads) if len(heads) else np.zeros((len(fb), 0), np.float32)
                overlap = iou.max(axis=1) if len(heads) else np.zeros(len(fb), np.float32)
                new = overlap < 0.2
                # A face found on a head the heatmap boxed more weakly: the face's box replaces the heatmap's.
                # The heatmap's box of a small head is loose (centre a third of a head off, 20-50 % too large:
                # ../shared bikelane clip, far riders), a YuNet face is placed to a pixel; ranging, the helmet
                # classifier and the face search all read this box. The detector's own head boxes (which carry
                # its helmet decision, and a helmet's full extent) are kept. A face is one head: another,
                # weaker heatmap box holding the face's centre is a second box of the same head (the heatmap
                # boxes a head twice at times, on the hair and loosely beside it: a pillion's turned head on
                # the thaigate approach clip) and goes, or one person would count twice on a vehicle.
                drop = np.zeros(len(heads), bool)
                for f in np.nonzero(~new)[0]:
                    h = int(np.argmax(iou[f]))
                    if drop[h] or not from_spot[h] or fs[f] <= det_scores[h]:
                        continue
                    fx0, fy0, fx1, fy1 = faces[f].box
                    cx, cy = (fx0 + fx1) / 2, (fy0 + fy1) / 2
                    holds = (
                        (heads[:, 0] <= cx) & (cx <= heads[:, 2]) & (heads[:, 1] <= cy) & (cy <= heads[:, 3])
                    )
                    heads[h] = clip_boxes(heatmap_head_box_from_face(faces[f])[None], W, H)[0]
                    det_scores[h] = fs[f]
                    twice = holds & from_spot & (det_scores < fs[f])
                    twice[h] = False
                    drop |= twice
                heads, det_scores, det_nh = heads[~drop], det_scores[~drop], det_nh[~drop]
                heads = np.concatenate([heads, fb[new]])
                det_scores = np.concatenate([det_scores, fs[new]])
                det_nh = np.concatenate([det_nh, np.full(int(new.sum()), np.nan, np.float32)])
        t2 = time.perf_counter()
        if self.classifier is not None:
            hs = self.classifier.score(image_bgr, heads)
            head_scores = np.sqrt(det_scores * hs.p_head).astype(np.float32)
            # no helmet when either model says so (fmax ignores the NaN of heads the detector did not classify):
            # the detector is confidently wrong on small frontal heads next to a helmet, the crop classifier on
            # some top-down ones; a missed violator costs more than a second look
            p_nh = np.fmax(det_nh, hs.p_no_helmet)
            keep = (hs.p_head >= c.min_head_prob) & (head_scores >= c.head_conf)
        else:
            head_scores, p_nh = det_scores.astype(np.float32), det_nh
            keep = head_scores >= c.head_conf
        heads, head_scores, p_nh = heads[keep], head_scores[keep], p_nh[keep]
        if c.heads_need_rider and len(heads):
            on_rider = _centres_inside(heads, _grow(riders, 0.15))
            heads, head_scores, p_nh = heads[on_rider], head_scores[on_rider], p_nh[on_rider]
        if c.riders_from_heads and len(heads):
            inside = _centres_inside(heads, riders)
            if (~inside).any():
                extra_r = clip_boxes(
                    np.array([rider_box_from_head(h) for h in heads[~inside]], np.float32), W, H
                )
                riders = np.concatenate([riders, extra_r])
                rider_scores = np.concatenate([rider_scores, head_scores[~inside]])
        t3 = time.perf_counter()
        self.last_timing_ms = {
            "detector": (t1 - t0) * 1e3,
            "faces": (t2 - t1) * 1e3,
            "classifier": (t3 - t2) * 1e3,
            "total": (t3 - t0) * 1e3,
        }
        return FrameDetections(
            riders.astype(np.float32),
            rider_scores.astype(np.float32),
            heads.astype(np.float32),
            head_scores,
            p_nh.astype(np.float32),
        )
