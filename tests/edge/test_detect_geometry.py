"""Letterbox and NMS on crafted boxes (pure numpy / cv2, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.detect.geometry import cxcywh_to_xyxy, iou_matrix, letterbox, nms


@pytest.mark.parametrize(
    ("shape", "size", "scale", "pad"),
    [
        ((1080, 1920), (576, 1024), 1024 / 1920, (0.0, 0.0)),
        ((1024, 1024), (576, 1024), 576 / 1024, ((1024 - 576) / 2, 0.0)),
        ((100, 400), (200, 200), 0.5, (0.0, 75.0)),
        ((50, 60), (640, 640), 640 / 60, (0.0, (640 - 50 * 640 / 60) / 2)),
    ],
)
def test_letterbox_scales_pads_and_maps_boxes_back(
    shape: tuple[int, int], size: tuple[int, int], scale: float, pad: tuple[float, float]
) -> None:
    img = np.full((*shape, 3), 200, np.uint8)
    out, lb = letterbox(img, size)
    assert out.shape == (*size, 3)
    assert lb.scale == pytest.approx(scale)
    assert lb.pad_x == pytest.approx(pad[0], abs=1.0)
    assert lb.pad_y == pytest.approx(pad[1], abs=1.0)
    # a box in image pixels, mapped into the input and back, lands where it started
    box = np.array([[10, 5, shape[1] - 7, shape[0] - 3]], np.float32)
    inside = box * lb.scale + np.array([lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y], np.float32)
    assert np.allclose(lb.to_image(inside), box, atol=1e-3)
    # padding is grey, the image is not
    if lb.pad_y >= 2:
        assert (out[0] == 114).all() and (out[size[0] // 2, size[1] // 2] == 200).all()


def test_letterbox_without_upscale_keeps_small_images_small() -> None:
    out, lb = letterbox(np.zeros((50, 60, 3), np.uint8), (640, 640), allow_upscale=False)
    assert lb.scale == 1.0 and out.shape == (640, 640, 3)


def test_iou_matrix_known_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    expect = np.array([[1.0, 50 / 150, 0.0], [1.0, 50 / 150, 0.0]], np.float32)
    assert np.allclose(iou_matrix(a, b), expect)
    assert iou_matrix(a[:0], b).shape == (0, 3)


def test_nms_keeps_best_of_each_cluster_and_separate_boxes() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 10],  # cluster A, 0.6
            [1, 1, 11, 11],  # cluster A, best 0.9
            [0, 1, 10, 11],  # cluster A, 0.8
            [50, 50, 60, 60],  # alone, 0.3
            [100, 0, 120, 20],  # cluster B, 0.7
            [104, 0, 124, 20],  # IoU with B = 16*20/(2*400-320) = 0.667 -> dropped at 0.5
        ],
        np.float32,
    )
    scores = np.array([0.6, 0.9, 0.8, 0.3, 0.7, 0.65], np.float32)
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [1, 4, 3]
    # looser threshold: the B pair (0.667) and A0 vs A1 (81/119 = 0.68) survive, A2 vs A1 (0.82) does not
    assert nms(boxes, scores, 0.7).tolist() == [1, 4, 5, 0, 3]


def test_nms_by_class_never_suppresses_across_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert sorted(nms(boxes, scores, 0.5, classes=np.array([0, 1, 0])).tolist()) == [0, 1]


def test_nms_empty_and_cxcywh() -> None:
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).size == 0
    assert np.allclose(cxcywh_to_xyxy(np.array([[10, 20, 4, 6]], np.float32)), [[8, 17, 12, 23]])


def test_bgr_to_nchw_matches_the_plain_numpy_recipe_and_reuses_its_buffer() -> None:
    from edge.detect.geometry import bgr_to_nchw

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    ref = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    x = bgr_to_nchw(img)
    assert x.dtype == np.float32 and x.shape == (1, 3, 48, 80)
    np.testing.assert_allclose(x, ref, atol=1e-6)
    assert x[0, 0, 0, 0] == pytest.approx(img[0, 0, 2] / 255, abs=1e-6)  # channel 0 is red
    again = bgr_to_nchw(img[::-1].copy(), x)
    assert again is x  # same shape: the buffer is reused
    np.testing.assert_allclose(again, ref[:, :, ::-1], atol=1e-6)
    other = bgr_to_nchw(img[:32], x)
    assert other is not x and other.shape == (1, 3, 32, 80)
