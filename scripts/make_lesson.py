#!/usr/bin/env python3
"""Regenerate the shipped lesson video (central_sync/web/content/lesson.mp4) from the case study text.

One slide per paragraph of case.md (title slide first), drawn by ffmpeg's drawtext with the CJK font the
set-up installs (WenQuanYi Micro Hei), 640x360, H.264 yuv420p with the index at the front (+faststart: the
phone's player starts before the whole file arrived and seeks with Range requests). A site's own lesson
(a real recorded case) goes into the folder named by web.content_dir instead.

    .venv/bin/python scripts/make_lesson.py [--case central_sync/web/content/case.md] [--out .../lesson.mp4]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "central_sync" / "web" / "content"
FONTS = [
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
]


def wrap(text: str, width: int) -> str:
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", type=Path, default=CONTENT / "case.md")
    ap.add_argument("--out", type=Path, default=CONTENT / "lesson.mp4")
    ap.add_argument("--seconds", type=float, default=5.0, help="Seconds per slide.")
    a = ap.parse_args()
    font = next((f for f in FONTS if f.is_file()), None)
    if font is None or not shutil.which("ffmpeg"):
        print(f"needs ffmpeg and a CJK font ({', '.join(map(str, FONTS))})", file=sys.stderr)
        return 1
    paras = [p.strip() for p in a.case.read_text(encoding="utf-8").splitlines() if p.strip()]
    slides = ["安骑 骑行安全\n案例学习", *(wrap(p, 19) for p in paras)]
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for i, text in enumerate(slides):
            tf = Path(tmp) / f"s{i}.txt"
            tf.write_text(text, encoding="utf-8")
            size = 40 if i == 0 else 28
            part = Path(tmp) / f"s{i}.mp4"
            subprocess.run(  # nosec B603 - fixed argument list
                ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi",
                 "-i", f"color=c=0x12263d:s=640x360:r=10:d={a.seconds}",
                 "-vf", f"drawtext=fontfile={font}:textfile={tf}:fontcolor=white:fontsize={size}:"
                        "line_spacing=10:x=(w-text_w)/2:y=(h-text_h)/2",
                 "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "30", str(part)],
                check=True,
            )  # fmt: skip
            parts.append(part)
        lst = Path(tmp) / "list.txt"
        lst.write_text("".join(f"file '{p}'\n" for p in parts))
        a.out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # nosec B603 - fixed argument list
            ["ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(lst),
             "-c", "copy", "-movflags", "+faststart", str(a.out)],
            check=True,
        )  # fmt: skip
    print(f"{a.out}: {len(slides)} slides, {len(slides) * a.seconds:.0f} s, {a.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
