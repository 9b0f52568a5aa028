"""Rebuild the public-repository training corpus (issue 16) from models/data/sources.yaml.

Each source (YOLO export: images/ + labels/; or VOC: images/ + annotations/*.xml, or with `layout: flat`
each <name>.xml beside its image, as Roboflow's Pascal VOC export writes them) is read from its snapshot (search tool's `fetch`: a bare git directory under
/work/.mirror/<owner>+<name>/repo, or --mirror) at the commit sources.yaml names, and written to the
ignored models/build/corpus/<source>/{images,labels}/{train,val}/ with labels in the project's classes
(0 rider, 1 helmet, 2 no_helmet). Images are never committed.

What is dropped, per source:
- Roboflow augmentation copies: `<stem>_jpg.rf.<hash>.jpg` files of one source image keep one copy;
- near-duplicates: a 64-bit difference hash (dHash) within Hamming distance --hamming of a kept frame;
- vertically flipped or 90/180/270-degree rotated copies: a frame whose dHash matches the dHash of a
  kept frame turned that way;
- frames that are (near-)duplicates of a frame of an earlier source in sources.yaml;
- frames with no label in a mapped class (in the first source: background car / plate photos);
- with `require_head_per_rider: true` on a source, frames where a rider box holds no head box in its
  upper half (sources that box helmet heads only: the bare head of such a rider is unlabelled);
- with `vehicle_classes` on a source (source classes of the two-wheeler, not written out), frames where a
  vehicle box has no head box over it (a parked bike, or a rider whose head was left unlabelled);
- with `exclude_regex` on a source, frames whose source image name matches it (a part of an export whose
  provenance the export's licence cannot cover, e.g. watermarked stock photos).
The split is by file-name group (the source image name's prefix and its trailing number in blocks of
--block consecutive numbers, e.g. `BikesHelmets#4`; or the first capture group of a source's
`group_regex`, e.g. the video a frame was cut from), never at random: a group's frames all go to
train or all to val.

    python models/data/build_corpus.py [--mirror /work/.mirror] [--out models/build/corpus]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["rider", "helmet", "no_helmet"]
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")
RF_COPY = re.compile(r"^(?P<stem>.+?)_(?:jpg|jpeg|png|bmp)\.rf\.[0-9a-f]+$", re.IGNORECASE)
TRAILING_NUMBER = re.compile(r"^(?P<prefix>.*?)[-_ .()]*(?P<num>\d+)[-_ .()]*$")
# issue 16: licences that allow training and shipping derived weights (matched at the start of `licence`)
ALLOWED_LICENCES = ("CC BY", "CC0", "Public Domain", "MIT", "Apache-2.0", "BSD")
# issue 16: kept apart for the independent check, with the Roboflow projects that copy their frames
BANNED = (
    "trinhan9090/helmet-detection-in-real-world-traffic-scenes-using-object-detection-models",
    "punmyidol/motorcycle-helmet-detection-yolov8",
    "helmet-detection-xy5ky/helmet-htftb",
    "hi-xnpr5/helmet-detection-zrrim",
)
VEHICLE = -1  # label_rows' class for a `vehicle_classes` box: checked against the heads, never written
REQUIRED_FIELDS = ("name", "repo", "commit", "path", "licence", "attribution", "classes", "viewpoint")


def git(gitdir: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={gitdir}", *args], check=True, capture_output=True).stdout


def dhash(gray: np.ndarray) -> int:
    """64-bit difference hash of a grayscale image."""
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def turned(gray: np.ndarray) -> list[np.ndarray]:
    """The vertically flipped and 90/180/270-degree rotated versions of a frame."""
    return [
        cv2.flip(gray, 0),
        cv2.rotate(gray, cv2.ROTATE_90_CLOCKWISE),
        cv2.rotate(gray, cv2.ROTATE_180),
        cv2.rotate(gray, cv2.ROTATE_90_COUNTERCLOCKWISE),
    ]


def near(h: int, hashes: list[int], limit: int) -> bool:
    return any(bin(h ^ k).count("1") <= limit for k in hashes)


def source_stem(name: str) -> str:
    stem = Path(name).stem
    m = RF_COPY.match(stem)
    return m.group("stem") if m else stem


def group_of(stem: str, block: int) -> str:
    """File-name group: the name's prefix and its trailing number in blocks of `block` consecutive
    numbers (frames numbered together were taken together), or the whole name if it has no number."""
    m = TRAILING_NUMBER.match(stem)
    if not m:
        return stem
    return f"{m.group('prefix')}#{int(m.group('num')) // block}"


def rider_heads_labelled(rows: list[tuple]) -> bool:
    """Every rider box holds a head box (helmet or no_helmet) whose centre lies in the rider box's
    width and upper half: in a source that labels helmet heads but not bare ones, a rider without one
    has an unlabelled head that a detector would learn as background."""
    rider = CLASSES.index("rider")
    heads = [(x, y) for c, x, y, _w, _h in rows if c in (CLASSES.index("helmet"), CLASSES.index("no_helmet"))]
    for c, x, y, w, h in rows:
        if c != rider:
            continue
        x0, x1, y0 = x - w / 2, x + w / 2, y - h / 2
        if not any(x0 <= hx <= x1 and y0 <= hy <= y0 + h / 2 for hx, hy in heads):
            return False
    return True


def vehicle_heads_labelled(rows: list[tuple]) -> bool:
    """Every vehicle box (class VEHICLE) has a head box whose centre lies in the box's width and between
    0.8 box heights above its top and its middle: the rider's head sits over a bike box that may or may
    not include the rider. A vehicle without one is parked or carries a rider whose head is unlabelled."""
    heads = [(x, y) for c, x, y, _w, _h in rows if c in (CLASSES.index("helmet"), CLASSES.index("no_helmet"))]
    for c, x, y, w, h in rows:
        if c != VEHICLE:
            continue
        x0, x1, y0 = x - w / 2, x + w / 2, y - h / 2
        if not any(x0 <= hx <= x1 and y0 - 0.8 * h <= hy <= y0 + h / 2 for hx, hy in heads):
            return False
    return True


def is_image(path: str, src: dict) -> bool:
    """An image of the export: under an images/ folder, or anywhere in a `layout: flat` source."""
    return path.lower().endswith(IMAGE_EXT) and (src.get("layout") == "flat" or "/images/" in path)


def is_val(group: str, val_every: int) -> bool:
    return zlib.crc32(group.encode()) % val_every == 0


def label_rows(src: dict, gitdir: Path, blobs: dict[str, str], path: str) -> list[tuple] | None:
    """(project class, cx, cy, w, h normalised) of one image's labels in mapped classes; None: no label file."""
    cmap = {k: CLASSES.index(v) for k, v in src["classes"].items()}
    cmap.update({k: VEHICLE for k in src.get("vehicle_classes") or ()})
    if src.get("format", "yolo") == "voc":
        if src.get("layout") == "flat":
            ann = path.rsplit(".", 1)[0] + ".xml"
        else:
            ann = f"{src['path'].rstrip('/')}/{src.get('annotations', 'annotations')}/{Path(path).stem}.xml"
        if ann not in blobs:
            return None
        root = ET.fromstring(git(gitdir, "cat-file", "blob", blobs[ann]))
        rows = []  # in pixels here, normalised by the decoded image's size (some XML sizes are wrong)
        for obj in root.iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in cmap:
                continue
            x0, y0, x1, y1 = (
                float(obj.findtext(f"bndbox/{k}") or 0) for k in ("xmin", "ymin", "xmax", "ymax")
            )
            rows.append((cmap[name], (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0))
        return rows
    label_path = re.sub(r"/images/", "/labels/", path, count=1).rsplit(".", 1)[0] + ".txt"
    if label_path not in blobs:
        return None
    rows = []
    for line in git(gitdir, "cat-file", "blob", blobs[label_path]).decode().splitlines():
        parts = line.split()
        if not parts or int(parts[0]) not in cmap:
            continue
        if len(parts) == 5:
            x, y, w, h = map(float, parts[1:])
        elif len(parts) >= 7 and len(parts) % 2 == 1:
            # a YOLO segmentation row (class x1 y1 x2 y2 ...): the box around the polygon
            xs, ys = [float(v) for v in parts[1::2]], [float(v) for v in parts[2::2]]
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
            x, y, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
        else:
            raise SystemExit(f"{src['name']}: {label_path}: a label row of {len(parts)} values: {line!r}")
        rows.append((cmap[int(parts[0])], x, y, w, h))
    return rows


def check_source(src: dict, where: str) -> None:
    """Refuse a sources.yaml entry that lacks a field, maps to an unknown class, has a licence outside
    issue 16's list or comes from a repository / Roboflow project kept for the independent check."""
    if not isinstance(src, dict):
        raise SystemExit(f"{where}: a source must be a mapping, got {type(src).__name__}")
    name = src.get("name", where)
    for field in REQUIRED_FIELDS:
        if not src.get(field):
            raise SystemExit(f"{where} ({name}): field '{field}' is missing or empty")
    if not re.fullmatch(r"[0-9a-f]{40}", str(src["commit"])):
        raise SystemExit(f"{where} ({name}): field 'commit' must be a 40-hex commit, got {src['commit']!r}")
    if src.get("exclude_regex"):
        try:
            re.compile(src["exclude_regex"])
        except re.error as e:
            raise SystemExit(
                f"{where} ({name}): field 'exclude_regex' {src['exclude_regex']!r}: {e}"
            ) from None
    if src.get("group_regex"):
        try:
            if re.compile(src["group_regex"]).groups < 1:
                raise re.error("needs one capturing group")
        except re.error as e:
            raise SystemExit(f"{where} ({name}): field 'group_regex' {src['group_regex']!r}: {e}") from None
    if src.get("format", "yolo") not in ("yolo", "voc"):
        raise SystemExit(f"{where} ({name}): field 'format' must be yolo or voc, got {src['format']!r}")
    if src.get("layout", "folders") not in ("folders", "flat"):
        raise SystemExit(f"{where} ({name}): field 'layout' must be folders or flat, got {src['layout']!r}")
    if set(src.get("vehicle_classes") or ()) & set(src["classes"]):
        raise SystemExit(f"{where} ({name}): field 'vehicle_classes' repeats a mapped class")
    bad = {k: v for k, v in src["classes"].items() if v not in CLASSES}
    if bad:
        raise SystemExit(
            f"{where} ({name}): field 'classes' maps to unknown project classes {bad}; use {CLASSES}"
        )
    licence_name = str(src["licence"]).strip().split("(")[0]
    if not licence_name.startswith(ALLOWED_LICENCES) or re.search(
        r"-(NC|ND|SA)\b|non-?commercial|no-?deriv|share-?alike", licence_name, re.IGNORECASE
    ):
        raise SystemExit(
            f"{where} ({name}): field 'licence' {src['licence']!r} does not start with one of {ALLOWED_LICENCES}"
        )
    text = " ".join(str(src.get(k, "")) for k in ("repo", "attribution", "roboflow")).lower()
    for banned in BANNED:
        if banned in text:
            raise SystemExit(f"{where} ({name}): {banned} is kept for the independent check (issue 16)")


def build_source(
    src: dict,
    mirror: Path,
    out: Path,
    hamming: int,
    val_every: int,
    block: int,
    seen: list[int],
    seen_turned: list[int],
    write: bool = True,
) -> dict:
    """Write one source's kept frames; `seen` / `seen_turned` hold the dHashes of earlier sources'
    frames and of their flipped / rotated versions (a later source's copy of either is dropped)."""
    owner_name = src["repo"].replace("/", "+")
    gitdir = mirror / owner_name / "repo"
    if not gitdir.is_dir():
        raise SystemExit(f"{src['name']}: snapshot {gitdir} missing: fetch github:{src['repo']} first")
    commit = src["commit"]
    base = src["path"].rstrip("/")
    listing = git(gitdir, "ls-tree", "-r", commit, "--", base).decode().splitlines()
    blobs = {}
    for line in listing:
        meta, path = line.split("\t", 1)
        blobs[path] = meta.split()[2]
    # one copy per Roboflow source image: the first by name across the export's train/valid/test
    firsts: dict[str, str] = {}
    for path in sorted(p for p in blobs if is_image(p, src)):
        firsts.setdefault(source_stem(path), path)
    dropped = {"rf_copies": sum(1 for p in blobs if is_image(p, src)) - len(firsts)}
    dropped.update(near_duplicate=0, earlier_source=0, flip_or_rotation=0, no_mapped_label=0, unreadable=0)
    if src.get("require_head_per_rider"):
        dropped["rider_without_head_label"] = 0
    if src.get("vehicle_classes"):
        dropped["vehicle_without_head_label"] = 0
    exclude_re = re.compile(src["exclude_regex"]) if src.get("exclude_regex") else None
    if exclude_re:
        dropped["excluded_by_name"] = 0
    group_re = re.compile(src["group_regex"]) if src.get("group_regex") else None
    dst = out / src["name"]
    if write:
        shutil.rmtree(dst, ignore_errors=True)
    kept_hashes: list[int] = []
    turned_hashes: list[int] = []
    heads = {c: 0 for c in CLASSES}
    head_px: list[float] = []
    frames = {"train": 0, "val": 0}
    groups: dict[str, set[str]] = {"train": set(), "val": set()}
    for stem, path in sorted(firsts.items()):
        if exclude_re and exclude_re.search(stem):
            dropped["excluded_by_name"] += 1
            continue
        rows = label_rows(src, gitdir, blobs, path)
        if not rows:
            dropped["no_mapped_label"] += 1
            continue
        data = np.frombuffer(git(gitdir, "cat-file", "blob", blobs[path]), np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if img is None:
            dropped["unreadable"] += 1
            continue
        ih, iw = img.shape[:2]
        if src.get("format", "yolo") == "voc":
            rows = [(c, x / iw, y / ih, w / iw, hh / ih) for c, x, y, w, hh in rows]
        rows = [r for r in rows if 0 < r[3] <= 1 and 0 < r[4] <= 1 and 0 <= r[1] <= 1 and 0 <= r[2] <= 1]
        if not rows:
            dropped["no_mapped_label"] += 1
            continue
        if src.get("require_head_per_rider") and not rider_heads_labelled(rows):
            dropped["rider_without_head_label"] += 1
            continue
        if src.get("vehicle_classes"):
            if not vehicle_heads_labelled(rows):
                dropped["vehicle_without_head_label"] += 1
                continue
            rows = [r for r in rows if r[0] != VEHICLE]
            if not rows:
                dropped["no_mapped_label"] += 1
                continue
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        h = dhash(gray)
        if near(h, kept_hashes, hamming):
            dropped["near_duplicate"] += 1
            continue
        if near(h, seen, hamming) or near(h, seen_turned, hamming):
            dropped["earlier_source"] += 1
            continue
        if near(h, turned_hashes, hamming):
            dropped["flip_or_rotation"] += 1
            continue
        kept_hashes.append(h)
        turned_hashes.extend(dhash(t) for t in turned(gray))
        m = group_re.match(stem) if group_re else None
        group = m.group(1) if m else group_of(stem, block)
        split = "val" if is_val(group, val_every) else "train"
        groups[split].add(group)
        frames[split] += 1
        for c, _x, _y, w, hh in rows:
            heads[CLASSES[c]] += 1
            if CLASSES[c] != "rider":
                head_px.append(float(np.sqrt(w * iw * hh * ih)))
        if not write:
            continue
        (dst / "images" / split).mkdir(parents=True, exist_ok=True)
        (dst / "labels" / split).mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)
        cv2.imwrite(str(dst / "images" / split / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        (dst / "labels" / split / f"{name}.txt").write_text(
            "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {hh:.6f}\n" for c, x, y, w, hh in rows)
        )
    overlap = groups["train"] & groups["val"]
    assert not overlap, f"{src['name']}: groups in both splits: {sorted(overlap)[:5]}"
    seen.extend(kept_hashes)
    seen_turned.extend(turned_hashes)
    if write:
        dst.mkdir(parents=True, exist_ok=True)
        (dst / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))  # read by models/train/common.py
    return {
        "source": src["name"],
        "frames": frames["train"] + frames["val"],
        "train": frames["train"],
        "val": frames["val"],
        "groups": f"{len(groups['train'])}/{len(groups['val'])}",
        **heads,
        "median_head_px": float(np.median(head_px)) if head_px else float("nan"),
        "viewpoint": src.get("viewpoint", ""),
        "dropped": dropped,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=Path, default=ROOT / "models" / "data" / "sources.yaml")
    ap.add_argument("--mirror", type=Path, default=Path("/work/.mirror"))
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "build" / "corpus")
    ap.add_argument("--hamming", type=int, default=4, help="dHash distance at or under which frames are one")
    ap.add_argument("--val-every", type=int, default=5, help="about 1 in N file-name groups go to val")
    ap.add_argument("--block", type=int, default=25, help="consecutive frame numbers taken as one group")
    ap.add_argument(
        "--only",
        action="append",
        help="write only these sources (the others are read for de-duplication, their folders left alone)",
    )
    args = ap.parse_args(argv)
    sources = (yaml.safe_load(args.sources.read_text()) or {}).get("sources")
    if not isinstance(sources, list) or not sources:
        raise SystemExit(f"{args.sources}: needs a non-empty list under 'sources'")
    for i, src in enumerate(sources):
        check_source(src, f"{args.sources}: sources[{i}]")
    names = [src["name"] for src in sources]
    if len(set(names)) != len(names):
        raise SystemExit(
            f"{args.sources}: source names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}"
        )
    rows = []
    seen: list[int] = []  # frames of earlier sources: a later source's copy of one is dropped
    seen_turned: list[int] = []  # and their flipped / rotated versions
    if args.only and set(args.only) - set(names):
        raise SystemExit(f"--only: no source named {sorted(set(args.only) - set(names))} in {args.sources}")
    for src in sources:
        # with --only, the other sources are still read (not written) so that a later source's copies
        # of their frames are dropped as in a full build
        write = not args.only or src["name"] in args.only
        row = build_source(
            src, args.mirror, args.out, args.hamming, args.val_every, args.block, seen, seen_turned, write
        )
        if write:
            rows.append(row)
    head = (
        f"{'source':<22} {'frames':>6} {'train':>5} {'val':>4} {'groups t/v':>10} "
        f"{'helmet':>6} {'no_helmet':>9} {'rider':>5} {'med head px':>11}  viewpoint"
    )
    print(head)
    for r in rows:
        print(
            f"{r['source']:<22} {r['frames']:>6} {r['train']:>5} {r['val']:>4} {r['groups']:>10} "
            f"{r['helmet']:>6} {r['no_helmet']:>9} {r['rider']:>5} {r['median_head_px']:>11.1f}  "
            f"{r['viewpoint']}"
        )
    for r in rows:
        print(f"dropped {r['source']}: " + ", ".join(f"{k} {v}" for k, v in r["dropped"].items()))
    print(f"total frames {sum(r['frames'] for r in rows)} from {len(rows)} source(s); written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
