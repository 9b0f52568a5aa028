#!/usr/bin/env python3
"""Regenerate the shipped prompt packs (audio_prompts/<lang>/<message>.wav) from audio_prompts/prompts.yaml.

Every pack with a ``tts`` entry is synthesised with espeak-ng, then trimmed, normalised to -1 dBFS
and written as 16 kHz mono 16-bit WAV by sox. Prints one line per file (duration, RMS level) and
exits 1 if a file came out empty or implausibly short/long.

    .venv/bin/python scripts/make_prompts.py [--lang zh-cmn] [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "audio_prompts"
RATE = 16000


def sox_stat(path: Path) -> dict[str, float]:
    """``sox --i -D`` duration and ``stats`` RMS level (dB) of a WAV."""
    dur = float(subprocess.run(["sox", "--i", "-D", str(path)], capture_output=True, text=True, check=True).stdout)
    stats = subprocess.run(["sox", str(path), "-n", "stats"], capture_output=True, text=True, check=True).stderr
    rms = next((float(line.split()[-1]) for line in stats.splitlines() if line.startswith("RMS lev dB")), float("-inf"))
    return {"duration_s": dur, "rms_db": rms}


def synthesise(text: str, tts: dict[str, Any], out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            ["espeak-ng", "-v", tts["voice"], "-s", str(tts.get("speed", 150)), "-p", str(tts.get("pitch", 50)), "-w", str(raw), text],
            check=True,
        )
        # trim leading/trailing silence, normalise, resample to 16 kHz mono 16-bit, 50/150 ms padding
        subprocess.run(
            ["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out),
             "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse",
             "norm", "-1", "rate", "-v", str(RATE), "pad", "0.05", "0.15"],
            check=True,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lang", action="append", help="Only this pack (repeatable).")
    ap.add_argument("--out", type=Path, default=PROMPTS, help="Folder to write the packs into (default: audio_prompts/).")
    ap.add_argument("--check", action="store_true", help="Do not synthesise; only report the existing files.")
    args = ap.parse_args()
    for tool in ("espeak-ng", "sox"):
        if not args.check and shutil.which(tool) is None:
            print(f"make_prompts: {tool} not found (apt-get install espeak-ng sox)", file=sys.stderr)
            return 2
    spec = yaml.safe_load((PROMPTS / "prompts.yaml").read_text(encoding="utf-8"))
    bad = 0
    for lang, pack in spec["languages"].items():
        if args.lang and lang not in args.lang:
            continue
        tts = pack.get("tts")
        if not tts:
            print(f"{lang}: no tts (recorded on site), skipped")
            continue
        folder = args.out / lang
        folder.mkdir(parents=True, exist_ok=True)
        for message in spec["messages"]:
            entry = pack["messages"][message]
            out = folder / f"{message}.wav"
            if not args.check:
                synthesise(entry[tts.get("read", "text")], tts, out)
            st = sox_stat(out)
            ok = 0.8 <= st["duration_s"] <= 8.0 and st["rms_db"] > -40
            bad += not ok
            print(f"{lang}/{message}.wav  {st['duration_s']:.2f} s  rms {st['rms_db']:.1f} dB  {out.stat().st_size // 1024} KiB  {'ok' if ok else 'SUSPECT'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
