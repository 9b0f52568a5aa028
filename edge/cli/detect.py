"""``anqi-edge detect-images`` and ``anqi-edge models prepare``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def prediction_lines(det: object, width: int, height: int, no_helmet_threshold: float) -> list[str]:
    """YOLO-style lines ``<label> <cx> <cy> <w> <h> <conf>`` (normalised) for heads, then riders."""
    from edge.detect.rider import FrameDetections

    assert isinstance(det, FrameDetections)
    lines = []

    def fmt(label: str, b: np.ndarray, conf: float) -> str:
        x0, y0, x1, y1 = (float(v) for v in b)
        return f"{label} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} {(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f} {conf:.4f}"

    for b, s, p in zip(det.heads, det.head_scores, det.head_no_helmet, strict=True):
        lines.append(fmt("no_helmet" if p >= no_helmet_threshold else "helmet", b, float(s)))
    for b, s in zip(det.riders, det.rider_scores, strict=True):
        lines.append(fmt("rider", b, float(s)))
    return lines


def run_detect_images(images: list[Path], out: Path, cfg: object) -> dict[str, float]:
    """The daemon's single-frame detection path over ``images``; writes ``out/<stem>.txt``. Returns timing."""
    from edge.config import EdgeConfig
    from edge.detect.rider import RiderDetector

    assert isinstance(cfg, EdgeConfig)
    detector = RiderDetector.from_config(cfg.detect, cfg.face)
    out.mkdir(parents=True, exist_ok=True)
    times: list[float] = []
    for path in images:
        img = cv2.imread(str(path))
        if img is None:
            click.echo(f"skipped {path}: not a readable image", err=True)
            continue
        t0 = time.perf_counter()
        det = detector.detect(img)
        times.append(time.perf_counter() - t0)
        lines = prediction_lines(det, img.shape[1], img.shape[0], cfg.detect.no_helmet_threshold)
        (out / f"{path.stem}.txt").write_text("".join(line + "\n" for line in lines))
    return {"images": len(times), "mean_ms": 1e3 * float(np.mean(times)) if times else 0.0}


@click.command("detect-images")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for <stem>.txt predictions.",
)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Site config (default: built-in defaults).",
)
def detect_images(directory: Path, out: Path, config: Path | None) -> None:
    """Detect riders and heads in every image of DIRECTORY: lines `<label> <cx> <cy> <w> <h> <conf>`."""
    from anqi_contract.manifest import ModelFileError
    from edge.config import ConfigError, load_config, parse_config

    try:
        cfg = load_config(config) if config else parse_config({})
    except ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(2)
    images = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise click.ClickException(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    try:
        stats = run_detect_images(images, out, cfg)
    except ModelFileError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{stats['images']} images -> {out} ({stats['mean_ms']:.1f} ms per image)")


@click.group()
def models() -> None:
    """Model files: build and verify what models/manifest.yaml lists."""


@models.command()
@click.option(
    "--baseline",
    is_flag=True,
    help="Also build the helmet-detector YOLOv12m baseline (needs torch + ultralytics: the [train] extra).",
)
def prepare(baseline: bool) -> None:
    """Build the prepared models from registry packages (idempotent) and verify every SHA-256."""
    from anqi_contract.manifest import ModelFileError, load_manifest, verify
    from anqi_tools.prepare import prepare as do_prepare

    try:
        done = do_prepare(baseline=baseline)
        for name, what in done.items():
            click.echo(f"{name}: {what}")
        bad = 0
        for spec in load_manifest().models:
            if spec.baseline and not baseline:
                continue
            try:
                verify(spec)
                click.echo(f"{spec.name}: OK {spec.file}")
            except ModelFileError as e:
                bad += 1
                click.echo(f"{spec.name}: {e}", err=True)
    except ModelFileError as e:
        raise click.ClickException(str(e)) from None
    if bad:
        sys.exit(1)
