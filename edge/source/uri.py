"""What kind of source a ``source.uri`` names, and how to print it without its password."""

from __future__ import annotations

import re
from typing import Literal

SourceKind = Literal["file", "rtsp", "v4l2", "gstreamer"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CREDENTIALS = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/@:]*):([^/@]*)@")


def guess_kind(uri: str) -> SourceKind:
    """``auto`` resolution: a GStreamer pipeline has ``!``; ``/dev/videoN`` or a bare index is V4L2;
    any ``scheme://`` URL except ``file://`` is a network stream (opened by FFmpeg); the rest is a file."""
    u = uri.strip()
    if "!" in u:
        return "gstreamer"
    if u.startswith("/dev/video") or u.isdigit():
        return "v4l2"
    if _SCHEME.match(u) and not u.lower().startswith("file://"):
        return "rtsp"
    return "file"


def redact_uri(uri: str) -> str:
    """``rtsp://user:secret@host/x`` -> ``rtsp://user:***@host/x`` (for logs and health)."""
    return _CREDENTIALS.sub(lambda m: f"{m.group(1)}{m.group(2)}:***@", uri.strip())


def file_path(uri: str) -> str:
    u = uri.strip()
    return u[len("file://") :] if u.lower().startswith("file://") else u
