"""Stage 1: capture. Open a file, network stream (RTSP...), V4L2 device or GStreamer pipeline,
timestamp every frame, reconnect with backoff, never raise out of the capture loop.

Typical wiring (the daemon owns the threads)::

    source = FrameSource(cfg.source, base_dir=cfg.base_dir, health=health)
    sampler, to_detect = DetectSampler(cfg.source.detect_fps), DetectQueue(cfg.source.detect_queue)
    for frame in source.frames():          # capture thread; ends at end of file or source.stop()
        recorder.push(frame)               # every frame to the ring buffer (edge.buffer)
        if sampler.want(frame):
            to_detect.put(frame)           # never blocks; drops the oldest sampled frame if detection lags
    to_detect.close()

``Frame.packets`` carries the encoded packets of compressed sources to the buffer; raw sources
(V4L2, GStreamer) have none and the buffer JPEG-encodes their images. ``Frame.image`` (BGR) is
converted from the decoder's YUV frame on first access, so only sampled frames pay for it.

Health: component ``camera`` is ``up`` (with fps/frames), ``down`` with the reason and the next
retry while the source fails, ``off`` at the end of a file. ``anqi-edge test-camera`` (``edge.cli.camera``)
reports a camera's codec, size, fps, keyframe interval and bit rate and saves a snapshot.
Test clips (the 1080p25 H.264 clip tests and benchmarks use, raw-camera frames of a file) are
development tooling: :mod:`anqi_tools.testclips`, outside the runtime.
"""

from edge.source.capture import FrameSource, SourceError, SourceState, SourceStats, check_config
from edge.source.frame import RAW_CODEC, EncodedPacket, Frame, StreamInfo
from edge.source.sampler import DetectQueue, DetectSampler
from edge.source.uri import SourceKind, guess_kind, redact_uri

__all__ = [
    "RAW_CODEC",
    "DetectQueue",
    "DetectSampler",
    "EncodedPacket",
    "Frame",
    "FrameSource",
    "SourceError",
    "SourceKind",
    "SourceState",
    "SourceStats",
    "StreamInfo",
    "check_config",
    "guess_kind",
    "redact_uri",
]
