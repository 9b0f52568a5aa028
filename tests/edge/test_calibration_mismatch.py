"""Footage that does not match the survey (issue 17): another aspect (a rotated image, another camera
or stream profile) is refused naming the calibration's frame size, never stretched; the same aspect at
another resolution is re-mapped."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import load_config
from edge.zone import CalibrationMismatch, CaptureZone

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "examples" / "bikelane-cyclists.yaml"
VIDEO = ROOT.parent / "shared" / "video" / "bikelane-cyclists.mp4"


@pytest.fixture(scope="module")
def zone() -> CaptureZone:
    return CaptureZone.from_config(load_config(EXAMPLE).zone)


@pytest.mark.parametrize(
    ("size", "refused"),
    [
        ((640, 360), False),
        ((1280, 720), False),  # the same picture at another resolution: re-mapped
        ((1920, 1088), False),  # encoder rounding (0.7 % off 16:9)
        ((360, 640), True),  # rotated / portrait
        ((640, 480), True),  # 4:3 profile
        ((480, 360), True),
    ],
)
def test_frames_of_another_aspect_are_refused_naming_the_survey_size(
    zone: CaptureZone, size: tuple[int, int], refused: bool
) -> None:
    if refused:
        with pytest.raises(CalibrationMismatch, match=r"640x360 frames .* gives " + f"{size[0]}x{size[1]}"):
            zone.for_frame(*size)
    else:
        scaled = zone.for_frame(*size)
        # the band keeps its place in the picture: same relative region at any resolution
        x0, y0, x1, y1 = scaled.image_region(*size) or (0, 0, 0, 0)
        bx0, by0, bx1, by1 = zone.image_region(640, 360) or (0, 0, 0, 0)
        assert abs(y0 / size[1] - by0 / 360) < 0.02 and abs(y1 / size[1] - by1 / 360) < 0.02


@pytest.mark.skipif(not VIDEO.is_file() or shutil.which("ffmpeg") is None, reason="needs the clip and ffmpeg")
def test_replay_of_rotated_footage_stops_with_the_reason_and_reports_nobody(tmp_path: Path) -> None:
    portrait = tmp_path / "portrait.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(VIDEO),
            "-t",
            "3",
            "-vf",
            "transpose=1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(portrait),
        ],
        check=True,
    )
    out = tmp_path / "out"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "replay",
            str(portrait),
            "--config",
            str(EXAMPLE),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 5, r.stdout[-2000:] + r.stderr[-2000:]
    assert "surveyed on 640x360 frames" in r.stderr and "gives 360x640" in r.stderr
    assert "msg=frame_size_refused" in r.stdout + r.stderr
    events = list((out / "events").glob("*.json")) if (out / "events").exists() else []
    assert events == [], "nobody is accused on footage the zone does not fit"
