"""Every command is documented in docs/cli.md and completions/ match the app (regenerate with
`python -m vvctl.cli.docgen --write`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vvctl.cli.docgen import _command_paths, outputs

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", list(outputs(REPO)), ids=lambda p: p.name)
def test_generated_file_is_current(path: Path) -> None:
    expected = outputs(REPO)[path]
    assert path.is_file(), f"{path} missing: run python -m vvctl.cli.docgen --write"
    assert path.read_text(encoding="utf-8") == expected, f"{path} is stale: run python -m vvctl.cli.docgen --write"


def test_every_command_has_a_section_and_help_text() -> None:
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for path in _command_paths():
        assert f"## `{' '.join(['vvctl', *path])}`" in text
