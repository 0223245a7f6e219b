"""The daily HTML report in a real headless browser (Debian's ``chromium``): it renders, with its timeline
strip and snapshots, offline. Skips with the reason when no Chromium is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.pipeline.conftest import Box

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
SCREENSHOT_DIR = os.environ.get("VV_SCREENSHOT_DIR")
"""Keep the screenshot there (to look at it); otherwise it lives in the test's temporary folder."""


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"no headless browser: none of {', '.join(BROWSERS)} is installed (apt-get install chromium)")


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    env = {**os.environ, "HOME": str(profile)}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env)


def test_the_report_page_renders_in_a_headless_browser(
    make_box: Callable[..., Box], clips: dict[str, Path], tmp_path: Path
) -> None:
    import cv2
    import numpy as np

    browser = _browser()
    box = make_box(sample_interval_s=0.5, presence_gap_s=0.0)
    for source, relative in (
        (clips["walkway"], "gate/2026-12-01/083000.mp4"),
        (clips["people"], "CAM2_20261201_141500.avi"),
        (clips["cars"], "yard/2026-12-01/180000.mp4"),
    ):
        target = box.layout.input / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    box.run()
    page = box.root / "reports" / "2026-12-01.html"
    assert page.is_file()

    # The DOM the browser built: every camera section and a timeline bar per interval, images decoded.
    dom = _chromium(browser, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('class="camera"') == 3
    assert 'data-camera="gate"' in dom.stdout and 'data-camera="CAM2"' in dom.stdout
    assert dom.stdout.count('class="bar"') >= 2

    folder = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "report-2026-12-01.png"
    done = _chromium(
        browser, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1600, 1200)
    # A rendered page, not a blank one: many distinct colours (the snapshots) beside the background.
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) > 1000
