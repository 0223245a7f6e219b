"""Re-create the short clips in this folder from the full test videos in ``<repo>/../shared/testdata``.

Run once by a maintainer (``python tests/data/make_testdata.py``), never by the tests: the clips are
committed, so the default suite runs on a fresh clone. Each clip is a cut of a licence-compatible real
recording, downscaled and re-encoded with OpenCV's own FFmpeg (no H.264 encoder there), with its
notice next to it (``NOTICE-<clip>.txt``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
SHARED_VIDEOS = HERE.parents[1].parent / "shared" / "testdata" / "videos"

# name: (source, first frame, frame count, size, fourcc)
CLIPS = {
    # MS-MPEG4 v3 in AVI, the source's own legacy codec: pedestrians on the walkway, 4.5 s at 10 fps.
    "people.avi": ("vtest.avi", 30, 45, (320, 240), "MP43"),
    # MPEG-4 Part 2 in MP4 at the source's fractional 12.5 fps: a car crossing the lot, 63 frames.
    "cars.mp4": ("car-detection.mp4", 60, 63, (320, 180), "mp4v"),
}


def cut(source: Path, target: Path, first: int, count: int, size: tuple[int, int], fourcc: str) -> None:
    cap = cv2.VideoCapture(str(source))
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    try:
        for index in range(first + count):
            ok, frame = cap.read()
            if not ok:
                raise SystemExit(f"{source.name} ended at frame {index}")
            if index >= first:
                writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    finally:
        cap.release()
        writer.release()


def main() -> int:
    if not SHARED_VIDEOS.is_dir():
        print(f"the full test videos are not at {SHARED_VIDEOS}", file=sys.stderr)
        return 1
    for name, (source, first, count, size, fourcc) in CLIPS.items():
        cut(SHARED_VIDEOS / source, HERE / name, first, count, size, fourcc)
        print(f"{name}: {(HERE / name).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
