"""``anqi-edge run`` (the daemon), ``anqi-edge replay`` (a file through the full pipeline, as fast as
possible) and ``anqi-edge calibrate`` (homography check and band overlay for the installer)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge.config import ConfigError, EdgeConfig, load_config


def _load(path: Path) -> EdgeConfig:
    try:
        return load_config(path)
    except ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(2)


def _snapshot(snapshot: Path | None, video: Path | None, frame_index: int) -> "object":
    import cv2

    if snapshot is not None:
        image = cv2.imread(str(snapshot), cv2.IMREAD_COLOR)
        if image is None:
            raise click.ClickException(f"cannot read image {snapshot}")
        return image
    assert video is not None
    cap = cv2.VideoCapture(str(video))
    try:
        if not cap.isOpened():
            raise click.ClickException(f"cannot open video {video}")
        image = None
        for _ in range(frame_index + 1):
            ok, img = cap.read()
            if not ok:
                break
            image = img
        if image is None:
            raise click.ClickException(f"no frame could be read from {video}")
        return image
    finally:
        cap.release()


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--snapshot", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A still of the camera view.")
@click.option("--video", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Take the still from this video instead.")
@click.option("--frame", "frame_index", default=0, show_default=True, help="Frame of --video to draw on.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default="overlay.png", show_default=True, help="Overlay PNG to write.")
def calibrate(config: Path, snapshot: Path | None, video: Path | None, frame_index: int, out: Path) -> None:
    """Check the zone calibration of CONFIG and draw the capture band on a snapshot.

    Prints the homography's reprojection error and writes OUT: the 15-25 m band (tinted), distance
    ticks every 5 m, the calibration points (red circles) with their ground points mapped back
    (green crosses) and the detector's image region (blue). Exits 1 if the calibration is unusable.
    """
    import cv2
    import numpy as np

    from edge.zone import CalibrationError, CaptureZone, check_config

    cfg = _load(config)
    if (snapshot is None) == (video is None):
        raise click.UsageError("give exactly one of --snapshot IMAGE or --video VIDEO")
    image = _snapshot(snapshot, video, frame_index)
    assert isinstance(image, np.ndarray)
    try:
        zone = CaptureZone.from_config(cfg.zone)
    except CalibrationError as e:
        click.echo(f"{config.name}: zone.calibration: {e}", err=True)
        sys.exit(1)
    h, w = image.shape[:2]
    if cfg.zone.image_size is not None and tuple(cfg.zone.image_size) != (w, h):
        click.echo(f"note: calibration pixels refer to {cfg.zone.image_size[0]}x{cfg.zone.image_size[1]}, the snapshot is {w}x{h}: scaled")
    from edge.zone.overlay import draw_overlay

    m = zone.mapper
    sx = w / cfg.zone.image_size[0] if cfg.zone.image_size else 1.0
    sy = h / cfg.zone.image_size[1] if cfg.zone.image_size else 1.0
    points = [((p.image[0] * sx, p.image[1] * sy), p.ground) for p in cfg.zone.calibration]
    framed = zone.for_frame(w, h)
    click.echo(f"homography from {len(points)} points: mean error {m.reprojection_m:.3f} m on the ground, {framed.mapper.reprojection_px:.2f} px in the image")
    for (ip, gp), back in zip(points, framed.mapper.image_to_ground([ip for ip, _ in points])):
        click.echo(f"  image ({ip[0]:7.1f}, {ip[1]:7.1f}) -> ground ({back[0]:6.2f}, {back[1]:6.2f}) m  (given {gp[0]:g}, {gp[1]:g}; error {float(np.hypot(*(back - np.array(gp)))):.3f} m)")
    roi = framed.image_region(w, h)
    click.echo(f"band {cfg.zone.near_m:g}-{cfg.zone.far_m:g} m covers {100 * framed.visible_fraction(w, h):.1f}% of the image; detector region {roi}")
    overlay = draw_overlay(image, zone, points)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), overlay):
        raise click.ClickException(f"cannot write {out}")
    click.echo(f"wrote {out}")
    problems = check_config(cfg)
    for p in problems:
        click.echo(f"{config.name}: {p}", err=True)
    if problems:
        sys.exit(1)


@click.command()
def run() -> None:
    """Run the daemon."""
    raise click.ClickException("not built yet")


@click.command()
def replay() -> None:
    """Replay a video."""
    raise click.ClickException("not built yet")
