"""Run the peer, PyPI ``helmet-detector`` 2.1.0, through its own video command on a clip.

Runs inside the ``[train]`` environment (torch + ultralytics): ``python run_helmet_detect.py CLIP OUT``.
The peer's checkpoint needs the fork-layout attention forward (``anqi_tools.baseline``, the same
one ``anqi-edge models prepare --baseline`` uses); nothing else of the peer is changed. Prints the peer's own console output, then one JSON line:
frames, seconds in ``detect_video`` (model load excluded), frames/s and what it found.
"""

from __future__ import annotations

import json
import re
import sys
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ultralytics.nn.modules import block  # noqa: E402

from anqi_tools.baseline import fork_aattn_forward  # noqa: E402

_stock_forward = block.AAttn.forward
block.AAttn.forward = lambda self, x: (
    fork_aattn_forward(self, x) if hasattr(self, "qk") else _stock_forward(self, x)
)

from helmet_detector_pkg import detector as peer  # noqa: E402
from helmet_detector_pkg.cli import main as peer_cli  # noqa: E402


def run(clip: str, out: str) -> dict[str, float]:
    timing: dict[str, float] = {}
    original = peer.HelmetDetector.detect_video

    def timed(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            timing["seconds"] = time.perf_counter() - t0

    peer.HelmetDetector.detect_video = timed
    sys.argv = ["helmet-detect", "--source", clip, "--output", out, "--no-notify", "--no-video"]
    buf = StringIO()
    with redirect_stdout(buf):
        peer_cli()
    text = buf.getvalue()
    sys.stderr.write(text)
    frames = int(re.search(r"处理帧数: (\d+)", text).group(1))  # type: ignore[union-attr]
    first = int(re.search(r"初检违规: (\d+)", text).group(1))  # type: ignore[union-attr]
    verified = int(re.search(r"复验通过: (\d+)", text).group(1))  # type: ignore[union-attr]
    secs = timing["seconds"]
    return {
        "frames": frames,
        "seconds": round(secs, 2),
        "fps": round(frames / secs, 3),
        "no_helmet_tracks": first,
        "no_helmet_verified": verified,
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], sys.argv[2])))
