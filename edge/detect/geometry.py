"""Box geometry for the detection stage: letterbox resize, IoU, vectorised NMS (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the model input: ``input = image * scale + (pad_x, pad_y)``."""

    scale: float
    pad_x: float
    pad_y: float

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(N, 4)`` xyxy boxes from model-input pixels back to image pixels."""
        out = boxes.astype(np.float32, copy=True)
        out[:, [0, 2]] -= self.pad_x
        out[:, [1, 3]] -= self.pad_y
        out /= self.scale
        return out


def letterbox(
    image: np.ndarray, size_hw: tuple[int, int], color: int = 114, allow_upscale: bool = True
) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` to fit ``size_hw`` keeping its aspect, pad the rest (centred) with ``color``."""
    h, w = image.shape[:2]
    th, tw = size_hw
    scale = min(th / h, tw / w)
    if not allow_upscale:
        scale = min(scale, 1.0)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = (
        image
        if (nh, nw) == (h, w)
        else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    )
    pad_y, pad_x = (th - nh) / 2, (tw - nw) / 2
    top, left = int(round(pad_y - 0.1)), int(round(pad_x - 0.1))
    out = cv2.copyMakeBorder(
        resized, top, th - nh - top, left, tw - nw - left, cv2.BORDER_CONSTANT, value=(color, color, color)
    )
    return out, Letterbox(scale, float(left), float(top))


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    out = np.empty_like(b, dtype=np.float32)
    out[:, 0] = b[:, 0] - b[:, 2] / 2
    out[:, 1] = b[:, 1] - b[:, 3] / 2
    out[:, 2] = b[:, 0] + b[:, 2] / 2
    out[:, 3] = b[:, 1] + b[:, 3] / 2
    return out


def box_area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a (N,4)`` with every box in ``b (M,4)`` -> ``(N, M)``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return (inter / np.maximum(union, 1e-9)).astype(np.float32)


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, classes: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    Vectorised: one IoU row per kept box. With ``classes``, boxes of different classes never
    suppress each other (done by offsetting each class into its own coordinate range).
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    b = boxes.astype(np.float32)
    if classes is not None:
        offset = (float(b.max()) + 1.0) * classes.astype(np.float32)
        b = b + offset[:, None]
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        ious = iou_matrix(b[i : i + 1], b[rest])[0]
        order = rest[ious <= iou_threshold]
    return np.asarray(keep, np.int64)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    out = boxes.astype(np.float32, copy=True)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    return out


def bgr_to_nchw(images_bgr: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``(N, 3, H, W)`` float32 RGB in [0, 1] from ``(N, H, W, 3)`` uint8 BGR images (one ``(H, W, 3)``
    image gives N = 1), one pass per channel straight into ``out`` (reused when its shape fits): no float
    copy of the whole input, no second one for the division (3x faster than ``astype`` + ``/ 255`` on an
    832x480 input)."""
    batch = images_bgr if images_bgr.ndim == 4 else images_bgr[None]
    shape = (len(batch), 3) + batch.shape[1:3]
    if out is None or out.shape != shape:
        out = np.empty(shape, np.float32)
    scale = np.float32(1.0 / 255.0)
    for c in range(3):
        np.multiply(batch[..., 2 - c], scale, out=out[:, c], casting="unsafe")
    return out
