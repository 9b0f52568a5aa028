"""Rehearse a scripted sequence of violations through :class:`Persuasion` and report what happened.

Used by the tests and ``benchmarks/prompt_latency.py`` in a child process, because PortAudio reads
the ALSA configuration (``~/.asoundrc``) once when it initialises::

    python -m edge.actuators.drill --config site.yaml --script '[[0.0, "no_helmet", 1], [0.4, "red_light", 2]]' --out report.json

Each script row is ``[seconds after start, violation_type, track_id]``; the report (JSON) lists the
played prompts (times relative to the start), the latencies and the health snapshot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from anqi_contract.logs import setup_logging
from edge.actuators.persuasion import Persuasion
from edge.actuators.prompts import PromptPacks
from edge.actuators.timeswitch import utc_now
from edge.config import load_config, parse_config
from edge.health import Health


def run_drill(
    persuasion: Persuasion,
    script: list[tuple[float, str, int]],
    settle_s: float = 0.5,
    close_after_s: float | None = None,
) -> dict[str, Any]:
    """Start, feed ``script`` at its times, wait until the speaker has been idle ``settle_s`` (or until
    ``close_after_s`` after the start), close."""
    persuasion.start()
    t0 = time.monotonic()
    for at, violation, track in sorted(script, key=lambda r: r[0]):
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        persuasion.on_violation(violation, int(track), time.monotonic())
    speaker = persuasion.speaker
    deadline = time.monotonic() + 120 if close_after_s is None else t0 + close_after_s
    while time.monotonic() < deadline:
        idle = speaker.idle
        last_end = speaker.played[-1].end_mono if speaker.played else t0
        if (
            close_after_s is None
            and idle
            and time.monotonic() - max(last_end, t0 + (script[-1][0] if script else 0)) > settle_s
        ):
            break
        time.sleep(0.05)
    t_close = time.monotonic()
    persuasion.close()
    close_s = time.monotonic() - t_close
    return {
        "close_s": close_s,
        "played": [
            {
                "message": p.message,
                "violation": p.violation_type,
                "track_id": p.track_id,
                "languages": list(p.languages),
                "decided_s": p.decided_mono - t0,
                "start_s": p.start_mono - t0,
                "end_s": p.end_mono - t0,
                "latency_s": p.latency_s,
                "speaker_latency_s": p.speaker_latency_s,
                "volume": p.volume,
                "device": p.device,
                "coalesced": list(p.coalesced_tracks),
                "waited_for_speaker": p.waited_for_speaker,
                "cut": p.cut,
            }
            for p in persuasion.played
        ],
        "latencies_s": list(persuasion.latencies_s),
        "outcomes": dict(persuasion.speaker.outcomes),
        "lights": [{"output": e.output, "lit": e.lit, "t_s": e.mono - t0} for e in persuasion.lights.events],
        "health": persuasion.health.snapshot()["components"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--config", type=Path, help="Site config; default: built-in defaults with the time switch off."
    )
    ap.add_argument("--script", required=True, help="JSON list of [t_s, violation_type, track_id].")
    ap.add_argument("--out", type=Path, help="Write the JSON report here (default: stdout).")
    ap.add_argument(
        "--at",
        help="ISO local time the clock is pinned to (time switch, volume windows), e.g. 2026-05-01T23:30:00+08:00.",
    )
    ap.add_argument(
        "--close-after", type=float, help="Close this many seconds after the start, whatever is playing."
    )
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args(argv)
    setup_logging(args.log_level, sys.stderr)
    cfg = load_config(args.config) if args.config else parse_config({"time_switch": {"enabled": False}})
    pinned = datetime.fromisoformat(args.at) if args.at else None
    health = Health(cfg.data_dir / "drill-health.json", cfg.device.device_id)
    persuasion = Persuasion.from_config(
        cfg.speaker,
        cfg.lights,
        cfg.time_switch,
        cfg.device.timezone,
        PromptPacks.for_site(cfg.speaker, cfg.rules, cfg.base_dir),
        health,
        clock=(lambda: pinned) if pinned else utc_now,
    )
    script = [tuple(r) for r in json.loads(args.script)]
    report = run_drill(persuasion, script, close_after_s=args.close_after)
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
