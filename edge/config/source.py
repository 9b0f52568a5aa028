"""``source``: the camera or file the appliance watches."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edge.config.base import Section


class SourceConfig(Section):
    uri: str = Field("", description="File path, rtsp:// URL, /dev/videoN (V4L2) or a GStreamer pipeline (contains '!').")
    kind: Literal["auto", "file", "rtsp", "v4l2", "gstreamer"] = Field("auto", description="How to open uri; auto guesses from its form.")
    detect_fps: float = Field(8.0, gt=0, le=60, description="Frames per second handed to detection; every frame still goes to the ring buffer.")
    realtime: bool = Field(False, description="For files: pace frames at the file's own rate, as a camera would deliver them.")
    reconnect_initial_s: float = Field(1.0, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _backoff_order(self) -> "SourceConfig":
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError(
                f"reconnect_max_s must be >= reconnect_initial_s (got {self.reconnect_max_s} < {self.reconnect_initial_s})"
            )
        return self
