"""Snapshots: the peak frame of a video's presence intervals as a JPEG with the detections' boxes drawn.

Chosen from the summary's intervals (longest first, one per interval, at most ``limit`` per video) and read
back from the video after its analysis, by seeking to the frame: a handful of decodes per video instead of
keeping frames in memory during the scan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from vvctl.core.atomic import atomic_write_bytes
from vvctl.core.timeutil import rfc3339
from vvctl.core.video import open_capture

JPEG_QUALITY = 80
MAX_WIDTH = 960
"""Snapshots wider than this are scaled down (a 4K frame makes a 2 MB JPEG nobody needs on a report)."""
_COLOURS = ((0, 200, 255), (80, 220, 80), (255, 120, 40), (200, 80, 255), (40, 40, 230))


@dataclass(frozen=True)
class SnapshotPick:
    label: str
    frame: int
    t: float
    count: int


def pick(labels: Mapping[str, Mapping[str, Any]], limit: int) -> list[SnapshotPick]:
    """The peak frame of each presence interval, longest intervals first, one per frame, at most ``limit``."""
    if limit <= 0:
        return []
    candidates: list[tuple[float, int, str, Mapping[str, Any]]] = []
    for label, stats in labels.items():
        for interval in stats.get("intervals", ()):
            if "peak_frame" in interval:
                length = float(interval["end_s"]) - float(interval["start_s"])
                candidates.append((-length, -int(interval["peak_count"]), label, interval))
    candidates.sort(key=lambda item: (item[0], item[1], item[2], float(item[3]["start_s"])))
    chosen: list[SnapshotPick] = []
    frames: set[int] = set()
    for _, _, label, interval in candidates:
        frame = int(interval["peak_frame"])
        if frame in frames:
            continue
        frames.add(frame)
        chosen.append(SnapshotPick(label, frame, float(interval["peak_at_s"]), int(interval["peak_count"])))
        if len(chosen) >= limit:
            break
    return sorted(chosen, key=lambda p: p.t)


def take_snapshots(
    video: Path,
    picks: Sequence[SnapshotPick],
    detections: Sequence[Mapping[str, Any]],
    directory: Path,
    tag: str,
    *,
    start: datetime | None,
    root: Path,
) -> list[dict[str, Any]]:
    """Write one JPEG per pick (``<tag>.snapN.jpg`` in ``directory``); the summary's ``snapshots`` entries.

    A frame that cannot be read back (a stream that does not seek) is left out, never an error: snapshots
    are for people, the analytic is the record."""
    if not picks:
        return []
    import cv2

    by_frame: dict[int, list[Mapping[str, Any]]] = {}
    for detection in detections:
        by_frame.setdefault(int(detection["frame"]), []).append(detection)
    written: list[dict[str, Any]] = []
    cap = open_capture(video)
    try:
        if not cap.isOpened():
            return []
        directory.mkdir(parents=True, exist_ok=True)
        for number, choice in enumerate(picks, start=1):
            cap.set(cv2.CAP_PROP_POS_FRAMES, choice.frame)
            ok, image = cap.read()
            if not ok or image is None:
                continue
            for detection in by_frame.get(choice.frame, ()):
                colour = _COLOURS[sum(map(ord, str(detection["label"]))) % len(_COLOURS)]
                x1, y1, x2, y2 = (round(float(v)) for v in detection["box"])
                cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
                caption = f"{detection['label']} {float(detection['confidence']):.2f}"
                cv2.putText(
                    image, caption, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA
                )
            height, width = image.shape[:2]
            if width > MAX_WIDTH:
                image = cv2.resize(
                    image, (MAX_WIDTH, max(1, height * MAX_WIDTH // width)), interpolation=cv2.INTER_AREA
                )
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                continue
            path = directory / f"{tag}.snap{number}.jpg"
            atomic_write_bytes(path, encoded.tobytes())
            entry: dict[str, Any] = {
                "path": path.relative_to(root).as_posix(),
                "label": choice.label,
                "t": round(choice.t, 3),
                "count": choice.count,
            }
            if start is not None:
                entry["at"] = rfc3339(start + timedelta(seconds=choice.t))
            written.append(entry)
    finally:
        cap.release()
    return written
