"""benchmarks/accuracy.py's matching and error breakdown (the figures the accuracy issue is judged by)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "accuracy_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.py"
)
assert _SPEC is not None and _SPEC.loader is not None
accuracy = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(accuracy)


def box(x: float, y: float, s: float = 0.1) -> np.ndarray:
    return np.array([x, y, x + s, y + s], np.float32)


@pytest.fixture
def scene() -> tuple[dict, dict]:
    gt = {
        "a": [
            ("no_helmet", box(0.1, 0.1), 1.0),
            ("no_helmet", box(0.5, 0.5), 1.0),
            ("helmet", box(0.8, 0.1), 1.0),
        ],
        "b": [("helmet", box(0.3, 0.3), 1.0), ("no_helmet", box(0.7, 0.7), 1.0)],
    }
    pred = {
        "a": [
            ("no_helmet", box(0.11, 0.1), 0.9),  # TP
            ("no_helmet", box(0.1, 0.11), 0.8),  # duplicate of the same head
            ("no_helmet", box(0.8, 0.1), 0.7),  # on the helmet head: wrong call
            ("helmet", box(0.5, 0.5), 0.6),
        ],  # the second no_helmet head, called helmet
        "b": [
            ("no_helmet", box(0.0, 0.8), 0.5),  # on nothing labelled
            ("helmet", box(0.3, 0.31), 0.9),
        ],
    }  # TP; b's no_helmet head is not found
    return gt, pred


def test_match_counts_greedy_by_confidence(scene: tuple[dict, dict]) -> None:
    gt, pred = scene
    m = accuracy.match(gt, pred)
    assert m["no_helmet"] == {
        "recall": round(1 / 3, 4),
        "precision": 0.25,
        "labelled": 3,
        "predicted": 4,
        "matched": 1,
    }
    assert m["helmet"]["matched"] == 1 and m["helmet"]["predicted"] == 2 and m["helmet"]["labelled"] == 2


def test_error_breakdown_names_each_error(scene: tuple[dict, dict]) -> None:
    gt, pred = scene
    e = accuracy.error_breakdown(gt, pred)
    assert e["no_helmet"] == {
        "other_class": 1,
        "duplicate": 1,
        "unlabelled": 1,
        "called_other": 1,
        "not_found": 1,
    }
    # helmet: the call on a's no_helmet head is a false positive on the other class; a's helmet head
    # was called no_helmet
    assert e["helmet"] == {
        "other_class": 1,
        "duplicate": 0,
        "unlabelled": 0,
        "called_other": 1,
        "not_found": 0,
    }


def test_a_box_beside_the_head_is_not_a_match() -> None:
    gt = {"a": [("no_helmet", box(0.1, 0.1), 1.0)]}
    far = {"a": [("no_helmet", box(0.17, 0.17), 0.9)]}  # IoU ~0.1: not a match
    m = accuracy.match(gt, far)
    assert m["no_helmet"]["matched"] == 0
    assert accuracy.error_breakdown(gt, far)["no_helmet"]["unlabelled"] == 1
