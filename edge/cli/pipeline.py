"""``anqi-edge run`` (the daemon), ``anqi-edge replay`` (a file through the full pipeline, as fast as
possible) and ``anqi-edge calibrate`` (homography check and band overlay for the installer)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge.cli.common import config_or_exit
from edge.config import EdgeConfig


def _snapshot(snapshot: Path | None, video: Path | None, frame_index: int) -> object:
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
@click.option(
    "--snapshot",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A still of the camera view.",
)
@click.option(
    "--video",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Take the still from this video instead.",
)
@click.option("--frame", "frame_index", default=0, show_default=True, help="Frame of --video to draw on.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default="overlay.png",
    show_default=True,
    help="Overlay PNG to write.",
)
def calibrate(config: Path, snapshot: Path | None, video: Path | None, frame_index: int, out: Path) -> None:
    """Check the zone calibration of CONFIG and draw the capture band on a snapshot.

    Prints the homography's reprojection error and writes OUT: the 15-25 m band (tinted), distance
    ticks every 5 m, the calibration points (red circles) with their ground points mapped back
    (green crosses) and the detector's image region (blue). Exits 1 if the calibration is unusable.
    """
    import cv2
    import numpy as np

    from edge.zone import CalibrationError, CaptureZone, check_config

    cfg = config_or_exit(config)
    if (snapshot is None) == (video is None):
        raise click.UsageError("give exactly one of --snapshot IMAGE or --video VIDEO")
    image = _snapshot(snapshot, video, frame_index)
    assert isinstance(image, np.ndarray)
    try:
        zone = CaptureZone.from_config(cfg.zone)
    except CalibrationError as e:
        click.echo(f"{config.name}: {e.key}: {e}", err=True)
        sys.exit(1)
    h, w = image.shape[:2]
    if cfg.zone.image_size is not None and tuple(cfg.zone.image_size) != (w, h):
        click.echo(
            f"note: calibration pixels refer to {cfg.zone.image_size[0]}x{cfg.zone.image_size[1]}, the snapshot is {w}x{h}: scaled"
        )
    from edge.zone.overlay import draw_overlay

    m = zone.mapper
    sx = w / cfg.zone.image_size[0] if cfg.zone.image_size else 1.0
    sy = h / cfg.zone.image_size[1] if cfg.zone.image_size else 1.0
    points = [((p.image[0] * sx, p.image[1] * sy), p.ground) for p in cfg.zone.calibration]
    framed = zone.for_frame(w, h)
    click.echo(
        f"homography from {len(points)} points: mean error {m.reprojection_m:.3f} m on the ground, {framed.mapper.reprojection_px:.2f} px in the image"
    )
    for (ip, gp), back in zip(points, framed.mapper.image_to_ground([ip for ip, _ in points]), strict=True):
        click.echo(
            f"  image ({ip[0]:7.1f}, {ip[1]:7.1f}) -> ground ({back[0]:6.2f}, {back[1]:6.2f}) m  (given {gp[0]:g}, {gp[1]:g}; error {float(np.hypot(*(back - np.array(gp)))):.3f} m)"
        )
    roi = framed.image_region(w, h)
    click.echo(
        f"band {cfg.zone.near_m:g}-{cfg.zone.far_m:g} m{' (inside zone.lane_polygon)' if cfg.zone.lane_polygon else ''} covers {100 * framed.visible_fraction(w, h):.1f}% of the image; detector region {roi}"
    )
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


def _print_summary(daemon: object, out: Path | None = None) -> None:
    from edge.daemon import EdgeDaemon

    assert isinstance(daemon, EdgeDaemon)
    st = daemon.stats
    s = st.summary()
    click.echo("")
    click.echo(
        f"frames {s['frames']} ({s['input_fps']} fps), detection on {s['detect_frames']} frames ({s['detect_fps']} fps), "
        f"{s['detect_errors']} detection errors, {s['tracks']} rider tracks"
    )
    if not st.violations:
        click.echo("no violations detected")
    for v in st.violations:
        where = daemon.event_media.get(v.event_id or "", [])
        state = f"event {v.event_id}" if v.event_id else f"NOT STORED ({v.error})"
        face = "face" if v.face_found else "no face"
        click.echo(f"  {v.type:<10} track {v.track_id:<3} at {v.decided_t_s:6.2f} s  {state}  [{face}]")
        for p in where:
            click.echo(f"      {p}")
    click.echo(f"events committed to the outbox: {s['events_committed']} (outbox {daemon.outbox.root})")
    if out is not None:
        click.echo(f"event JSON: {out / 'events'}")
    if s["relay_published"] is not None:
        click.echo(f"relay delivered (PUBACKed by the broker): {s['relay_published']}")
    else:
        click.echo("relay: not running (events wait in the outbox)")
    if s["prompt_latencies_s"]:
        click.echo(f"prompt start latency after decision (s): {s['prompt_latencies_s']}")


def _make_daemon(cfg: EdgeConfig, **kw: object) -> object:
    from edge.daemon import EdgeDaemon, StartupError

    try:
        return EdgeDaemon(cfg, **kw)  # type: ignore[arg-type]
    except StartupError as e:
        click.echo(f"anqi-edge: cannot start: {e}", err=True)
        sys.exit(3)


@click.command()
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Site config (YAML).",
)
@click.option(
    "--source",
    "source",
    default=None,
    help="Override source.uri: a file, rtsp:// URL, /dev/videoN or GStreamer pipeline.",
)
@click.option(
    "--until-eof",
    is_flag=True,
    help="File sources: stop at the end, wait for the relay, print what was found.",
)
@click.option(
    "--relay-wait",
    default=20.0,
    show_default=True,
    help="With --until-eof: seconds to wait for the broker to take every event.",
)
def run(config: Path, source: str | None, until_eof: bool, relay_wait: float) -> None:
    """Run the daemon: capture, detect, track, judge, persuade, collect evidence, relay.

    Stops on SIGTERM / SIGINT, finishing clips in progress. With --until-eof on a file it stops
    at the end of the file and prints a summary.
    """
    from anqi_contract.logs import setup_logging

    cfg = config_or_exit(config)
    setup_logging(cfg.device.log_level)
    if source is not None and Path(source).expanduser().exists():
        source = str(
            Path(source).expanduser().resolve()
        )  # a path on the command line is relative to the shell, not the config
    daemon = _make_daemon(
        cfg, mode="until_eof" if until_eof else "live", source_uri=source, relay_wait_s=relay_wait
    )
    daemon.run()  # type: ignore[attr-defined]
    if until_eof:
        _print_summary(daemon)
        _print_truth(daemon)
    _exit_if_no_video(daemon)


def _print_truth(daemon: object, truth_path: Path | None = None, backwards: bool = False) -> None:
    """The event-level result of this run against the truth file beside the video, when there is one
    (``<video stem>.truth.yaml``, see :mod:`anqi_tools.eventtruth`), or against ``truth_path`` (``backwards``:
    the video is that truth's clip reversed): true, missed, duplicated and false events, decisions outside
    the band, faces of someone else."""
    import json

    from edge.daemon import EdgeDaemon

    assert isinstance(daemon, EdgeDaemon)
    if daemon.source.kind != "file":
        return
    from anqi_tools.eventtruth import load_truth, match_events, positions_file, report, truth_beside

    tpath = truth_path or truth_beside(Path(daemon.source.uri))
    if tpath is None:
        return
    try:
        truth = load_truth(tpath, positions_file(tpath), backwards=backwards)
    except Exception as e:  # noqa: BLE001 - a truth file we cannot read must not fail the run
        click.echo(f"truth file {tpath}: cannot read it ({type(e).__name__}: {e})")
        return
    cfg = daemon.cfg
    band = (cfg.zone.near_m, cfg.zone.far_m) if cfg.zone.calibrated else (0.0, float("inf"))
    rules = {k for k in ("no_helmet", "wrong_way", "red_light", "passenger") if getattr(cfg.rules, k).enabled}
    score = match_events([json.loads(e.to_json()) for e in daemon.events], truth, band, rules)
    click.echo("")
    how = "played backwards" if backwards else "the clip as it is"
    for line in report(score, truth, f"against {tpath.name} ({how})"):
        click.echo(line)


def _exit_if_no_video(daemon: object) -> None:
    from edge.daemon import EdgeDaemon

    assert isinstance(daemon, EdgeDaemon)
    if daemon.fatal:
        click.echo(f"anqi-edge: stopped: {daemon.fatal}", err=True)
        sys.exit(5)
    if daemon.stats.frames == 0:
        cam = daemon.health.snapshot()["components"].get("camera", {})
        click.echo(
            f"anqi-edge: no video was read from the source: {cam.get('detail', 'unknown reason')}", err=True
        )
        sys.exit(4)


@click.command()
@click.argument("video", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Site config (YAML).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for events/, media/ and the outbox.",
)
@click.option(
    "--relay/--no-relay",
    default=False,
    show_default=True,
    help="Also publish the events over MQTT (local broker when none is configured).",
)
def replay(video: Path, config: Path, out: Path, relay: bool) -> None:
    """Run VIDEO through the full pipeline as fast as possible.

    Events go to OUT/events/<event_id>.json, their evidence (face JPEG, context JPEG, MP4 clip) to
    OUT/media/<event_id>/, the outbox database to OUT/. Actuators use their configured backends.
    """
    from anqi_contract.logs import setup_logging

    cfg = config_or_exit(config)
    setup_logging(cfg.device.log_level)
    if not video.is_file():
        raise click.ClickException(f"video not found: {video}")
    out.mkdir(parents=True, exist_ok=True)
    daemon = _make_daemon(
        cfg, mode="replay", source_uri=str(video.resolve()), out_dir=out.resolve(), relay=relay
    )
    daemon.run()  # type: ignore[attr-defined]
    _print_summary(daemon, out)
    _print_truth(daemon)
    _exit_if_no_video(daemon)
