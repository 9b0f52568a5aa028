"""Durable file writes shared by the edge and the central side."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, tmp: Path | None = None, sync_dir: bool = False) -> Path:
    """Write ``data`` to ``path`` so that a crash or power loss leaves the old file or the whole new one:
    a temporary file beside it (``tmp``, default ``<name>.part``), fsync, rename over ``path``; with
    ``sync_dir`` the folder's entry is fsync'd too (before an acknowledgement that promises the file)."""
    tmp = tmp or path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync_dir:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path
