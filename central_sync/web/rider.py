"""Rider services' content and data: the content folder (case study, question bank, lesson videos) and the
penalty query (违法处理和处罚查询): a rider's own violations, what was done about them, and the reminder tasks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from central_sync.storage.models import Disposition, Event, Task
from central_sync.storage.store import CentralStore

PACKAGED = Path(__file__).parent / "content"
LESSON_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}\.(mp4|webm)$")
LESSON_TYPES = {".mp4": "video/mp4", ".webm": "video/webm"}

DISPOSITION_ZH = {
    "sms_reminder": "短信提醒",
    "voice_reminder": "语音提醒",
    "case_study_link": "案例学习",
    "education": "学习教育",
    "fine": "罚款",
    "party_index_deduction": "党员先锋指数扣分",
    "home_visit": "网格员上门",
    "public_notice": "公开通报",
    "credit_deduction": "文明信用扣分",
}
TASK_ZH = {
    **DISPOSITION_ZH,
    "education_by_employer": "单位教育",
    "education_by_community": "社区教育",
}
STATUS_ZH = {"open": "待办", "done": "已办结", "failed": "未成功（待重办）", "cancelled": "已撤销"}
#: a violation counts as dealt with once one of these is recorded at or after it (what table 1 counts too)
SETTLING = ("education", "fine")


class ContentError(ValueError):
    """A content file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Content:
    """The configured folder first, then the package's own content, file by file."""

    folder: Path | None = None

    def path(self, name: str) -> Path:
        if self.folder is not None and (self.folder / name).is_file():
            return self.folder / name
        return PACKAGED / name

    def case_text(self) -> str:
        return self.path("case.md").read_text(encoding="utf-8")

    def quiz(self) -> dict[str, Any]:
        p = self.path("quiz.yaml")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ContentError(f"{p}: cannot read the question bank: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("questions"), list) or not data["questions"]:
            raise ContentError(f"{p}: questions: a non-empty list is required")
        for i, q in enumerate(data["questions"]):
            where = f"{p}: questions[{i}]"
            if not isinstance(q, dict) or not isinstance(q.get("q"), str):
                raise ContentError(f"{where}.q: the question text is required")
            opts = q.get("options")
            if not isinstance(opts, list) or len(opts) < 2:
                raise ContentError(f"{where}.options: at least two options are required")
            a = q.get("answer")
            if not isinstance(a, int) or isinstance(a, bool) or not 0 <= a < len(opts):
                raise ContentError(f"{where}.answer: the index (from 0) of one of its {len(opts)} options")
        mark = data.get("pass_mark")
        if not isinstance(mark, int) or isinstance(mark, bool) or not 1 <= mark <= len(data["questions"]):
            raise ContentError(f"{p}: pass_mark: an integer from 1 to {len(data['questions'])}")
        return data

    def lessons(self) -> list[str]:
        """Lesson video names, the configured folder's first (a name there hides the package's)."""
        names: dict[str, None] = {}
        for d in (self.folder, PACKAGED):
            if d is not None and d.is_dir():
                for f in sorted(d.iterdir()):
                    if f.is_file() and LESSON_NAME.match(f.name):
                        names.setdefault(f.name, None)
        return list(names)

    def lesson(self, name: str) -> tuple[Path, str] | None:
        """The file of lesson ``name`` and its type; None for a name that is not a lesson (no path leaves the
        content folders: the name is one plain file name)."""
        if not LESSON_NAME.match(name) or name not in self.lessons():
            return None
        return self.path(name), LESSON_TYPES[Path(name).suffix]

    def check(self) -> None:
        """At start: a configured folder that does not exist and a broken question bank are errors now."""
        if self.folder is not None and not self.folder.is_dir():
            raise ContentError(f"web.content_dir: {self.folder} is not a folder")
        self.quiz()


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def penalty_query(store: CentralStore, person_id: str, limit: int = 100) -> dict[str, Any]:
    """The person's own violations (newest first) each with its handling status, the dispositions recorded
    for them (kind and time; officers' notes stay in the console) and the table-2 tasks with their status."""
    with store.session() as s:
        evs = s.execute(
            select(Event.event_id, Event.time, Event.point_id, Event.violation_type)
            .where(Event.person_id == person_id)
            .order_by(Event.time.desc())
            .limit(limit)
        ).all()
        disp = s.execute(
            select(Disposition.kind, Disposition.time, Disposition.source)
            .where(Disposition.person_id == person_id)
            .order_by(Disposition.time)
        ).all()
        tasks = s.execute(
            select(Task.kind, Task.status, Task.created_at, Task.closed_at, Task.outcome)
            .where(Task.person_id == person_id)
            .order_by(Task.created_at)
        ).all()
    settling = [(_aware(d.time), d.kind) for d in disp if d.kind in SETTLING]
    violations = []
    for e in evs:
        t = _aware(e.time)
        done = next(((at, k) for at, k in settling if at >= t), None)
        violations.append(
            {
                "event_id": e.event_id,
                "time": t,
                "point": e.point_id,
                "type": e.violation_type,
                "handled": None if done is None else {"kind": done[1], "time": done[0]},
            }
        )
    return {
        "violations": violations,
        "dispositions": [{"kind": d.kind, "time": _aware(d.time), "source": d.source} for d in disp],
        "tasks": [
            {
                "kind": t.kind,
                "status": t.status,
                "created_at": _aware(t.created_at),
                "closed_at": _aware(t.closed_at) if t.closed_at else None,
                "outcome": t.outcome,
            }
            for t in tasks
        ],
    }
