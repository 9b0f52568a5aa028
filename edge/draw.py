"""Text on evidence and calibration images: white on a dark box, readable on any background.

(An outline drawn as the same text at a greater thickness does not line up: OpenCV spaces Hershey
glyphs by their thickness, so the thicker copy runs longer than the white one.)"""

from __future__ import annotations

import cv2
import numpy as np


def put_label(image: np.ndarray, text: str, org: tuple[int, int], scale: float, thickness: int) -> None:
    """Draw ``text`` in place with its baseline at ``org`` (x, y), on a filled dark box."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    pad = max(2, thickness + 1)
    x, y = org
    cv2.rectangle(image, (x - pad, y - th - pad), (x + tw + pad, y + base + pad // 2), (0, 0, 0), cv2.FILLED)
    cv2.putText(image, text, (x, y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
