"""The day's results for people: a day index, a self-contained HTML report and a playlist.

For one calendar day (in ``source_timezone``), from the summaries whose video started that day:

* ``reports/YYYY-MM-DD.json``: the day index. Every presence interval of every label on every camera, in
  wall-clock UTC, with its video and offset: "every interval with people on camera X today" is a filter
  over ``intervals``.
* ``reports/YYYY-MM-DD.html``: one page, no external resource (snapshots inlined as data URIs): per camera
  a 24-hour timeline strip, the intervals and the snapshots.
* ``playlists/YYYY-MM-DD.m3u8``: the day's videos whose status is one of ``playlist_statuses``, each starting
  at its first interval of the status rule's label, for VLC or a kiosk player; the bundled clip in
  ``fallback/`` when no video qualifies, so a player always has something to show.

All three are rebuilt from the summaries each time (``vvctl orchestrate`` after each pass for the days it
touched, ``vvctl report --date`` by hand) and written atomically.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from vvctl.core.atomic import atomic_write_json, atomic_write_text
from vvctl.core.errors import ConfigError, StorageError, UsageError
from vvctl.core.layout import StorageLayout, check_storage_root
from vvctl.core.settings import Settings
from vvctl.core.timeutil import Clock, parse_rfc3339, rfc3339, utcnow

SCHEMA_VERSION = 1
SUMMARY_SUFFIX = ".summary.json"
MAX_INLINE_SNAPSHOT_BYTES = 512 * 1024
"""A snapshot larger than this is linked (relative path), not inlined, to keep the page small."""
MAX_INLINE_SNAPSHOTS = 200
"""Snapshots inlined per page; the rest are linked."""


@dataclass(frozen=True)
class DayReport:
    date: str
    timezone: str
    videos: int
    cameras: list[str]
    intervals: list[dict[str, Any]]
    """The intervals selected (all, or those of ``--camera``/``--label``)."""
    index: Path
    html: Path
    playlist: Path
    playlist_entries: int
    fallback_used: bool = False
    notes: list[str] = field(default_factory=list)


def zone(settings: Settings) -> ZoneInfo:
    try:
        return ZoneInfo(settings.source_timezone)
    except (ValueError, OSError, KeyError) as exc:
        raise ConfigError(f"source_timezone {settings.source_timezone!r} is not a known IANA time zone") from exc


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--date {text!r} is not a date (YYYY-MM-DD)") from None


def _summaries(directory: Path) -> Iterator[Path]:
    """Every ``*.summary.json`` under ``summaries/`` (folders mirror input/), links not followed."""
    stack = [directory]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StorageError(f"cannot list {current}: {exc.strerror or exc}") from exc
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.name.endswith(SUMMARY_SUFFIX) and entry.is_file(follow_symlinks=False):
                yield Path(entry.path)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and document.get("kind") == "vvctl.summary" else None


def day_summaries(layout: StorageLayout, day: date, tz: ZoneInfo) -> list[tuple[Path, dict[str, Any]]]:
    found: list[tuple[Path, dict[str, Any]]] = []
    for path in _summaries(layout.summaries):
        summary = _load(path)
        if summary is None:
            continue
        start = summary.get("source", {}).get("start_at")
        if not isinstance(start, str):
            continue
        try:
            if local_day(parse_rfc3339(start), tz) == day:
                found.append((path, summary))
        except ValueError:
            continue
    found.sort(key=lambda item: (str(item[1]["source"].get("camera", "")), str(item[1]["source"]["start_at"])))
    return found


def build_index(
    layout: StorageLayout, day: date, tz: ZoneInfo, summaries: Iterable[tuple[Path, Mapping[str, Any]]], now: datetime
) -> dict[str, Any]:
    videos: list[dict[str, Any]] = []
    intervals: list[dict[str, Any]] = []
    for path, summary in summaries:
        source = summary["source"]
        camera = str(source.get("camera", "input"))
        video = {
            "camera": camera,
            "name": source["name"],
            "path": source.get("path"),
            "sha256": source["sha256"],
            "start_at": source["start_at"],
            "end_at": source.get("end_at"),
            "time_source": source.get("time_source"),
            "duration_s": source["duration_s"],
            "status": summary["status"],
            "status_label": (summary.get("status_rule") or {}).get("label"),
            "summary": path.relative_to(layout.root).as_posix(),
            "snapshots": list(summary.get("snapshots", [])),
        }
        videos.append(video)
        for label, stats in summary["labels"].items():
            for interval in stats.get("intervals", ()):
                if "start_at" not in interval:
                    continue
                intervals.append(
                    {
                        "camera": camera,
                        "label": label,
                        "start_at": interval["start_at"],
                        "end_at": interval["end_at"],
                        "peak_count": interval["peak_count"],
                        "video": video["path"] or video["name"],
                        "offset_s": interval["start_s"],
                        "end_offset_s": interval["end_s"],
                    }
                )
    return index_document(day, tz, now, videos, intervals)


def _cameras(videos: Iterable[Mapping[str, Any]], intervals: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    cameras: dict[str, dict[str, Any]] = {}
    for video in videos:
        cameras.setdefault(str(video["camera"]), {"videos": 0, "labels": {}})["videos"] += 1
    for interval in intervals:
        per_camera = cameras.setdefault(str(interval["camera"]), {"videos": 0, "labels": {}})
        tally = per_camera["labels"].setdefault(interval["label"], {"intervals": 0, "present_s": 0.0, "peak_count": 0})
        tally["intervals"] += 1
        tally["present_s"] = round(tally["present_s"] + interval["end_offset_s"] - interval["offset_s"], 3)
        tally["peak_count"] = max(tally["peak_count"], interval["peak_count"])
    return cameras


def index_document(
    day: date, tz: ZoneInfo, now: datetime, videos: list[dict[str, Any]], intervals: list[dict[str, Any]]
) -> dict[str, Any]:
    videos.sort(key=lambda v: (str(v["camera"]), str(v["start_at"]), str(v["summary"])))
    intervals.sort(key=lambda i: (i["start_at"], i["camera"], i["label"]))
    cameras = _cameras(videos, intervals)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "vvctl.day_index",
        "date": day.isoformat(),
        "timezone": tz.key,
        "generated_at": rfc3339(now),
        "cameras": cameras,
        "videos": videos,
        "intervals": intervals,
    }


# -- playlist ------------------------------------------------------------------------------------------


def build_playlist(layout: StorageLayout, index: Mapping[str, Any], statuses: Iterable[str]) -> tuple[str, int, bool]:
    """The M3U8 text, its number of entries, and whether it fell back to ``fallback/``."""
    wanted = set(statuses)
    lines = ["#EXTM3U", f"#PLAYLIST:vvctl {index['date']}"]
    by_video: dict[str, float] = {}
    for interval in index["intervals"]:
        by_video.setdefault(f"{interval['video']}\x00{interval['label']}", float(interval["offset_s"]))
    entries = 0
    for video in sorted(index["videos"], key=lambda v: (v["start_at"], v["camera"])):
        if video["status"] not in wanted or not video["path"]:
            continue
        offset = by_video.get(f"{video['path']}\x00{video['status_label']}", 0.0)
        title = f"{video['camera']} {video['start_at']} {video['status']}".replace(",", " ")
        lines.append(f"#EXTINF:{float(video['duration_s']):.0f},{title}")
        lines.append(f"#EXTVLCOPT:start-time={offset:.1f}")
        lines.append(f"../{video['path']}")
        entries += 1
    fallback = False
    if entries == 0:
        for clip in sorted(layout.fallback.glob("*")) if layout.fallback.is_dir() else []:
            if clip.is_file() and not clip.name.startswith(".") and not clip.is_symlink():
                lines.append(f"#EXTINF:-1,fallback {clip.name}")
                lines.append(f"../fallback/{clip.name}")
                fallback = True
    return "\n".join(lines) + "\n", entries, fallback


# -- HTML ----------------------------------------------------------------------------------------------

_LABEL_COLOURS = ("#e4572e", "#29335c", "#f3a712", "#669bbc", "#a8c686", "#8e44ad")
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#1d2330;background:#fafafa}

h1{font-size:1.4rem;margin:0 0 .3rem}
h2{font-size:1.15rem;margin:1.6rem 0 .4rem;border-bottom:1px solid #ccd}

.meta{color:#556;font-size:.9rem}
.strip{position:relative;height:26px;background:#e8ebf0;border-radius:4px;margin:.4rem 0 .2rem}

.bar{position:absolute;top:3px;height:20px;border-radius:2px;min-width:2px;opacity:.9}

.hours{position:relative;height:1rem;font-size:.7rem;color:#667}
.hours span{position:absolute;transform:translateX(-50%)}

table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
td,th{border:1px solid #ccd;padding:.2rem .5rem;text-align:left}

th{background:#eef}
.snaps{display:flex;flex-wrap:wrap;gap:.6rem}
.snaps figure{margin:0;background:#fff;border:1px solid #ccd;padding:.3rem}

.snaps img{max-width:320px;display:block}
.snaps figcaption{font-size:.75rem;color:#445}

.legend span{display:inline-block;margin-right:1rem;font-size:.85rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}

code{font-size:.8rem;word-break:break-all}

"""


def _colour(labels: list[str], label: str) -> str:
    return _LABEL_COLOURS[labels.index(label) % len(_LABEL_COLOURS)]


def _local(text: str, tz: ZoneInfo) -> str:
    return parse_rfc3339(text).astimezone(tz).strftime("%H:%M:%S")


def _snapshot_src(layout: StorageLayout, relative: str, budget: list[int]) -> str:
    path = layout.root / relative
    try:
        size = path.stat().st_size
        if size <= MAX_INLINE_SNAPSHOT_BYTES and budget[0] > 0:
            budget[0] -= 1
            return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        pass
    return "../" + relative


def build_html(layout: StorageLayout, index: Mapping[str, Any], tz: ZoneInfo) -> str:
    esc = html.escape
    day = date.fromisoformat(str(index["date"]))
    day_start = datetime(day.year, day.month, day.day, tzinfo=tz)
    day_seconds = ((day_start + timedelta(days=1)).astimezone(UTC) - day_start.astimezone(UTC)).total_seconds()
    labels = sorted({str(i["label"]) for i in index["intervals"]})
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>vvctl report {esc(str(index['date']))}</title><style>{_CSS}</style></head><body>",
        f"<h1>vvctl report for {esc(str(index['date']))}</h1>",
        f'<p class="meta">Times in {esc(str(index["timezone"]))}. {len(index["videos"])} video(s) on '
        f"{len(index['cameras'])} camera(s), {len(index['intervals'])} presence interval(s). "
        f"Generated {esc(str(index['generated_at']))}.</p>",
    ]
    if labels:
        out.append(
            '<p class="legend">'
            + "".join(f'<span><i style="background:{_colour(labels, lb)}"></i>{esc(lb)}</span>' for lb in labels)
            + "</p>"
        )
    if not index["videos"]:
        out.append("<p>No video started on this day.</p>")
    budget = [MAX_INLINE_SNAPSHOTS]
    hours = "".join(f'<span style="left:{h / 24 * 100:.3f}%">{h:02d}</span>' for h in range(0, 25, 3))
    for camera in sorted(index["cameras"]):
        stats = index["cameras"][camera]
        out.append(f'<section class="camera" data-camera="{esc(camera)}"><h2>Camera {esc(camera)}</h2>')
        out.append(f'<p class="meta">{stats["videos"]} video(s)</p><div class="strip">')
        camera_intervals = [i for i in index["intervals"] if i["camera"] == camera]
        for interval in camera_intervals:
            begin = (parse_rfc3339(interval["start_at"]) - day_start).total_seconds()
            end = (parse_rfc3339(interval["end_at"]) - day_start).total_seconds()
            left = max(0.0, min(begin / day_seconds, 1.0)) * 100
            width = max(0.0, min(end / day_seconds, 1.0)) * 100 - left
            title = f"{interval['label']} {_local(interval['start_at'], tz)}-{_local(interval['end_at'], tz)}"
            out.append(
                f'<div class="bar" title="{esc(title)}" style="left:{left:.4f}%;width:{width:.4f}%;'
                f'background:{_colour(labels, interval["label"])}"></div>'
            )
        out.append(f'</div><div class="hours">{hours}</div>')
        if camera_intervals:
            out.append("<table><tr><th>label</th><th>from</th><th>to</th><th>peak</th><th>video</th><th>at</th></tr>")
            for interval in camera_intervals:
                out.append(
                    f"<tr><td>{esc(interval['label'])}</td><td>{_local(interval['start_at'], tz)}</td>"
                    f"<td>{_local(interval['end_at'], tz)}</td><td>{interval['peak_count']}</td>"
                    f"<td><code>{esc(str(interval['video']))}</code></td>"
                    f"<td>{float(interval['offset_s']):.1f} s</td></tr>"
                )
            out.append("</table>")
        else:
            out.append("<p>Nothing detected.</p>")
        snaps = [(v, s) for v in index["videos"] if v["camera"] == camera for s in v["snapshots"]]
        if snaps:
            out.append('<div class="snaps">')
            for video, snap in snaps:
                when = _local(snap["at"], tz) if "at" in snap else f"{snap['t']:.1f} s"
                out.append(
                    f'<figure><img alt="{esc(snap["label"])} at {esc(when)}" '
                    f'src="{_snapshot_src(layout, snap["path"], budget)}">'
                    f"<figcaption>{esc(snap['label'])} x{snap['count']} at {esc(when)} &middot; "
                    f"{esc(str(video['name']))}</figcaption></figure>"
                )
            out.append("</div>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- entry points --------------------------------------------------------------------------------------


def merge_index(
    layout: StorageLayout,
    day: date,
    tz: ZoneInfo,
    old: Mapping[str, Any],
    new: Iterable[tuple[Path, Mapping[str, Any]]],
    now: datetime,
) -> dict[str, Any]:
    """``old`` (a day index) with the videos of the summaries ``new`` added, or replaced when the same
    summary file or the same video content was indexed before (a ``--reprocess``)."""
    added = build_index(layout, day, tz, new, now)
    summaries = {v["summary"] for v in added["videos"]}
    contents = {v["sha256"] for v in added["videos"]}
    gone = {v["path"] for v in old["videos"] if v["summary"] in summaries or v["sha256"] in contents}
    videos = [v for v in old["videos"] if v["path"] not in gone] + list(added["videos"])
    intervals = [i for i in old["intervals"] if i["video"] not in gone] + list(added["intervals"])
    return index_document(day, tz, now, videos, intervals)


def _read_index(path: Path, day: date) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("kind") != "vvctl.day_index":
        return None
    if document.get("schema_version") != SCHEMA_VERSION or document.get("date") != day.isoformat():
        return None
    return document


def publish_day(
    settings: Settings,
    layout: StorageLayout,
    day: date,
    *,
    clock: Clock = utcnow,
    new: Iterable[tuple[Path, Mapping[str, Any]]] | None = None,
) -> DayReport:
    """Write the day index, HTML report and playlist of ``day``, atomically.

    With ``new`` (the summaries a run just wrote), the existing day index is updated with them: a run
    costs the same on the thousandth day as on the first. Without it, or when there is no usable index,
    the day is rebuilt from every summary under ``summaries/``."""
    tz = zone(settings)
    stem = day.isoformat()
    index_path = layout.reports / f"{stem}.json"
    old = _read_index(index_path, day) if new is not None else None
    if old is not None and new is not None:
        index = merge_index(layout, day, tz, old, new, clock())
    else:
        index = build_index(layout, day, tz, day_summaries(layout, day, tz), clock())
    html_path = layout.reports / f"{stem}.html"
    playlist_path = layout.playlists / f"{stem}.m3u8"
    layout.reports.mkdir(parents=True, exist_ok=True)
    layout.playlists.mkdir(parents=True, exist_ok=True)
    atomic_write_json(index_path, index)
    atomic_write_text(html_path, build_html(layout, index, tz))
    playlist, entries, fallback = build_playlist(layout, index, settings.playlist_statuses)
    atomic_write_text(playlist_path, playlist)
    return DayReport(
        date=stem,
        timezone=tz.key,
        videos=len(index["videos"]),
        cameras=sorted(index["cameras"]),
        intervals=list(index["intervals"]),
        index=index_path,
        html=html_path,
        playlist=playlist_path,
        playlist_entries=entries,
        fallback_used=fallback,
    )


def report(
    settings: Settings,
    day: str | None = None,
    *,
    camera: str | None = None,
    label: str | None = None,
    clock: Clock = utcnow,
) -> DayReport:
    """``vvctl report``: (re)build one day's outputs (today in ``source_timezone`` by default) and return
    its intervals, filtered by ``camera`` and ``label`` when given."""
    layout = StorageLayout(check_storage_root(settings.storage_root))
    if not layout.summaries.is_dir():
        raise StorageError(
            f"storage root {layout.root} is not set up (summaries/ is missing); run 'vvctl bootstrap' first"
        )
    tz = zone(settings)
    when = parse_day(day) if day is not None else clock().astimezone(tz).date()
    built = publish_day(settings, layout, when, clock=clock)
    chosen = [
        i
        for i in built.intervals
        if (camera is None or i["camera"] == camera) and (label is None or i["label"] == label)
    ]
    return DayReport(
        date=built.date,
        timezone=built.timezone,
        videos=built.videos,
        cameras=built.cameras,
        intervals=chosen,
        index=built.index,
        html=built.html,
        playlist=built.playlist,
        playlist_entries=built.playlist_entries,
        fallback_used=built.fallback_used,
    )
