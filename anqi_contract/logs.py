"""Structured logging: one ``key=value`` line per event, to stdout (journald picks it up).

Use :func:`log` with an event name and fields. Never pass face images, embeddings, ID numbers
or passwords: :data:`REDACTED_KEYS` are masked anyway as a last line of defence.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

REDACTED_KEYS = frozenset({"password", "embedding", "id_number", "token", "secret", "face_jpeg"})


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        v = f"{v:.4g}"
    s = str(v)
    if not s or any(c in s for c in ' "=\n\t'):
        s = '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [
            f"ts={ts}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_fmt_value(record.getMessage())}",
        ]
        fields = getattr(record, "fields", None) or {}
        for k, v in fields.items():
            parts.append(f"{k}={'***' if k in REDACTED_KEYS else _fmt_value(v)}")
        if record.exc_info:
            parts.append(f"exc={_fmt_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


def setup_logging(level: str = "INFO", stream: Any = None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(level)


def log(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured line: ``msg=<event>`` plus ``key=value`` fields."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})
