"""Leave-one-source-out table of the head classifier anqi-head-cls (issue 16 point 3, classifier part).

For each data set (../shared's two and the public corpus sources of models/data/sources.yaml, built
by models/data/build_corpus.py), models/train/train_head_cls.py trains without it (``--without``) and
reports it whole: no_helmet and helmet recall / precision of the classifier on that source's true head
boxes (plus its not_head crops). These are crop-level figures: the detector is not in the loop (on the
public sources it finds only a few heads, see models/cards/anqi-rider-head.md).

    .train/bin/python benchmarks/loso.py [--epochs 20] [--threads 2] [--only corpus:kaggle-bikeshelmets]

Each fold is one training (about 2-4 minutes on 2 cores); models go to models/build/loso/.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_SETS = ["helmet9-dev", "thaigate-dev"]
CORPUS_SOURCES = ["kaggle-bikeshelmets", "pavan-rider-helmet"]
NO_HELMET = re.compile(r"(?<![\w])no_helmet recall (?P<r>[\d.]+) precision (?P<p>[\d.]+)")
HELMET = re.compile(r"(?<![\w])helmet recall (?P<r>[\d.]+) precision (?P<p>[\d.]+)")
HEADS = re.compile(r"heads=(?P<n>\d+)")


def parse(last: str, ds: str) -> dict[str, float] | None:
    """The figures of data set ``ds`` in an ``epoch ...`` line of train_head_cls.py."""
    for seg in last.split(" | "):
        if not seg.startswith(f"{ds}: "):
            continue
        nh, h, n = NO_HELMET.search(seg), HELMET.search(seg), HEADS.search(seg)
        if nh and h and n:
            return {
                "no_helmet_recall": float(nh["r"]),
                "no_helmet_precision": float(nh["p"]),
                "helmet_recall": float(h["r"]),
                "helmet_precision": float(h["p"]),
                "heads": int(n["n"]),
            }
    return None


def fold(left_out: str, epochs: int, threads: int) -> dict[str, float]:
    out = ROOT / "models" / "build" / "loso" / f"{left_out.replace(':', '_')}.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(ROOT / "models" / "train" / "train_head_cls.py"),
        "--epochs",
        str(epochs),
        "--width",
        "2",
        "--threads",
        str(threads),
        "--corpus",
        *CORPUS_SOURCES,
        "--without",
        left_out.removeprefix("corpus:"),
        "--out",
        str(out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"fold {left_out} failed:\n{r.stderr[-2000:]}")
    last = [ln for ln in r.stdout.splitlines() if ln.startswith("epoch ")][-1]
    row = parse(last, left_out)
    if row is not None:
        return row
    raise SystemExit(f"fold {left_out}: no report line for it in: {last}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="Run only these folds (data set names, corpus:<source>).")
    a = ap.parse_args()
    sets = a.only or SHARED_SETS + [f"corpus:{c}" for c in CORPUS_SOURCES]
    rows = {}
    for ds in sets:
        rows[ds] = fold(ds, a.epochs, a.threads)
        r = rows[ds]
        print(
            f"{ds:<28} no_helmet R {r['no_helmet_recall']:.3f} P {r['no_helmet_precision']:.3f}  "
            f"helmet R {r['helmet_recall']:.3f} P {r['helmet_precision']:.3f}  heads {r['heads']}",
            flush=True,
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
