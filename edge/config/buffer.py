"""``buffer``: the pre-roll ring buffer and the violation clip around each event."""

from __future__ import annotations

from pydantic import Field

from edge.config.base import Section


class BufferConfig(Section):
    pre_s: float = Field(6.0, ge=0, le=30, description="Seconds of video kept before a violation (standard: 6 s).")
    post_s: float = Field(1.0, ge=0, le=10, description="Seconds recorded after a violation (standard: 1 s).")
    jpeg_quality: int = Field(80, ge=30, le=100, description="JPEG quality for raw sources, whose frames are kept encoded.")
    max_mb: float = Field(96.0, gt=1, le=2048, description="Hard memory bound of the ring buffer in MiB; oldest frames go first.")
