"""Analytic document → summary document: per-label statistics, a status class and one readable sentence.

A pure function of its inputs (no clock, no files), so the same analytic always gives the same summary
and a summary can be recomputed and compared at any time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from vvctl.core.settings import StatusRule
from vvctl.core.timeutil import parse_rfc3339, rfc3339

SCHEMA_VERSION = 1
ACTIVITY = "activity"
QUIET = "quiet"
MINUTE_S = 60.0


@dataclass
class _LabelTally:
    class_id: int
    detections: int = 0
    confidence_sum: float = 0.0
    per_sample: dict[int, int] = field(default_factory=dict)
    per_minute: dict[int, int] = field(default_factory=lambda: defaultdict(int))


def _round(value: float) -> float:
    return round(value, 3)


def _sample_cover(times: Sequence[float], duration_s: float, interval_s: float) -> list[float]:
    """Seconds of video each sampled frame stands for: up to the next sample, the last one up to the end."""
    cover: list[float] = []
    for position, start in enumerate(times):
        end = times[position + 1] if position + 1 < len(times) else min(start + interval_s, duration_s)
        cover.append(max(min(end, duration_s) - start, 0.0))
    return cover


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _at(start: datetime | None, offset_s: float) -> str | None:
    return None if start is None else rfc3339(start + timedelta(seconds=offset_s))


def source_start(analytic: Mapping[str, Any]) -> datetime | None:
    """The video's wall-clock start (``source.start_at``), None in analytics written before it was recorded."""
    text = analytic["source"].get("start_at")
    return None if text is None else parse_rfc3339(str(text))


def presence_intervals(
    times: Sequence[float],
    cover: Sequence[float],
    counts: Mapping[int, int],
    frames: Sequence[int],
    *,
    interval_s: float,
    gap_s: float,
    start: datetime | None = None,
) -> list[dict[str, Any]]:
    """Runs of sampled frames in which a label was seen (``counts``: sample position → detections).

    Two frames with the label belong to one interval when they are at most ``interval_s + gap_s`` apart
    (``gap_s`` 0: only neighbouring samples). An interval ends where its last frame's span ends (the next
    sample, or the end of the video), so a label seen on one frame is present for one sampling interval.
    """
    intervals: list[dict[str, Any]] = []
    current: list[int] = []

    def close() -> None:
        first, last = current[0], current[-1]
        peak = max(counts[p] for p in current)
        peak_position = min(p for p in current if counts[p] == peak)
        end = times[last] + cover[last]
        item: dict[str, Any] = {
            "start_s": _round(times[first]),
            "end_s": _round(end),
            "peak_count": peak,
            "peak_at_s": _round(times[peak_position]),
            "peak_frame": frames[peak_position],
            "frames": len(current),
        }
        if start is not None:
            item["start_at"] = _at(start, times[first])
            item["end_at"] = _at(start, end)
        intervals.append(item)

    limit = interval_s + gap_s + 1e-6
    for position in sorted(counts):
        if current and times[position] - times[current[-1]] > limit:
            close()
            current = []
        current.append(position)
    if current:
        close()
    return intervals


def label_statistics(analytic: Mapping[str, Any], *, presence_gap_s: float = 0.0) -> dict[str, dict[str, Any]]:
    """Per-label statistics over the sampled frames of one analytic document."""
    samples: Sequence[Mapping[str, Any]] = analytic["samples"]
    times = [float(sample["t"]) for sample in samples]
    position_of = {int(sample["frame"]): position for position, sample in enumerate(samples)}
    frames = [int(sample["frame"]) for sample in samples]
    duration = float(analytic["source"]["duration_s"])
    interval = float(analytic["sampling"]["interval_s"])
    cover = _sample_cover(times, duration, interval)
    start = source_start(analytic)

    tallies: dict[str, _LabelTally] = {}
    for detection in analytic["detections"]:
        label = str(detection["label"])
        tally = tallies.setdefault(label, _LabelTally(class_id=int(detection["class_id"])))
        tally.detections += 1
        tally.confidence_sum += float(detection["confidence"])
        position = position_of[int(detection["frame"])]
        tally.per_sample[position] = tally.per_sample.get(position, 0) + 1
        tally.per_minute[int(float(detection["t"]) // MINUTE_S)] += 1

    stats: dict[str, dict[str, Any]] = {}
    for label in sorted(tallies):
        tally = tallies[label]
        positions = sorted(tally.per_sample)
        peak = max(tally.per_sample.values())
        peak_position = min(p for p, count in tally.per_sample.items() if count == peak)
        minute, minute_count = min(tally.per_minute.items(), key=lambda item: (-item[1], item[0]))
        present = sum(cover[p] for p in positions)
        stats[label] = {
            "class_id": tally.class_id,
            "detections": tally.detections,
            "frames_present": len(positions),
            "peak_simultaneous": peak,
            "peak_at_s": _round(times[peak_position]),
            "first_seen_s": _round(times[positions[0]]),
            "last_seen_s": _round(times[positions[-1]]),
            "time_present_s": _round(present),
            "presence_ratio": _round(min(present / duration, 1.0)) if duration > 0 else 0.0,
            "mean_confidence": _round(tally.confidence_sum / tally.detections),
            "busiest_minute": {
                "start_s": _round(minute * MINUTE_S),
                "end_s": _round(min((minute + 1) * MINUTE_S, max(duration, minute * MINUTE_S))),
                "detections": minute_count,
            },
            "intervals": presence_intervals(
                times, cover, tally.per_sample, frames, interval_s=interval, gap_s=presence_gap_s, start=start
            ),
        }
    return stats


def status_class(labels: Mapping[str, Mapping[str, Any]], rules: Sequence[StatusRule]) -> tuple[str, StatusRule | None]:
    """The first rule whose label was detected at least ``min_detections`` times; else activity or quiet."""
    for rule in rules:
        seen = labels.get(rule.label)
        if seen is not None and int(seen["detections"]) >= rule.min_detections:
            return rule.status, rule
    return (ACTIVITY if labels else QUIET), None


def _label_sentence(label: str, stats: Mapping[str, Any], duration: float, frames: int) -> str:
    minute = stats["busiest_minute"]
    return (
        f"{label} seen in {stats['presence_ratio'] * 100:.0f}% of the video "
        f"({stats['frames_present']} of {frames} sampled frames, {stats['detections']} detections), "
        f"up to {stats['peak_simultaneous']} at once (at {stats['peak_at_s']:.1f} s), "
        f"first at {stats['first_seen_s']:.1f} s, last at {stats['last_seen_s']:.1f} s, "
        f"busiest minute {_clock(minute['start_s'])}-{_clock(minute['end_s'])} "
        f"with {minute['detections']} detections"
    )


def describe(name: str, status: str, labels: Mapping[str, Mapping[str, Any]], duration: float, frames: int) -> str:
    """One sentence for people: the status class, then each label, most detections first."""
    if not labels:
        return f"{name}: {status}: nothing detected in {duration:.1f} s of video ({frames} sampled frames)."
    ordered = sorted(labels.items(), key=lambda item: (-int(item[1]["detections"]), item[0]))
    parts = "; ".join(_label_sentence(label, stats, duration, frames) for label, stats in ordered)
    return f"{name}: {status}: {parts} ({duration:.1f} s of video)."


def summarize(
    analytic: Mapping[str, Any],
    rules: Sequence[StatusRule],
    *,
    analytic_name: str,
    presence_gap_s: float = 0.0,
    snapshots: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The summary document for ``analytic`` (validate it against ``summary.schema.json`` before writing)."""
    source = analytic["source"]
    duration = float(source["duration_s"])
    frames = int(analytic["sampling"]["frames_sampled"])
    labels = label_statistics(analytic, presence_gap_s=presence_gap_s)
    status, rule = status_class(labels, rules)
    summary_source: dict[str, Any] = {
        "name": source["name"],
        "sha256": source["sha256"],
        "duration_s": _round(duration),
    }
    for key in ("path", "camera", "start_at", "time_source"):
        if key in source:
            summary_source[key] = source[key]
    start = source_start(analytic)
    if start is not None:
        summary_source["end_at"] = _at(start, duration)
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "vvctl.summary",
        "source": summary_source,
        "analytic": analytic_name,
        "model": {"name": analytic["model"]["name"], "sha256": analytic["model"]["sha256"]},
        "config_hash": analytic["config_hash"],
        "sampling": {"interval_s": analytic["sampling"]["interval_s"], "frames_sampled": frames},
        "labels": labels,
        "status": status,
        "status_rule": (
            None
            if rule is None
            else {"label": rule.label, "min_detections": rule.min_detections, "status": rule.status}
        ),
        "text": describe(str(source["name"]), status, labels, duration, frames),
    }
    if snapshots:
        document["snapshots"] = [dict(item) for item in snapshots]
    return document
