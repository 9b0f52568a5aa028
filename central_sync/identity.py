"""One person, one file (clauses 8.2.1–8.2.2): gallery, 1:N matching, provisional unknown files.

* :class:`Gallery` holds L2-normalised embeddings (several per person) in one float32 matrix;
  a query is one matrix-vector product (vectorised numpy), best row -> person.
* :class:`UnknownFiles` groups faces that match nobody by incremental clustering: a face joins
  the unknown file whose centroid is most similar if that similarity reaches
  ``identity.cluster_threshold``, else it opens a new file. Centroids are running means,
  re-normalised.
* :class:`IdentityResolver` combines both for the consumer and ``classify``: gallery first
  (``identity.match_threshold``), then unknown files.

Embeddings are never logged. Enrolment from photos and the LFW evaluation use the edge's own
face models (:mod:`anqi_contract.faces`) so that gallery and event embeddings are comparable.
"""

from __future__ import annotations

import csv
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TypedDict

import numpy as np

from anqi_contract.logs import log

logger = logging.getLogger("anqi.central.identity")

EMBEDDING_DIM = 128


def normalise(v: np.ndarray | Sequence[float] | Sequence[Sequence[float]]) -> np.ndarray:
    """Float32 copy scaled to unit length (rows for 2-D input); raises on zero/non-finite vectors."""
    a = np.asarray(v, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if not np.isfinite(a).all():
        raise ValueError("embedding contains non-finite values")
    # np.linalg.norm(a, axis=1, keepdims=True)'s own formula, without its dispatch overhead (per event, 3 times)
    n = np.sqrt(np.add.reduce(a * a, axis=1, keepdims=True))
    if (n < 1e-12).any():
        raise ValueError("embedding has zero length")
    return (a / n).astype(np.float32, copy=False)


def to_blob(v: np.ndarray) -> bytes:
    return np.asarray(v, dtype="<f4").tobytes()


def from_blob(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<f4").copy()


@dataclass(frozen=True)
class Match:
    person_id: str | None
    score: float
    provisional: bool = False  # an unknown-person file rather than an enrolled person
    new_file: bool = False  # a new unknown file was opened for this face
    #: another enrolled person almost as close (within ``review_margin``): the match is stored flagged for review
    runner_up: str | None = None
    runner_up_score: float | None = None


class Gallery:
    """Enrolled embeddings; :meth:`search` is a vectorised 1:N search."""

    def __init__(self, dim: int = EMBEDDING_DIM):
        self.dim = dim
        self._m: np.ndarray = np.zeros((0, dim), dtype=np.float32)
        self._ids: list[str] = []
        self._owner: np.ndarray = np.zeros((0,), dtype=np.int64)  # row -> index into _ids
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return self._m.shape[0]

    @property
    def persons(self) -> list[str]:
        return list(self._ids)

    def add(self, person_id: str, vectors: np.ndarray | Sequence[Sequence[float]]) -> None:
        """Add one or more embeddings (rows) of a person."""
        v = normalise(vectors)
        if v.shape[1] != self.dim:
            raise ValueError(f"embedding of {person_id}: dimension {v.shape[1]}, gallery uses {self.dim}")
        if person_id not in self._index:
            self._index[person_id] = len(self._ids)
            self._ids.append(person_id)
        k = self._index[person_id]
        self._m = np.vstack([self._m, v])
        self._owner = np.concatenate([self._owner, np.full(v.shape[0], k, dtype=np.int64)])

    def add_many(self, person_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Bulk add (one row per id, already normalised or not)."""
        v = normalise(vectors)
        owners = np.empty(len(person_ids), dtype=np.int64)
        for i, pid in enumerate(person_ids):
            if pid not in self._index:
                self._index[pid] = len(self._ids)
                self._ids.append(pid)
            owners[i] = self._index[pid]
        self._m = np.vstack([self._m, v])
        self._owner = np.concatenate([self._owner, owners])

    def search(self, query: np.ndarray | Sequence[float]) -> tuple[str | None, float]:
        """Best person and its cosine similarity (``(None, -1.0)`` on an empty gallery)."""
        if len(self) == 0:
            return None, -1.0
        q = normalise(query)[0]
        sims = self._m @ q
        i = int(np.argmax(sims))
        return self._ids[int(self._owner[i])], float(sims[i])

    def runner_up(self, query: np.ndarray, best: str) -> tuple[str | None, float]:
        """The closest enrolled person other than ``best`` and its cosine (``(None, -1.0)`` when there is none)."""
        k = self._index.get(best)
        if len(self) == 0 or k is None:
            return None, -1.0
        sims = np.where(self._owner == k, np.float32(-2.0), self._m @ normalise(query)[0])
        i = int(np.argmax(sims))
        if sims[i] <= -2.0:
            return None, -1.0
        return self._ids[int(self._owner[i])], float(sims[i])

    def search_batch(self, queries: np.ndarray) -> tuple[list[str | None], np.ndarray]:
        """Best person per query row and the score matrix's row maxima."""
        if len(self) == 0:
            return [None] * len(queries), np.full(len(queries), -1.0, dtype=np.float32)
        sims = normalise(queries) @ self._m.T
        best = np.argmax(sims, axis=1)
        return [self._ids[int(self._owner[i])] for i in best], sims[np.arange(len(best)), best]

    def person_scores(self, query: np.ndarray) -> dict[str, float]:
        """Best similarity per person (for ranking / evaluation)."""
        q = normalise(query)[0]
        sims = self._m @ q
        best = np.full(len(self._ids), -np.inf, dtype=np.float32)
        np.maximum.at(best, self._owner, sims)
        return {pid: float(best[i]) for i, pid in enumerate(self._ids)}


@dataclass
class UnknownFile:
    person_id: str
    centroid: np.ndarray
    count: int


class UnknownFiles:
    """Incremental clustering of faces that matched no enrolled person."""

    def __init__(self, threshold: float, new_id: Callable[[], str], dim: int = EMBEDDING_DIM):
        self.threshold = threshold
        self.new_id = new_id
        self.dim = dim
        self._files: list[UnknownFile] = []
        self._c: np.ndarray = np.zeros((0, dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._files)

    def load(self, person_id: str, vectors: np.ndarray) -> None:
        v = normalise(vectors)
        c = normalise(v.mean(axis=0))[0]
        self._files.append(UnknownFile(person_id, c, v.shape[0]))
        self._c = np.vstack([self._c, c])

    def best(self, v: np.ndarray) -> tuple[int, float]:
        if not self._files:
            return -1, -1.0
        sims = self._c @ v
        i = int(np.argmax(sims))
        return i, float(sims[i])

    def __contains__(self, person_id: object) -> bool:
        return any(f.person_id == person_id for f in self._files)

    def assign(self, vector: np.ndarray | Sequence[float], open_file: bool = True) -> Match:
        """Join the most similar file (at or above the threshold), else open a new one
        (``open_file=False``: return ``Match(None, score)`` instead)."""
        v = normalise(vector)[0]
        i, score = self.best(v)
        if not open_file and not (i >= 0 and score >= self.threshold):
            return Match(None, score, provisional=True)
        if i >= 0 and score >= self.threshold:
            f = self._files[i]
            c = normalise(f.centroid * f.count + v)[0]
            f.centroid, f.count = c, f.count + 1
            self._c[i] = c
            return Match(f.person_id, score, provisional=True)
        pid = self.new_id()
        self._files.append(UnknownFile(pid, v, 1))
        self._c = np.vstack([self._c, v])
        return Match(pid, 1.0, provisional=True, new_file=True)

    def matching(self, vectors: np.ndarray, threshold: float) -> list[str]:
        """Unknown files whose centroid matches any of ``vectors`` (for merging at enrolment)."""
        if not self._files:
            return []
        sims = normalise(vectors) @ self._c.T
        hit = np.max(sims, axis=0) >= threshold
        return [self._files[i].person_id for i in np.flatnonzero(hit)]

    def remove(self, person_ids: Iterable[str]) -> None:
        drop = set(person_ids)
        keep = [i for i, f in enumerate(self._files) if f.person_id not in drop]
        self._files = [self._files[i] for i in keep]
        self._c = self._c[keep] if keep else np.zeros((0, self.dim), dtype=np.float32)


@dataclass
class IdentityResolver:
    """Gallery first, then the provisional unknown files; thread-safe."""

    gallery: Gallery
    unknown: UnknownFiles
    match_threshold: float
    #: highest ``embeddings.id`` this resolver has seen in the store (for catching up with other consumers)
    seen_embedding_id: int = 0
    #: a gallery match is flagged for review when another enrolled person scores within this of the best
    review_margin: float = 0.05
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def resolve(self, embedding: np.ndarray | Sequence[float], open_file: bool = True) -> Match:
        """Gallery person, else an unknown file; ``open_file=False`` returns ``Match(None, ...)`` instead of
        opening a new unknown file (the caller may first load files other consumers opened)."""
        v = normalise(embedding)[0]
        if v.shape[0] != self.gallery.dim:
            raise ValueError(f"dimension {v.shape[0]}, expected {self.gallery.dim}")
        with self._lock:
            pid, score = self.gallery.search(v)
            if pid is not None and score >= self.match_threshold:
                other, other_score = self.gallery.runner_up(v, pid)
                if other is not None and other_score >= score - self.review_margin:
                    return Match(pid, score, runner_up=other, runner_up_score=other_score)
                return Match(pid, score)
            return self.unknown.assign(v, open_file)


# ------------------------------------------------------------------ enrolment records
@dataclass(frozen=True)
class EnrolmentRecord:
    """One gallery person as listed by the site (CSV row or folder)."""

    person_id: str
    name: str | None = None
    id_number: str | None = None
    community: str | None = None
    employer: str | None = None
    phone: str | None = None
    #: ``None``: not given (a blank column), which keeps what is stored on a re-enrolment
    party_member: bool | None = None
    photos: tuple[Path, ...] = ()


CSV_COLUMNS = ("person_id", "name", "id_number", "community", "employer", "phone", "party_member", "photos")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class EnrolmentError(ValueError):
    """A gallery listing that cannot be read (message names file, line and column)."""


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"^[1-9]\d{16}[\dX]$")


def validate_id_number(value: str, where: str = "id_number") -> str:
    """A resident identity number per GB 11643-1999: 18 characters, a valid birth date (positions 7-14) and the
    ISO 7064 MOD 11-2 check digit (``X`` for 10). Returns it normalised (stripped, upper-case ``X``); raises
    :class:`EnrolmentError` naming ``where`` otherwise (the number itself is not echoed: it is personal data)."""
    s = value.strip().upper()
    if not _ID_RE.match(s):
        raise EnrolmentError(f"{where}: not an 18-character GB 11643 ID number (17 digits + digit or X)")
    try:
        born = date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        raise EnrolmentError(f"{where}: birth date (characters 7-14) is not a date") from None
    if born.year < 1900 or born > date.today():
        raise EnrolmentError(f"{where}: birth date (characters 7-14) out of range")
    expected = _ID_CHECK[sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS, strict=True)) % 11]
    if s[17] != expected:
        raise EnrolmentError(f"{where}: check digit (GB 11643 / ISO 7064 MOD 11-2) does not match")
    return s


def _text(v: str | None) -> str | None:
    """A CSV cell: stripped; blank is ``None`` (not given)."""
    s = (v or "").strip()
    return s or None


def _flag(v: str | None, where: str) -> bool | None:
    s = (v or "").strip().lower()
    if s == "":
        return None
    if s in ("0", "false", "no", "n", "否"):
        return False
    if s in ("1", "true", "yes", "y", "是"):
        return True
    raise EnrolmentError(f"{where}: party_member must be yes/no/true/false/1/0, got {v!r}")


def read_enrolment_csv(path: Path) -> tuple[list[EnrolmentRecord], list[str]]:
    """Rows of a gallery CSV (columns :data:`CSV_COLUMNS`; ``photos`` separated by ``;``, relative to
    the CSV). Returns the good records and one problem line per bad row (never raises for a row)."""
    records: list[EnrolmentRecord] = []
    problems: list[str] = []
    try:
        f = path.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise EnrolmentError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        reader = csv.DictReader(f)
        missing = [c for c in ("person_id", "photos") if c not in (reader.fieldnames or [])]
        if missing:
            raise EnrolmentError(
                f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(CSV_COLUMNS)})"
            )
        for line, row in enumerate(reader, start=2):
            where = f"{path.name}:{line}"
            try:
                pid = (row.get("person_id") or "").strip()
                if not pid:
                    raise EnrolmentError(f"{where}: person_id is empty")
                photos = tuple(
                    (path.parent / p.strip()) for p in (row.get("photos") or "").split(";") if p.strip()
                )
                idn = _text(row.get("id_number"))
                records.append(
                    EnrolmentRecord(
                        person_id=pid,
                        name=_text(row.get("name")),
                        id_number=validate_id_number(idn, f"{where}: id_number") if idn else None,
                        community=_text(row.get("community")),
                        employer=_text(row.get("employer")),
                        phone=_text(row.get("phone")),
                        party_member=_flag(row.get("party_member"), where),
                        photos=photos,
                    )
                )
            except EnrolmentError as e:
                problems.append(str(e))
    return records, problems


def read_enrolment_folder(folder: Path) -> list[EnrolmentRecord]:
    """A folder with one sub-folder of photos per person (the sub-folder name is the person id)."""
    out = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = tuple(sorted(p for p in d.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES))
        out.append(EnrolmentRecord(person_id=d.name, name=d.name.replace("_", " "), photos=photos))
    return out


# ------------------------------------------------------------------ face models
EmbedFn = Callable[[np.ndarray], "np.ndarray | None"]


def edge_face_embedder(detector_model: str = "yunet", embedder_model: str = "sface") -> EmbedFn:
    """Image (BGR) -> 128-d embedding of its largest face, with the edge's own YuNet + SFace
    (:mod:`anqi_contract.faces`, model files from ``models/manifest.yaml``). Raises
    ``anqi_contract.manifest.ModelFileError`` naming the file when the models are not prepared."""
    from anqi_contract.faces import FaceDetector, FaceEmbedder
    from anqi_contract.manifest import resolve

    detector = FaceDetector(resolve(detector_model)[1], score_threshold=0.6, min_face_px=16)
    embedder = FaceEmbedder(resolve(embedder_model)[1])
    lock = threading.Lock()  # OpenCV DNN nets are not thread-safe

    def embed(image: np.ndarray) -> np.ndarray | None:
        with lock:
            faces = detector.detect(image)
            if not faces:
                return None
            face = max(faces, key=lambda f: f.width * f.height)
            return embedder.embed(image, face)

    return embed


def embed_photo(path: Path, embed: EmbedFn) -> np.ndarray | None:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        log(logger, "photo_unreadable", level=logging.WARNING, file=str(path))
        return None
    v = embed(img)
    if v is None:
        log(logger, "photo_no_face", level=logging.WARNING, file=str(path))
        return None
    return normalise(v)[0]


# ------------------------------------------------------------------ evaluation
class ScoreDistributions(TypedDict):
    genuine: np.ndarray  #: per query, the similarity to its own identity's best gallery row
    impostor: np.ndarray  #: per query and other identity, the best similarity
    rank1: float
    queries: int
    identities: int


def score_distributions(embeddings: dict[str, list[np.ndarray]], enrol_per_person: int) -> ScoreDistributions:
    """Enrol the first ``enrol_per_person`` embeddings per identity, query with the rest.

    Genuine scores: query vs its own identity's best gallery row; impostor: vs every other identity.
    """
    g = Gallery(dim=len(next(iter(next(iter(embeddings.values()))))))
    queries: list[tuple[str, np.ndarray]] = []
    for pid, vs in sorted(embeddings.items()):
        if len(vs) <= enrol_per_person:
            continue
        g.add(pid, np.stack(vs[:enrol_per_person]))
        queries += [(pid, v) for v in vs[enrol_per_person:]]
    ids = g.persons
    q = normalise(np.stack([v for _, v in queries]))
    sims = q @ g._m.T  # noqa: SLF001 - evaluation reads the matrix directly
    per_person = np.full((len(queries), len(ids)), -np.inf, dtype=np.float32)
    for j in range(len(ids)):
        cols = np.flatnonzero(g._owner == j)  # noqa: SLF001
        per_person[:, j] = sims[:, cols].max(axis=1)
    truth = np.array([ids.index(pid) for pid, _ in queries])
    genuine = per_person[np.arange(len(queries)), truth]
    mask = np.ones_like(per_person, dtype=bool)
    mask[np.arange(len(queries)), truth] = False
    impostor = per_person[mask]
    rank1 = float(np.mean(np.argmax(per_person, axis=1) == truth))
    return {
        "genuine": genuine,
        "impostor": impostor,
        "rank1": rank1,
        "queries": len(queries),
        "identities": len(ids),
    }


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the threshold where the impostor accept rate is at most ``far``."""
    imp = np.sort(impostor)[::-1]
    k = int(np.floor(far * len(imp)))
    thr = float(imp[k]) + 1e-6 if k < len(imp) else float(imp[-1])
    return float(np.mean(genuine >= thr)), thr


def evaluate_lfw(
    directory: Path | str,
    enrol_per_person: int = 3,
    embed: EmbedFn | None = None,
    max_identities: int | None = None,
) -> dict[str, float]:
    """TAR at FAR 1e-3 and rank-1 on an LFW-style folder (one sub-folder of photos per identity).

    The first ``enrol_per_person`` photos (sorted by name) of each identity are enrolled, the rest
    are queries. Photos without a detectable face are skipped (counted in ``skipped``).
    """
    directory = Path(directory)
    embed = embed or edge_face_embedder()
    embs: dict[str, list[np.ndarray]] = {}
    skipped = 0
    for rec in read_enrolment_folder(directory)[:max_identities]:
        for p in rec.photos:
            v = embed_photo(p, embed)
            if v is None:
                skipped += 1
                continue
            embs.setdefault(rec.person_id, []).append(v)
    d = score_distributions(embs, enrol_per_person)
    tar, thr = tar_at_far(d["genuine"], d["impostor"], 1e-3)
    tar4, thr4 = tar_at_far(d["genuine"], d["impostor"], 1e-4)
    gen, imp = d["genuine"], d["impostor"]
    # a 1:N search against G persons falsely matches with about G x FAR: large galleries need the stricter threshold
    return {
        "tar_at_far_1e-3": tar,
        "rank1": float(d["rank1"]),
        "threshold_at_far_1e-3": thr,
        "tar_at_far_1e-4": tar4,
        "threshold_at_far_1e-4": thr4,
        "impostor_max": float(np.max(imp)),
        "genuine_mean": float(np.mean(gen)),
        "impostor_mean": float(np.mean(imp)),
        "queries": float(d["queries"]),
        "identities": float(d["identities"]),
        "skipped": float(skipped),
    }
