#!/usr/bin/env python3
"""Regenerate the shipped prompt packs (audio_prompts/<lang>/<message>.wav) from audio_prompts/prompts.yaml.

Every pack with a ``tts`` entry is synthesised with espeak-ng, then trimmed, normalised to -1 dBFS
and written as 16 kHz mono 16-bit WAV by sox. Prints one line per file (duration, RMS level) and
exits 1 if a file came out empty or implausibly short/long.

    .venv/bin/python scripts/make_prompts.py [--lang zh-cmn] [--out DIR] [--check]

Site recordings (a dialect no TTS voice speaks) are brought into the same shape with --import:
every <message>.<ext> in DIR (wav, flac, mp3, m4a, amr, ogg: anything ffmpeg decodes) becomes
<out>/<lang>/<message>.wav, trimmed, normalised, 16 kHz mono 16-bit::

    .venv/bin/python scripts/make_prompts.py --import ~/recordings --lang wuu-huzhou --out /etc/anqi/prompts
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
    dur = float(
        subprocess.run(["sox", "--i", "-D", str(path)], capture_output=True, text=True, check=True).stdout
    )
    stats = subprocess.run(
        ["sox", str(path), "-n", "stats"], capture_output=True, text=True, check=True
    ).stderr
    rms = next(
        (float(line.split()[-1]) for line in stats.splitlines() if line.startswith("RMS lev dB")),
        float("-inf"),
    )
    return {"duration_s": dur, "rms_db": rms}


SOX_TIDY = [
    "silence",
    "1",
    "0.02",
    "0.5%",
    "reverse",
    "silence",
    "1",
    "0.02",
    "0.5%",
    "reverse",
    "norm",
    "-1",
    "rate",
    "-v",
    str(RATE),
    "pad",
    "0.05",
    "0.15",
]


def tidy(src: Path, out: Path) -> None:
    """Trim leading/trailing silence, normalise to -1 dBFS, 16 kHz mono 16-bit, 50/150 ms padding."""
    subprocess.run(["sox", str(src), "-r", str(RATE), "-c", "1", "-b", "16", str(out), *SOX_TIDY], check=True)


def import_recordings(src: Path, lang: str, out_root: Path, messages: list[str]) -> int:
    """Convert a site's recordings into a pack; returns the number of messages still missing."""
    folder = out_root / lang
    folder.mkdir(parents=True, exist_ok=True)
    missing = 0
    for message in messages:
        found = sorted(p for p in src.glob(f"{message}.*") if p.is_file())
        if not found:
            print(f"{lang}/{message}: MISSING (no {message}.* in {src})")
            missing += 1
            continue
        with tempfile.TemporaryDirectory() as tmp:
            decoded = Path(tmp) / "decoded.wav"
            subprocess.run(
                [
                    "ffmpeg",
                    "-v",
                    "error",
                    "-y",
                    "-i",
                    str(found[0]),
                    "-ac",
                    "1",
                    "-ar",
                    "48000",
                    str(decoded),
                ],
                check=True,
            )
            tidy(decoded, folder / f"{message}.wav")
        st = sox_stat(folder / f"{message}.wav")
        print(
            f"{lang}/{message}.wav  from {found[0].name}  {st['duration_s']:.2f} s  rms {st['rms_db']:.1f} dB"
        )
    return missing


def phonemes(text: str, voice: str) -> str:
    """espeak-ng's phoneme reading of ``text``; a ``(en)`` inside means it fell back to English letters."""
    return subprocess.run(
        ["espeak-ng", "-q", "-x", "-v", voice, text], capture_output=True, text=True, check=True
    ).stdout.strip()


def synthesise(text: str, tts: dict[str, Any], out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            [
                "espeak-ng",
                "-v",
                tts["voice"],
                "-s",
                str(tts.get("speed", 150)),
                "-p",
                str(tts.get("pitch", 50)),
                "-w",
                str(raw),
                text,
            ],
            check=True,
        )
        tidy(raw, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lang", action="append", help="Only this pack (repeatable).")
    ap.add_argument(
        "--out", type=Path, default=PROMPTS, help="Folder to write the packs into (default: audio_prompts/)."
    )
    ap.add_argument("--check", action="store_true", help="Do not synthesise; only report the existing files.")
    ap.add_argument(
        "--import",
        dest="import_dir",
        type=Path,
        help="Convert the recordings in this folder into the pack --lang (exactly one).",
    )
    args = ap.parse_args()
    spec = yaml.safe_load((PROMPTS / "prompts.yaml").read_text(encoding="utf-8"))
    if args.import_dir:
        if not args.lang or len(args.lang) != 1:
            ap.error("--import needs exactly one --lang (the pack to make, e.g. wuu-huzhou)")
        if not args.import_dir.is_dir():
            ap.error(f"--import: folder not found: {args.import_dir}")
        for tool in ("ffmpeg", "sox"):
            if shutil.which(tool) is None:
                print(f"make_prompts: {tool} not found (apt-get install ffmpeg sox)", file=sys.stderr)
                return 2
        return 1 if import_recordings(args.import_dir, args.lang[0], args.out, spec["messages"]) else 0
    for tool in ("espeak-ng", "sox"):
        if not args.check and shutil.which(tool) is None:
            print(f"make_prompts: {tool} not found (apt-get install espeak-ng sox)", file=sys.stderr)
            return 2
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
            why = "" if ok else " (duration or level)"
            if shutil.which("espeak-ng") and "(en)" in phonemes(entry[tts.get("read", "text")], tts["voice"]):
                ok, why = (
                    False,
                    " (the voice read part of the text as English letters: check the spelling / pinyin)",
                )
            bad += not ok
            print(
                f"{lang}/{message}.wav  {st['duration_s']:.2f} s  rms {st['rms_db']:.1f} dB  {out.stat().st_size // 1024} KiB  {'ok' if ok else 'SUSPECT' + why}"
            )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
