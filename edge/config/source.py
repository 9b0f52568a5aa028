"""``source``: the camera or file the appliance watches."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from anqi_contract.config import Section


class SourceConfig(Section):
    uri: str = Field(
        "",
        description="File path, rtsp:// (or other scheme://) URL, /dev/videoN (V4L2) or a GStreamer pipeline (contains '!').",
    )
    kind: Literal["auto", "file", "rtsp", "v4l2", "gstreamer"] = Field(
        "auto",
        description="How to open uri; auto guesses from its form ('rtsp' covers every network URL PyAV/FFmpeg opens: rtsp, rtmp, http, tcp, udp, srt).",
    )
    detect_fps: float = Field(
        8.0,
        gt=0,
        le=60,
        description="Frames per second handed to detection; every frame still goes to the ring buffer.",
    )
    detect_queue: int = Field(
        2,
        ge=1,
        le=64,
        description="Sampled frames waiting for detection; when detection lags the oldest is dropped (the ring buffer never drops).",
    )
    realtime: bool = Field(
        False, description="For files: pace frames at the file's own rate, as a camera would deliver them."
    )
    reconnect_initial_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="First wait before reopening a source that failed or dropped; doubles per failure.",
    )
    reconnect_max_s: float = Field(30.0, gt=0, le=600, description="Longest wait between reopen attempts.")
    reconnect_attempts: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="Failed reopen attempts in a row before the source gives up and ends; null: forever for cameras and streams, 3 for files; 0: never reopen.",
    )
    open_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="Network streams: give up opening after this long (then back off and retry).",
    )
    read_timeout_s: float = Field(
        5.0, gt=0, le=120, description="Network streams: a stream silent this long counts as dropped."
    )
    rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp", description="RTSP transport; tcp survives lossy links without smeared frames."
    )
    decode_threads: int = Field(
        0, ge=0, le=16, description="Decoder threads for compressed streams; 0 lets FFmpeg choose."
    )
    capture_width: int = Field(
        0,
        ge=0,
        le=7680,
        description="V4L2 / GStreamer: requested frame width in pixels; 0 keeps the device default.",
    )
    capture_height: int = Field(
        0,
        ge=0,
        le=4320,
        description="V4L2 / GStreamer: requested frame height in pixels; 0 keeps the device default.",
    )
    capture_fps: float = Field(
        0.0, ge=0, le=240, description="V4L2: requested frame rate; 0 keeps the device default."
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> SourceConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError(
                f"reconnect_max_s must be >= reconnect_initial_s (got {self.reconnect_max_s} < {self.reconnect_initial_s})"
            )
        return self
