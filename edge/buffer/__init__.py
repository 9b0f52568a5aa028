"""Stage 2: the pre-roll ring buffer of *encoded* video and the violation clip writer.

Typical wiring (the daemon owns the threads)::

    buffer = PrerollBuffer(cfg.buffer, health=health)
    recorder = ClipRecorder(buffer, cfg.buffer, media_dir, health=health)
    recorder.start()                      # writer thread + JPEG worker for raw sources
    for frame in source.frames():         # capture thread
        recorder.push(frame)              # every frame: the ring never drops
    ...
    fut = recorder.trigger(event_id, at_pts_s=frame.pts_s)   # when a rule fires on `frame`
    clip = fut.result()                   # Clip: path (complete file), start_utc, end_utc, ...
    recorder.close()                      # end of stream: pending clips finish with what exists

Compressed sources are remuxed (no re-encode): the bitstream starts at the keyframe at or before
``t - pre_s`` and an MP4 edit list makes the file show from ``t - pre_s`` (``clip_exact_start``);
raw sources are kept as JPEG and encoded to H.264 (libx264, else MPEG-4) per clip.
"""

from edge.buffer.mp4 import WrittenClip, clip_encoder, write_clip
from edge.buffer.preroll import BufferStats, FrameStamp, PrerollBuffer, jpeg_encode_ms
from edge.buffer.recorder import Clip, ClipRecorder

__all__ = [
    "BufferStats",
    "Clip",
    "ClipRecorder",
    "FrameStamp",
    "PrerollBuffer",
    "WrittenClip",
    "clip_encoder",
    "jpeg_encode_ms",
    "write_clip",
]
