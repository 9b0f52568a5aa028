"""models/data/build_corpus.py on a small repository made here: what is dropped, how it is split, what is refused.

The repository is a real bare git directory (as the search tool's `fetch` leaves them) holding a
Roboflow-style YOLO export and a VOC set built from synthetic images; the script reads it with git.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

_SPEC = importlib.util.spec_from_file_location(
    "build_corpus", Path(__file__).resolve().parents[1] / "models" / "data" / "build_corpus.py"
)
assert _SPEC is not None and _SPEC.loader is not None
bc = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bc)


def scene(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    """A textured frame whose dHash differs from every other seed's."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(img, (5, 5), 0)


def jpg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, files: dict[str, bytes | str]) -> str:
    """A bare repository at root/<owner>+<name>/repo holding `files`; returns the commit."""
    work = root / "work"
    for rel, data in files.items():
        p = work / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    git(work, "init", "-q")
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data")
    commit = git(work, "rev-parse", "HEAD").strip()
    bare = root / "mirror" / "owner+name" / "repo"
    bare.parent.mkdir(parents=True)
    git(root, "clone", "-q", "--bare", str(work), str(bare))
    return commit


def source(at: str, **over: object) -> dict[str, object]:
    src: dict[str, object] = {
        "name": "toy",
        "repo": "owner/name",
        "commit": at,
        "path": "export",
        "format": "yolo",
        "licence": "CC BY 4.0 (README.dataset.txt)",
        "attribution": "toy export, CC BY 4.0",
        "classes": {0: "helmet", 1: "no_helmet", 3: "rider"},
        "viewpoint": "synthetic",
    }
    src.update(over)
    return src


def run(tmp_path: Path, sources: list[dict], *extra: str) -> int:
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(yaml.safe_dump({"sources": sources}))
    return bc.main(
        ["--sources", str(cfg), "--mirror", str(tmp_path / "mirror"), "--out", str(tmp_path / "out"), *extra]
    )


@pytest.fixture
def export(tmp_path: Path) -> str:
    """A YOLO export: 30 distinct frames in 6 numbered groups, with the copies the script must drop."""
    files: dict[str, bytes | str] = {}
    for i in range(30):
        split = ("train", "valid", "test")[i % 3]
        stem = f"cam{i // 5}-frame{i:03d}"
        files[f"export/{split}/images/{stem}_jpg.rf.{i:032x}.jpg"] = jpg(scene(i))
        # class 2 is a licence plate in this export: not mapped, dropped from the labels
        files[f"export/{split}/labels/{stem}_jpg.rf.{i:032x}.txt"] = (
            "0 0.5 0.4 0.1 0.1\n2 0.5 0.9 0.2 0.05\n3 0.5 0.5 0.3 0.8\n"
        )
    # a second Roboflow augmentation copy of frame 0 (horizontal flip)
    files[f"export/train/images/cam0-frame000_jpg.rf.{'f' * 32}.jpg"] = jpg(cv2.flip(scene(0), 1))
    files[f"export/train/labels/cam0-frame000_jpg.rf.{'f' * 32}.txt"] = "0 0.5 0.4 0.1 0.1\n"
    # the same photo under another name, re-encoded: a near-duplicate
    files["export/train/images/other-001_jpg.rf.aa.jpg"] = jpg(cv2.GaussianBlur(scene(1), (3, 3), 0))
    files["export/train/labels/other-001_jpg.rf.aa.txt"] = "1 0.5 0.5 0.1 0.1\n"
    # frame 2 turned upside down and frame 3 turned 90 degrees: augmentation copies
    files["export/train/images/upside-001_jpg.rf.bb.jpg"] = jpg(cv2.flip(scene(2), 0))
    files["export/train/labels/upside-001_jpg.rf.bb.txt"] = "1 0.5 0.5 0.1 0.1\n"
    files["export/train/images/turned-001_jpg.rf.cc.jpg"] = jpg(cv2.rotate(scene(3), cv2.ROTATE_90_CLOCKWISE))
    files["export/train/labels/turned-001_jpg.rf.cc.txt"] = "1 0.5 0.5 0.1 0.1\n"
    # a background frame labelled only with the plate class, and a frame without a label file
    files["export/train/images/plate-001_jpg.rf.dd.jpg"] = jpg(scene(100))
    files["export/train/labels/plate-001_jpg.rf.dd.txt"] = "2 0.5 0.5 0.2 0.1\n"
    files["export/valid/images/nolabel-001_jpg.rf.ee.jpg"] = jpg(scene(101))
    return make_repo(tmp_path, files)


def test_yolo_export_drops_copies_and_splits_by_group(
    tmp_path: Path, export: str, capsys: pytest.CaptureFixture
) -> None:
    assert run(tmp_path, [source(export)], "--val-every", "3", "--block", "5") == 0
    out = tmp_path / "out" / "toy"
    images = sorted(p.stem for p in out.glob("images/*/*.jpg"))
    assert len(images) == 30, images  # the 30 distinct frames, one copy each
    assert not [s for s in images if s.startswith(("other", "upside", "turned", "plate", "nolabel"))]
    printed = capsys.readouterr().out
    assert "rf_copies 1," in printed and "near_duplicate 1," in printed and "flip_or_rotation 2," in printed
    assert "no_mapped_label 2," in printed
    # labels in project classes: helmet head (1) and rider (0); the plate (source class 2) is gone
    rows = [ln.split() for p in out.glob("labels/*/*.txt") for ln in p.read_text().splitlines()]
    assert sorted({r[0] for r in rows}) == ["0", "1"] and len(rows) == 60
    # a group's frames all sit on one side: no camera group in both train and val
    side: dict[str, set[str]] = {}
    for p in out.glob("images/*/*.jpg"):
        group = p.stem.split("-")[0]
        side.setdefault(group, set()).add(p.parent.name)
    assert all(len(s) == 1 for s in side.values()), side
    assert {n for s in side.values() for n in s} == {"train", "val"}
    assert (out / "classes.txt").read_text().split() == bc.CLASSES


def test_later_source_copy_of_earlier_frame_is_dropped(
    tmp_path: Path, export: str, capsys: pytest.CaptureFixture
) -> None:
    # the same snapshot listed twice: every frame of the second (its near-duplicate and its
    # upside-down / turned copies too) is a copy of one the first kept
    assert run(tmp_path, [source(export), source(export, name="toy-again")]) == 0
    assert not list((tmp_path / "out" / "toy-again").glob("images/*/*.jpg"))
    assert "dropped toy-again: rf_copies 1, near_duplicate 0, earlier_source 33," in capsys.readouterr().out


def test_voc_boxes_are_normalised_by_the_decoded_image(tmp_path: Path) -> None:
    img = scene(7, 200, 300)
    xml = (
        "<annotation><size><width>999</width><height>999</height></size>"  # wrong size, as some sets have
        "<object><name>Without Helmet</name><bndbox><xmin>30</xmin><ymin>20</ymin><xmax>90</xmax><ymax>80</ymax></bndbox></object>"
        "<object><name>Bicycle</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>10</xmax><ymax>10</ymax></bndbox></object>"
        "</annotation>"
    )
    commit = make_repo(
        tmp_path,
        {"voc/images/shot7.png": cv2.imencode(".png", img)[1].tobytes(), "voc/annotations/shot7.xml": xml},
    )
    src = source(commit, path="voc", format="voc", classes={"Without Helmet": "no_helmet"})
    assert run(tmp_path, [src]) == 0
    (label,) = (tmp_path / "out" / "toy").glob("labels/*/shot7.txt")
    c, x, y, w, h = label.read_text().split()
    assert c == "2"
    assert [float(v) for v in (x, y, w, h)] == pytest.approx(
        [60 / 300, 50 / 200, 60 / 300, 60 / 200], abs=1e-5
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"licence": "CC BY-NC 4.0"}, "field 'licence'"),
        ({"licence": "CC BY-SA 4.0"}, "field 'licence'"),
        ({"licence": "research only"}, "field 'licence'"),
        ({"attribution": ""}, "field 'attribution' is missing"),
        ({"classes": {0: "person"}}, "unknown project classes"),
        ({"commit": "HEAD"}, "field 'commit'"),
        ({"format": "coco"}, "field 'format'"),
        ({"repo": "punmyidol/motorcycle-helmet-detection-YOLOV8"}, "independent check"),
        ({"roboflow": "https://universe.roboflow.com/hi-xnpr5/helmet-detection-zrrim"}, "independent check"),
    ],
)
def test_a_wrong_entry_is_refused_by_name(tmp_path: Path, export: str, change: dict, message: str) -> None:
    with pytest.raises(SystemExit, match=message) as err:
        run(tmp_path, [source(export, **change)])
    assert "sources[0] (toy)" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_missing_snapshot_names_the_fetch_to_run(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"fetch github:owner/name first"):
        run(tmp_path, [source("0" * 40)])


def test_the_committed_manifest_passes_its_own_checks() -> None:
    sources = yaml.safe_load((Path(bc.ROOT) / "models" / "data" / "sources.yaml").read_text())["sources"]
    assert sources
    for i, src in enumerate(sources):
        bc.check_source(src, f"sources[{i}]")


def test_only_rewrites_one_source_and_still_drops_copies_of_the_others(
    tmp_path: Path, export: str, capsys: pytest.CaptureFixture
) -> None:
    assert run(tmp_path, [source(export)]) == 0
    kept = sorted(p.name for p in (tmp_path / "out" / "toy").rglob("*"))
    marker = tmp_path / "out" / "toy" / "in-use.txt"  # a trainer reading this folder is not disturbed
    marker.write_text("x")
    capsys.readouterr()
    assert run(tmp_path, [source(export), source(export, name="toy-again")], "--only", "toy-again") == 0
    assert marker.exists() and sorted(p.name for p in (tmp_path / "out" / "toy").rglob("*")) == sorted(
        [*kept, "in-use.txt"]
    )
    assert not list((tmp_path / "out" / "toy-again").glob("images/*/*.jpg"))
    printed = capsys.readouterr().out
    assert (
        "dropped toy-again:" in printed and "dropped toy:" not in printed
    )  # the table lists what was written
    with pytest.raises(SystemExit, match=r"--only: no source named \['nope'\]"):
        run(tmp_path, [source(export)], "--only", "nope")


def test_group_regex_keeps_a_video_on_one_side_and_unlabelled_bare_heads_drop_the_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    files: dict[str, bytes | str] = {}
    for v in range(6):  # six videos, frames 0..59 of each: blocks of 25 would cut a video in three
        for f in range(0, 60, 12):
            i = v * 100 + f
            stem = f"IMG_{5070 + v}_MOV-{f}"
            files[f"export/train/images/{stem}_jpg.rf.{i:032x}.jpg"] = jpg(scene(1000 + i))
            # class 2 motorcyclist box with a helmet head (class 0) in its upper half
            files[f"export/train/labels/{stem}_jpg.rf.{i:032x}.txt"] = (
                "2 0.5 0.5 0.4 0.8\n0 0.5 0.2 0.08 0.1\n"
            )
    # a rider whose head is not boxed (a bare head in a helmet-only source) and one whose only head
    # box lies in the lower half of the rider box (not its head)
    files["export/train/images/IMG_6000_MOV-0_jpg.rf.aa.jpg"] = jpg(scene(7000))
    files["export/train/labels/IMG_6000_MOV-0_jpg.rf.aa.txt"] = "2 0.5 0.5 0.4 0.8\n"
    files["export/train/images/IMG_6001_MOV-0_jpg.rf.bb.jpg"] = jpg(scene(7001))
    files["export/train/labels/IMG_6001_MOV-0_jpg.rf.bb.txt"] = "2 0.5 0.5 0.4 0.8\n0 0.5 0.8 0.08 0.1\n"
    commit = make_repo(tmp_path, files)
    src = source(
        commit,
        classes={0: "helmet", 2: "rider"},
        group_regex=r"^(IMG_\d+_MOV)-\d+$",
        require_head_per_rider=True,
    )
    assert run(tmp_path, [src], "--val-every", "3") == 0
    side: dict[str, set[str]] = {}
    for p in (tmp_path / "out" / "toy").glob("images/*/*.jpg"):
        side.setdefault(p.stem.rsplit("-", 1)[0], set()).add(p.parent.name)
    assert len(side) == 6 and all(len(s) == 1 for s in side.values()), side
    assert {n for s in side.values() for n in s} == {"train", "val"}
    assert "rider_without_head_label 2" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="field 'group_regex'"):
        run(tmp_path, [source(commit, group_regex="IMG_[0-9]+")])


def test_the_candidate_lists_are_yaml_and_name_no_used_source_twice() -> None:
    data = Path(bc.ROOT) / "models" / "data"
    checked = yaml.safe_load((data / "candidates.yaml").read_text())["checked"]
    assert yaml.safe_load((data / "more_candidates.yaml").read_text())["leads"]
    used = [c["repo"] for c in checked if str(c.get("verdict", "")).startswith("used")]
    sources = {s["repo"] for s in yaml.safe_load((data / "sources.yaml").read_text())["sources"]}
    assert sorted(used) == sorted(sources)  # every source used is recorded as checked, once


def test_segmentation_rows_become_the_box_around_the_polygon_and_a_broken_row_is_named(
    tmp_path: Path,
) -> None:
    # a Roboflow YOLOv8 export of a project labelled with polygons: class x1 y1 x2 y2 ...
    files: dict[str, bytes | str] = {
        "export/valid/images/poly-001_jpg.rf.aa.jpg": jpg(scene(7)),
        "export/valid/labels/poly-001_jpg.rf.aa.txt": (
            "0 0.40 0.20 0.50 0.10 0.60 0.20 0.50 0.30\n"  # helmet head: diamond around (0.5, 0.2)
            "3 0.30 0.10 0.70 0.10 0.70 0.90 0.30 0.90\n"  # rider: rectangle as a polygon
            "1 0.5 0.6 0.2 0.2\n"  # the scooter, unmapped here, as a plain box row
        ),
    }
    at = make_repo(tmp_path, files)
    assert run(tmp_path, [source(at, classes={0: "helmet", 3: "rider"})]) == 0
    rows = sorted(
        [float(v) for v in ln.split()]
        for p in (tmp_path / "out" / "toy").glob("labels/*/*.txt")
        for ln in p.read_text().splitlines()
    )
    assert rows == [pytest.approx([0, 0.5, 0.5, 0.4, 0.8]), pytest.approx([1, 0.5, 0.2, 0.2, 0.2])]

    # a mapped row that is neither a box nor a polygon stops the build with the file named
    bad = tmp_path / "bad"
    bad.mkdir()
    at = make_repo(
        bad,
        {
            "export/valid/images/odd-001_jpg.rf.bb.jpg": jpg(scene(8)),
            "export/valid/labels/odd-001_jpg.rf.bb.txt": "0 0.5 0.5 0.1\n",
        },
    )
    with pytest.raises(SystemExit, match=r"odd-001_jpg\.rf\.bb\.txt: a label row of 4 values"):
        run(bad, [source(at)])


def test_flat_voc_export_reads_xml_beside_the_image_and_a_parked_bike_drops_the_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # a Roboflow Pascal VOC export: <name>.jpg and <name>.xml side by side in one folder
    def xml(*objs: tuple[str, int, int, int, int]) -> str:
        return (
            "<annotation><size><width>128</width><height>96</height></size>"
            + "".join(
                f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><xmax>{c}</xmax><ymin>{b}</ymin>"
                f"<ymax>{d}</ymax></bndbox></object>"
                for n, a, b, c, d in objs
            )
            + "</annotation>"
        )

    files: dict[str, bytes | str] = {}
    for i in range(6):
        stem = f"shot-{i}_jpg.rf.{i:032x}"
        files[f"voc/{stem}.jpg"] = jpg(scene(2000 + i))
        # a motorbike box with the rider's bare head above it (the bike box leaves the rider out)
        files[f"voc/{stem}.xml"] = xml(("motor", 40, 50, 90, 90), ("non-helm", 58, 20, 72, 34))
    # a second augmentation copy of shot-0: one copy is kept
    files[f"voc/shot-0_jpg.rf.{'f' * 32}.jpg"] = jpg(cv2.flip(scene(2000), 1))
    files[f"voc/shot-0_jpg.rf.{'f' * 32}.xml"] = xml(("non-helm", 56, 20, 70, 34))
    # a frame with a second motorbike whose rider's head is not boxed
    files["voc/parked-1_jpg.rf.aa.jpg"] = jpg(scene(2100))
    files["voc/parked-1_jpg.rf.aa.xml"] = xml(
        ("motor", 10, 50, 40, 90), ("motor", 70, 50, 110, 90), ("helm", 20, 25, 30, 35)
    )
    commit = make_repo(tmp_path, files)
    src = source(
        commit,
        path="voc",
        format="voc",
        layout="flat",
        classes={"helm": "helmet", "non-helm": "no_helmet"},
        vehicle_classes=["motor"],
    )
    assert run(tmp_path, [src]) == 0
    out = tmp_path / "out" / "toy"
    assert sorted(p.stem.split("_")[0] for p in out.glob("images/*/*.jpg")) == [f"shot-{i}" for i in range(6)]
    rows = [ln.split() for p in out.glob("labels/*/*.txt") for ln in p.read_text().splitlines()]
    assert len(rows) == 6 and {r[0] for r in rows} == {"2"}  # the motor boxes are not written
    assert [float(v) for v in rows[0][1:]] == pytest.approx([65 / 128, 27 / 96, 14 / 128, 14 / 96], abs=1e-5)
    printed = capsys.readouterr().out
    assert "rf_copies 1," in printed and "vehicle_without_head_label 1" in printed
    # a part of the export named by exclude_regex (e.g. watermarked stock photos) is left out
    assert run(tmp_path, [dict(src, exclude_regex=r"^shot-[0-2]$")]) == 0
    assert sorted(p.stem.split("_")[0] for p in out.glob("images/*/*.jpg")) == ["shot-3", "shot-4", "shot-5"]
    assert "excluded_by_name 3" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="field 'exclude_regex'"):
        run(tmp_path, [source(commit, exclude_regex="(")])
    with pytest.raises(SystemExit, match="field 'layout'"):
        run(tmp_path, [source(commit, layout="loose")])
    with pytest.raises(SystemExit, match="field 'vehicle_classes'"):
        run(tmp_path, [source(commit, vehicle_classes=[0])])
