"""What the source hands on: decoded frames for detection, encoded packets for the ring buffer."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import av.stream

_CONVERT_LOCK = threading.Lock()

#: codec name of a raw source (V4L2, GStreamer): frames carry no packets, the buffer JPEG-encodes them
RAW_CODEC = "rawvideo"


@dataclass(eq=False)
class StreamInfo:
    """One opened session of the source (a new one after each reconnect).

    ``template`` is a tiny Matroska file (header plus the first keyframe) that carries the codec
    parameters (SPS/PPS), so a clip can be remuxed after the session's container is closed; the
    source sets it once, at the session's first keyframe (None for raw sources).
    ``pts_offset_s`` maps the stream's own clock onto the source's continuous timeline:
    ``pts_s = (pts - first_pts) * time_base + pts_offset_s``.
    """

    session: int
    codec: str
    width: int
    height: int
    time_base: Fraction
    fps: float
    first_pts: int = 0
    pts_offset_s: float = 0.0
    template: bytes | None = field(default=None, repr=False)

    @property
    def is_raw(self) -> bool:
        return self.codec == RAW_CODEC

    def to_seconds(self, pts: int) -> float:
        """Stream ticks to the source timeline (seconds)."""
        return float((pts - self.first_pts) * self.time_base) + self.pts_offset_s

    @staticmethod
    def make_template(stream: av.stream.Stream, keyframe: av.Packet) -> bytes:
        """Write the codec parameters of an open input ``stream`` (plus one keyframe) to bytes."""
        import av

        buf = io.BytesIO()
        with av.open(buf, "w", format="matroska") as out:
            ostream = out.add_stream_from_template(stream)
            pkt = av.Packet(bytes(keyframe))
            pkt.pts = pkt.dts = 0
            pkt.time_base = keyframe.time_base
            pkt.is_keyframe = True
            pkt.stream = ostream
            out.mux(pkt)
        return buf.getvalue()


@dataclass(frozen=True, eq=False, slots=True)
class EncodedPacket:
    """One compressed access unit in decode order, as kept by the ring buffer.

    ``pts``/``dts`` are in ``stream.time_base`` ticks of the packet's own session; ``pts_s`` and
    ``dts_s`` are on the source's continuous timeline (seconds). For raw sources the buffer makes
    one JPEG packet per frame (``stream.codec == "mjpeg"``, every packet a keyframe).
    """

    data: bytes
    pts: int
    dts: int
    duration: int
    keyframe: bool
    stream: StreamInfo

    @property
    def pts_s(self) -> float:
        return self.stream.to_seconds(self.pts)

    @property
    def dts_s(self) -> float:
        return self.stream.to_seconds(self.dts)

    @property
    def size(self) -> int:
        return len(self.data)


class Frame:
    """A decoded frame, timestamped at capture (the contract in docs/ARCHITECTURE.md).

    ``image`` is BGR uint8 HxWx3 and read-only (it is shared with the ring buffer's JPEG encoder
    and with detection: copy it before drawing). For compressed sources it is converted from the
    decoder's YUV frame on first access only, so frames that only go to the ring buffer (all but
    the ``detect_fps`` sample) never cost a colour conversion or a 6 MB array at 1080p.
    ``pts_s`` is the continuous source timeline (stream time; it keeps increasing across
    reconnects). ``mono`` is ``time.monotonic()`` at capture; ``utc`` the aware UTC time the frame
    shows (for files: open time + stream time). ``packets`` are the encoded packets demuxed since
    the previous frame (decode order; empty for raw sources): hand every frame to the ring buffer
    and it sees every packet exactly once. Treat every attribute as read-only.
    """

    __slots__ = (
        "index",
        "pts_s",
        "mono",
        "utc",
        "stream",
        "keyframe",
        "packets",
        "_image",
        "_decoded",
        "_size",
    )

    def __init__(
        self,
        image: np.ndarray | None = None,
        *,
        index: int,
        pts_s: float,
        mono: float,
        utc: datetime,
        stream: StreamInfo,
        keyframe: bool = False,
        packets: tuple[EncodedPacket, ...] = (),
        decoded: Any = None,
    ):
        if image is None and decoded is None:
            raise ValueError("Frame needs an image or a decoded video frame")
        self.index = index
        self.pts_s = pts_s
        self.mono = mono
        self.utc = utc
        self.stream = stream
        self.keyframe = keyframe
        self.packets = packets
        self._image = image
        self._decoded = decoded  # av.VideoFrame, converted to BGR on first use
        self._size = (
            (int(image.shape[1]), int(image.shape[0]))
            if image is not None
            else (int(decoded.width), int(decoded.height))
        )

    @property
    def image(self) -> np.ndarray:
        img = self._image
        if img is None:
            with _CONVERT_LOCK:  # two threads asking at once convert once
                img = self._image
                if img is None:
                    img = self._decoded.to_ndarray(format="bgr24")
                    img.flags.writeable = False
                    self._image, self._decoded = img, None
        return img

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) without converting the image."""
        return self._size

    @property
    def session(self) -> int:
        return self.stream.session

    def utc_at(self, pts_s: float) -> datetime:
        """UTC time of another instant on the same timeline, anchored on this frame."""
        return self.utc + timedelta(seconds=pts_s - self.pts_s)

    def replace(self, **changes: Any) -> Frame:
        """A copy with some fields changed (like ``dataclasses.replace``)."""
        fields: dict[str, Any] = {
            k: getattr(self, k) for k in ("index", "pts_s", "mono", "utc", "stream", "keyframe", "packets")
        }
        fields.update(changes)
        if "image" not in fields and "decoded" not in fields:
            fields["image"] = self._image
            fields["decoded"] = self._decoded
        return Frame(**fields)

    def __repr__(self) -> str:
        w, h = self._size
        return (
            f"Frame(index={self.index}, pts_s={self.pts_s:.4f}, {w}x{h}, session={self.stream.session}, "
            f"keyframe={self.keyframe}, packets={len(self.packets)})"
        )
