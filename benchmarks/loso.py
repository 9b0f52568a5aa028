"""Leave-one-source-out table (issue 16 point 3), over the head classifier with the detector fixed.

For each data set (../shared's two and the public corpus sources built by
models/data/build_corpus.py into models/build/corpus/), models/train/train_head_cls.py trains
``anqi-head-cls`` without it (``--without``, the shipped recipe: ``--epochs 20 --width 2
--detector-crops`` plus the other corpus sources), and that classifier goes through the daemon's
own ``detect-images`` path (``benchmarks/accuracy.py`` on a private models folder made by
models/train/trial.py) with the committed detector ``anqi-rider-head`` unchanged. Printed per
source: no_helmet and helmet recall / precision at IoU 0.3, for the shipped models and for the
left-out fold, plus the fold's crop-level figures (the classifier alone on true head boxes).

What is left out and what is not, exactly:
- the detector is NOT retrained per fold (one detector per source does not fit a 2-core CPU):
  the committed detector was trained on helmet9-dev and thaigate-dev's training frames and on no
  corpus source. So the corpus rows are fully leave-one-source-out (neither model saw the source;
  they are evaluated on every frame of it, ``accuracy.py --whole``); the two ../shared rows are
  leave-one-source-out for the classifier only and are evaluated on their written validation split
  (frames the detector never trained on).
- the shipped row of a source is the committed models on the same frames.

    .train/bin/python benchmarks/loso.py [--epochs 20] [--threads 2] [--only corpus:kaggle-bikeshelmets]
                                         [--eval-python .venv/bin/python]

Each fold is one classifier training (a few minutes on 2 cores) and one detect-images run;
models go to models/build/loso/. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_SETS = ["helmet9-dev", "thaigate-dev"]
CORPUS = ROOT / "models" / "build" / "corpus"
NO_HELMET = re.compile(r"(?<![\w])no_helmet recall (?P<r>[\d.]+) precision (?P<p>[\d.]+)")
HELMET = re.compile(r"(?<![\w])helmet recall (?P<r>[\d.]+) precision (?P<p>[\d.]+)")
HEADS = re.compile(r"heads=(?P<n>\d+)")


def corpus_sources() -> list[str]:
    """The sources models/data/build_corpus.py has written (a train and a val folder each)."""
    if not CORPUS.is_dir():
        return []
    return sorted(p.name for p in CORPUS.iterdir() if (p / "images" / "train").is_dir())


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


def train_fold(left_out: str, sources: list[str], epochs: int, threads: int) -> tuple[Path, dict[str, float]]:
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
        "--detector-crops",
        "--corpus",
        *sources,
        "--without",
        left_out.removeprefix("corpus:"),
        "--out",
        str(out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"fold {left_out} failed:\n{r.stderr[-2000:]}")
    last = [ln for ln in r.stdout.splitlines() if ln.startswith("epoch ")][-1]
    row = parse(last, left_out)
    if row is None:
        raise SystemExit(f"fold {left_out}: no report line for it in: {last}")
    return out, row


def detect_images(ds: str, eval_python: str, models_dir: Path | None) -> dict[str, dict[str, float]]:
    """benchmarks/accuracy.py's figures for ``ds`` (every frame of a corpus source, the val split of a
    ../shared set), with the models in ``models_dir`` (None: the committed ones)."""
    cmd = [
        eval_python,
        str(ROOT / "benchmarks" / "accuracy.py"),
        "--datasets",
        ds,
        "--no-baseline",
        "--no-face",
    ]
    if ds.startswith("corpus:"):
        cmd.append("--whole")
    env = dict(os.environ)
    if models_dir is not None:
        env["ANQI_MODELS_DIR"] = str(models_dir)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode != 0:
        raise SystemExit(f"accuracy.py on {ds} failed:\n{r.stdout[-1000:]}\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])[ds]


def fmt(m: dict[str, dict[str, float]]) -> str:
    nh, h = m["no_helmet"], m["helmet"]
    return f"{nh['recall']:.3f} / {nh['precision']:.3f}  {h['recall']:.3f} / {h['precision']:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="Run only these folds (data set names, corpus:<source>).")
    ap.add_argument(
        "--eval-python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="The interpreter with the appliance installed (runs benchmarks/accuracy.py; default .venv's).",
    )
    a = ap.parse_args()
    sources = corpus_sources()
    if not sources:
        raise SystemExit(f"no corpus under {CORPUS}: run models/data/build_corpus.py first")
    sets = a.only or SHARED_SETS + [f"corpus:{c}" for c in sources]
    rows: dict[str, dict[str, object]] = {}
    print(
        f"{'left-out source':<28} {'frames':<6} {'nh/h heads':>10}  shipped: nh R/P  h R/P      "
        f"LOSO detect-images: nh R/P  h R/P   LOSO crops: nh R/P  h R/P",
        flush=True,
    )
    for ds in sets:
        onnx, crops = train_fold(ds, sources, a.epochs, a.threads)
        trial = onnx.with_suffix("")
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "models" / "train" / "trial.py"),
                "--cls",
                str(onnx),
                "--out",
                str(trial),
            ],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        shipped = detect_images(ds, a.eval_python, None)
        fold = detect_images(ds, a.eval_python, trial)
        rows[ds] = {
            "frames": "all" if ds.startswith("corpus:") else "val",
            "shipped": shipped,
            "loso": fold,
            "loso_crops": crops,
        }
        print(
            f"{ds:<28} {rows[ds]['frames']:<6} {shipped['no_helmet']['labelled']:>4}/{shipped['helmet']['labelled']:<5}  "
            f"{fmt(shipped)}      {fmt(fold)}      {crops['no_helmet_recall']:.3f} / {crops['no_helmet_precision']:.3f}  "
            f"{crops['helmet_recall']:.3f} / {crops['helmet_precision']:.3f}",
            flush=True,
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
