"""The independent verification recipe in docs/loglines.md, extracted and run on real chains: it must agree
with ``vvctl verify-logline`` on a valid box and on a forgery."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_forgeries import Box, file_hash, forge, make_box

DOC = Path(__file__).resolve().parents[2] / "docs" / "loglines.md"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- recipe: check-log\.py -->\n```python\n(.*?)\n```\n", text, re.DOTALL)
    assert match is not None, "the recipe block is missing from docs/loglines.md"
    code = match.group(1)
    assert len(code.splitlines()) <= 110, "the recipe should stay about a page long"
    path = tmp_path_factory.mktemp("recipe") / "check-log.py"
    path.write_text(code + "\n", encoding="utf-8")
    return path


def run(recipe: Path, log_dir: Path, key_file: Path) -> tuple[int, dict[str, str]]:
    result = subprocess.run(
        [sys.executable, str(recipe), str(log_dir), str(key_file)], capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in result.stderr, result.stderr
    verdicts = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    return result.returncode, verdicts


def key_file(box: Box, tmp_path: Path) -> Path:
    return Path(box.keys_args(tmp_path)[1])


@pytest.mark.parametrize("algorithm", ["ed25519", "hmac-sha256"])
def test_recipe_agrees_with_vvctl_on_a_real_chain(recipe: Path, tmp_path: Path, algorithm: str) -> None:
    box = make_box(tmp_path, "A", algorithm)
    box.append(3)
    thief = box.leak_active()
    assert box.invoke("keys", "rotate").exit_code == 0
    box.append(2)
    keys = key_file(box, tmp_path)
    for log in ("jobs", "videos"):
        code, verdicts = run(recipe, box.loglines / log, keys)
        assert code == 0 and verdicts and set(verdicts.values()) == {"VALID"}
        assert box.verify(*box.keys_args(tmp_path), str(box.loglines / log), expect=0)["invalid"] == 0

    videos = box.log("videos")
    forged = forge(
        box.loglines / "videos",
        thief,
        seq=len(videos) + 1,
        prev=file_hash(videos[-1]),
        box=box.box_id(),
        when="2020-01-01T00:00:00Z",
        this="appended with the retired key",
    )
    code, verdicts = run(recipe, box.loglines / "videos", keys)
    assert code == 1 and verdicts[forged.name] == "INVALID key_retired"
    report = box.verify(*box.keys_args(tmp_path), str(box.loglines / "videos"))
    assert {r["reason"] for r in report["results"] if r["reason"]} == {"key_retired"}

    forged.write_bytes(forged.read_bytes().replace(b"retired key", b"retired kez"))
    assert run(recipe, box.loglines / "videos", keys)[1][forged.name] == "INVALID bad_signature"


def test_recipe_fails_on_an_empty_folder(recipe: Path, tmp_path: Path) -> None:
    box = make_box(tmp_path, "A", "ed25519")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _ = run(recipe, empty, key_file(box, tmp_path))
    assert code == 1
