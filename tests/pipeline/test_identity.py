"""Camera and wall-clock start from recorder paths (both naming styles), the container, or the mtime."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from vvctl.pipeline.identity import PatternError, TimeSource, compile_pattern, identify

PATTERNS = ("{camera}/{date:%Y-%m-%d}/{time:%H%M%S}", "{camera}_{date:%Y%m%d}_{time:%H%M%S}")
MTIME_NS = 1_796_000_000 * 10**9  # 2026-11-30T00:53:20Z


@pytest.mark.parametrize(
    ("relative", "zone", "camera", "start"),
    [
        ("cam1/2026-12-01/143000.mp4", "UTC", "cam1", datetime(2026, 12, 1, 14, 30, tzinfo=UTC)),
        ("cam1/2026-12-01/143000.mp4", "Europe/Berlin", "cam1", datetime(2026, 12, 1, 13, 30, tzinfo=UTC)),
        ("site/cam2/2026-07-01/090000.avi", "Europe/Berlin", "cam2", datetime(2026, 7, 1, 7, 0, tzinfo=UTC)),
        ("CAM1_20261201_143000.mp4", "UTC", "CAM1", datetime(2026, 12, 1, 14, 30, tzinfo=UTC)),
        (
            "nvr/CAM_GATE_20261201_235959_part2.mkv",
            "America/New_York",
            "CAM_GATE",
            datetime(2026, 12, 2, 4, 59, 59, tzinfo=UTC),
        ),
    ],
)
def test_the_path_gives_camera_and_start(relative: str, zone: str, camera: str, start: datetime) -> None:
    found = identify(Path("/in", relative), Path("/in"), patterns=PATTERNS, timezone=zone, mtime_ns=MTIME_NS)
    assert (found.camera, found.start, found.time_source) == (camera, start, TimeSource.PATH)


@pytest.mark.parametrize("relative", ["cam1/2026-13-01/143000.mp4", "clip.mp4", "cam1/143000.mp4"])
def test_no_valid_path_time_falls_back_to_the_mtime(relative: str, tmp_path: Path) -> None:
    found = identify(tmp_path / relative, tmp_path, patterns=PATTERNS, timezone="UTC", mtime_ns=MTIME_NS)
    assert found.time_source is TimeSource.MTIME
    assert found.start == datetime(2026, 11, 30, 0, 53, 20, tzinfo=UTC)
    assert found.camera == (relative.split("/")[0] if "/" in relative else "input")


def test_a_date_only_pattern_and_two_digit_years() -> None:
    found = identify(
        Path("/in/door/261201-clip.mp4"), Path("/in"), patterns=("{date:%y%m%d}",), timezone="UTC", mtime_ns=0
    )
    assert (found.camera, found.start) == ("door", datetime(2026, 12, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("{camera}/{time:%H%M%S}", "needs a {date:FORMAT}"),
        ("{date:%Y%j}", "unsupported code %j"),
        ("{date}", "needs a format"),
        ("{date:%Y}/{date:%m}", "appears twice"),
    ],
)
def test_unusable_patterns_say_why(pattern: str, message: str) -> None:
    with pytest.raises(PatternError, match=message.replace("{", r"\{").replace("}", r"\}")):
        compile_pattern(pattern)
