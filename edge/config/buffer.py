"""``buffer``: the pre-roll ring buffer and the violation clip around each event."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from anqi_contract.config import Section


class BufferConfig(Section):
    pre_s: float = Field(
        6.0, ge=0, le=30, description="Seconds of video kept before a violation (standard: 6 s)."
    )
    post_s: float = Field(1.0, ge=0, le=10, description="Seconds recorded after a violation (standard: 1 s).")
    trigger_lag_s: float = Field(
        2.0,
        ge=0,
        le=30,
        description="Extra seconds kept beyond pre_s, so a violation decided this late (detection latency) still gets its full pre-roll.",
    )
    jpeg_quality: int = Field(
        80,
        ge=30,
        le=100,
        description="JPEG quality for raw sources (V4L2, GStreamer), whose frames are kept encoded.",
    )
    max_mb: float = Field(
        96.0,
        gt=1,
        le=2048,
        description="Hard memory bound of the ring buffer in MiB; oldest keyframe groups go first.",
    )
    clip_exact_start: bool = Field(
        True,
        description="Remuxed clips: show from the frame at t - pre_s (an MP4 edit list hides the frames between the preceding keyframe and it); false shows from the keyframe.",
    )
    clip_codec: Literal["auto", "libx264", "mpeg4", "h264_v4l2m2m"] = Field(
        "auto",
        description=(
            "Encoder for clips of raw (JPEG) sources; auto: libx264 when FFmpeg has it, else mpeg4; h264_v4l2m2m: the Raspberry Pi's"
            " hardware H.264 encoder (falls back to software when absent). Compressed sources are remuxed, never re-encoded."
        ),
    )
    clip_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = Field(
        "veryfast", description="libx264 preset for clips of raw sources (speed against size)."
    )
    clip_max_height: int = Field(
        0,
        ge=0,
        le=4320,
        description="Raw sources: scale clips down to at most this many lines (720 instead of 1080: ~1.6x less CPU, half the bytes); 0 keeps the size.",
    )
    clip_crf: int = Field(
        23,
        ge=0,
        le=51,
        description="libx264 constant rate factor for clips of raw sources (lower is better and larger).",
    )
