"""One person, one file: gallery search, unknown-file clustering, merge at enrolment, LFW accuracy."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from anqi_contract.paths import shared_dir
from central_sync.config import CentralConfig
from central_sync.identity import (
    EnrolmentError,
    EnrolmentRecord,
    Gallery,
    IdentityResolver,
    UnknownFiles,
    read_enrolment_csv,
    score_distributions,
    tar_at_far,
)
from central_sync.persons import enrol_embeddings, load_resolver, merge_person
from central_sync.storage.models import Embedding, Event, Person
from central_sync.storage.store import CentralStore, ViolationRecord

LFW = shared_dir() / "faces" / "lfw-dev"
RNG = np.random.default_rng(3)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_gallery_search_is_vectorised_and_matches_a_loop() -> None:
    base = unit(RNG.normal(size=(200, 128)))
    g = Gallery()
    g.add_many([f"p{i}" for i in range(200)], base)
    g.add("p7", unit(base[7] + 0.1 * RNG.normal(size=128))[None, :])  # a second photo of p7
    q = unit(base[:50] + 0.03 * RNG.normal(size=(50, 128)))
    ids, scores = g.search_batch(q)
    for i in range(50):
        pid, sc = g.search(q[i])
        loop = max(((f"p{j}", float(base[j] @ unit(q[i]))) for j in range(200)), key=lambda t: t[1])
        assert pid == ids[i] == f"p{i}" and abs(sc - float(scores[i])) < 1e-5
        assert sc >= loop[1] - 1e-5
    with pytest.raises(ValueError, match="dimension"):
        g.add("x", np.ones((1, 64)))
    assert Gallery().search(base[0]) == (None, -1.0)


def test_unknown_faces_are_grouped_by_incremental_clustering() -> None:
    a, b = unit(RNG.normal(size=128)), unit(RNG.normal(size=128))
    n = iter(range(100))
    files = UnknownFiles(0.45, lambda: f"u{next(n)}")
    got = [files.assign(unit(x + 0.05 * RNG.normal(size=128))).person_id for x in [a, b, a, a, b, a]]
    assert got[0] == got[2] == got[3] == got[5] and got[1] == got[4] and got[0] != got[1]
    assert len(files) == 2


def test_zero_and_non_finite_embeddings_are_refused() -> None:
    r = IdentityResolver(Gallery(), UnknownFiles(0.5, lambda: "u"), 0.4)
    for bad in (np.zeros(128), np.full(128, np.nan)):
        with pytest.raises(ValueError):
            r.resolve(bad)


def test_enrolment_merges_the_unknown_file_and_reloads_from_the_store(store: CentralStore) -> None:
    cfg = CentralConfig()
    resolver = load_resolver(store, cfg)
    face = unit(RNG.normal(size=128))
    t0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
    pids = []
    for i in range(3):
        m = resolver.resolve(unit(face + 0.03 * RNG.normal(size=128)))
        pids.append(m.person_id)
        with store.session() as s:
            store.ensure_person(s, m.person_id, kind="unknown")  # type: ignore[arg-type]
            store.add_violation(
                ViolationRecord(str(uuid.uuid4()), "no_helmet", t0 + timedelta(hours=i), m.person_id), s
            )
            s.add(
                Embedding(
                    person_id=m.person_id,
                    source="event",
                    model="sface",
                    vector=np.asarray(face, "<f4").tobytes(),
                )
            )
    assert len(set(pids)) == 1 and pids[0].startswith("U-")  # type: ignore[union-attr]
    # a fresh process sees the same unknown file
    again = load_resolver(store, cfg)
    assert again.resolve(face).person_id == pids[0]
    merged = enrol_embeddings(
        store,
        cfg,
        again,
        EnrolmentRecord("P-9", name="Zhao Liu", community="Feiying", party_member=True),
        unit(face + 0.05 * RNG.normal(size=128))[None, :],
    )
    assert merged == 1
    with store.session() as s:
        assert {e.person_id for e in s.scalars(select(Event))} == {"P-9"}
        assert s.get(Person, pids[0]).merged_into == "P-9"  # type: ignore[union-attr]
        assert s.get(Person, "P-9").party_member is True  # type: ignore[union-attr]
    assert store.assess_person("P-9", t0 + timedelta(days=1), cfg.tiers).count_7d == 3
    later = load_resolver(store, cfg)
    m = later.resolve(face)
    assert m.person_id == "P-9" and not m.provisional
    assert len(later.unknown) == 0


def test_merge_moves_dispositions_too(store: CentralStore) -> None:
    t = datetime(2026, 5, 1, tzinfo=timezone.utc)
    store.add_disposition("U-1", "education", t)
    store.add_violation(ViolationRecord(str(uuid.uuid4()), "no_helmet", t + timedelta(days=1), "U-1"))
    with store.session() as s:
        store.ensure_person(s, "P-1", kind="enrolled")
    merge_person(store, "U-1", "P-1")
    assert store.assess_person("P-1", t + timedelta(days=2), CentralConfig().tiers).tier.value == "repeat"


def test_enrolment_csv_reports_bad_rows_by_line(tmp_path: Path) -> None:
    f = tmp_path / "gallery.csv"
    f.write_text(
        "person_id,name,id_number,community,employer,phone,party_member,photos\n"
        "P1,Li,33050119900101123x,Feiying,Bus Co,,yes,a.jpg;b.jpg\n"
        ",NoId,,,,,no,c.jpg\n"
        "P3,X,,,,,maybe,d.jpg\n"
        "P4,Y,330501199001011234,,,,no,e.jpg\n"
        "P5,Z,330501199002301230,,,,no,f.jpg\n"
    )
    recs, problems = read_enrolment_csv(f)
    assert (
        [r.person_id for r in recs] == ["P1"]
        and recs[0].party_member
        and recs[0].photos == (tmp_path / "a.jpg", tmp_path / "b.jpg")
    )
    assert problems == [
        "gallery.csv:3: person_id is empty",
        "gallery.csv:4: party_member must be yes/no/true/false/1/0, got 'maybe'",
        "gallery.csv:5: id_number: check digit (GB 11643 / ISO 7064 MOD 11-2) does not match",
        "gallery.csv:6: id_number: birth date (characters 7-14) is not a date",
    ]
    assert recs[0].id_number == "33050119900101123X"  # normalised upper-case X
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nx\n")
    with pytest.raises(EnrolmentError, match="missing column"):
        read_enrolment_csv(bad)


def test_tar_at_far_and_rank1_on_synthetic_identities() -> None:
    centres = unit(RNG.normal(size=(30, 128)))
    embs = {
        f"id{i}": [unit(c + 0.08 * RNG.normal(size=128)) for _ in range(6)] for i, c in enumerate(centres)
    }
    d = score_distributions(embs, 3)
    assert d["rank1"] == 1.0 and d["queries"] == 90
    tar, thr = tar_at_far(d["genuine"], d["impostor"], 1e-3)
    assert tar == 1.0 and np.mean(d["impostor"] >= thr) <= 1e-3


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    from central_sync.identity import edge_face_embedder

    pytest.importorskip("cv2", reason="needs the edge extra or anqi[faces] (OpenCV runs the face models)")
    if not LFW.is_dir():
        pytest.skip(f"{LFW} not present")
    try:
        return edge_face_embedder()
    except Exception as e:  # noqa: BLE001 - models not prepared on this machine
        pytest.skip(f"face models not available ({e}); run: anqi-edge models prepare")


def test_lfw_accuracy_with_the_edge_face_models(embedder) -> None:  # type: ignore[no-untyped-def]
    from central_sync.identity import evaluate_lfw

    r = evaluate_lfw(LFW, enrol_per_person=3, embed=embedder, max_identities=8)
    assert r["identities"] == 8 and r["queries"] == 56
    assert r["rank1"] >= 0.9 and r["tar_at_far_1e-3"] >= 0.8
    assert r["genuine_mean"] > r["impostor_mean"] + 0.3


def test_enrol_from_photos_then_match_another_photo(store: CentralStore, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from central_sync.identity import embed_photo, read_enrolment_folder
    from central_sync.persons import enrol

    cfg = CentralConfig()
    people = read_enrolment_folder(LFW)[:3]
    recs = [EnrolmentRecord(p.person_id, name=p.name, photos=p.photos[:2]) for p in people]
    recs.append(EnrolmentRecord("ghost", photos=(tmp_path / "missing.jpg",)))
    resolver = load_resolver(store, cfg)
    rep = enrol(store, cfg, resolver, recs, embedder)
    assert rep.enrolled == 3 and rep.photos == 6 and any("missing.jpg" in p for p in rep.problems)
    for p in people:
        q = embed_photo(p.photos[5], embedder)
        m = resolver.resolve(q)  # type: ignore[arg-type]
        assert m.person_id == p.person_id and m.score >= cfg.identity.match_threshold


def _id_number(first17: str) -> str:
    """A valid GB 11643 number from its first 17 digits (the MOD 11-2 check digit appended)."""
    w = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(c) * k for c, k in zip(first17, w, strict=True)) % 11]


def test_enrol_cli_from_a_csv_with_real_photos(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    import json

    from click.testing import CliRunner

    from central_sync.cli import main
    from central_sync.identity import read_enrolment_folder

    people = read_enrolment_folder(LFW)[3:5]
    cfgf = tmp_path / "central.yaml"
    cfgf.write_text("database:\n  url: sqlite:///c.db\n")
    csvf = tmp_path / "gallery.csv"
    rows = ["person_id,name,id_number,community,employer,phone,party_member,photos"]
    rows += [
        f"{p.person_id},{p.name},{_id_number(f'3305021990010112{i}')},Feiying,,,no,{p.photos[0]};{p.photos[1]}"
        for i, p in enumerate(people)
    ]
    rows += ["P-bad,Nobody,,,,,no,missing.jpg"]
    csvf.write_text("\n".join(rows) + "\n")
    r = CliRunner().invoke(main, ["enrol", "--config", str(cfgf), "--csv", str(csvf)])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["enrolled"] == 2 and summary["photos"] == 4 and summary["problems"] == 2
    assert "photo not found" in r.output and "33050219900101" not in r.output.replace(str(csvf), "")
    store = CentralStore(f"sqlite:///{tmp_path / 'c.db'}")
    with store.session() as s:
        assert {p.person_id: p.community for p in s.scalars(select(Person))} == {
            people[0].person_id: "Feiying",
            people[1].person_id: "Feiying",
        }
    store.close()
