"""Head spotting: a CenterNet-style heatmap of head centres (stride 4) with box sizes.

The model (``kind: head-heatmap`` in the manifest) outputs ``(1, 3, H/4, W/4)``: a head-centre
logit and log(width / 4), log(height / 4) in input pixels. Peaks are local maxima (3x3) above a
threshold. It complements the YOLO detector on small heads (dense supervision trains quickly).
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort

from edge.detect.geometry import Letterbox, bgr_to_nchw, clip_boxes

STRIDE = 4


def decode_heatmap(maps: np.ndarray, conf: float, max_peaks: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """``maps (3, h, w)`` -> (boxes xyxy in input pixels ``(K, 4)``, scores ``(K,)``), best first."""
    heat = 1.0 / (1.0 + np.exp(-maps[0].astype(np.float32)))
    peaks = (heat >= conf) & (heat >= cv2.dilate(heat, np.ones((3, 3), np.uint8)))
    ys, xs = np.nonzero(peaks)
    scores = heat[ys, xs]
    order = np.argsort(-scores)[:max_peaks]
    ys, xs, scores = ys[order], xs[order], scores[order]
    w = np.exp(np.clip(maps[1, ys, xs], -3, 6)) * STRIDE
    h = np.exp(np.clip(maps[2, ys, xs], -3, 6)) * STRIDE
    cx, cy = (xs + 0.5) * STRIDE, (ys + 0.5) * STRIDE
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(np.float32)
    return boxes.reshape(-1, 4), scores.astype(np.float32)


class HeadSpotter:
    """Runs the heatmap model on an already prepared (scaled, padded) input image."""

    def __init__(self, session: ort.InferenceSession):
        self.session = session
        self._input = session.get_inputs()[0].name

    def __call__(
        self,
        prepared_bgr: np.ndarray,
        lb: Letterbox,
        region_wh: tuple[int, int],
        conf: float,
        x: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``x``: the detector's input tensor of the same prepared image, when it has made one already."""
        if x is None or x.shape[2:] != prepared_bgr.shape[:2]:
            x = bgr_to_nchw(prepared_bgr)
        maps = self.session.run(None, {self._input: x})[0][0]
        boxes, scores = decode_heatmap(maps, conf)
        return clip_boxes(lb.to_image(boxes), *region_wh), scores
