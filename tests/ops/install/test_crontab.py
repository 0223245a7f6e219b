"""The crontab block: rendered lines, spliced between markers with every other byte kept, removed exactly."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vvctl.core.errors import ExitCode, InputError
from vvctl.core.settings import load_settings
from vvctl.ops.install.crontab import (
    BEGIN,
    END,
    command_lines,
    cron_daemons,
    cron_escape,
    cron_unescape,
    extract,
    render_block,
    splice,
)
from vvctl.ops.install.plan import make_plan

BLOCK = f"{BEGIN}\n# ours\n*/5 * * * * /opt/vvctl --quiet orchestrate --once\n{END}\n"

# Lines a person may have in a crontab: anything but our two marker lines.
_foreign_line = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=40
).filter(lambda line: line.rstrip() not in (BEGIN, END))
foreign_text = st.lists(_foreign_line, max_size=8).map(lambda lines: "".join(f"{line}\n" for line in lines)) | st.just(
    "no newline at the end"
)


@given(foreign_text)
def test_install_then_uninstall_gives_back_the_exact_crontab(foreign: str) -> None:
    installed = splice(foreign, BLOCK)
    assert installed is not None and installed.startswith(BLOCK)
    assert installed[len(BLOCK) :] == foreign  # every byte of theirs, in place
    assert splice(installed, BLOCK) == installed  # reinstall: unchanged
    assert splice(installed, None) == (foreign or None)


@given(st.lists(_foreign_line, max_size=5), st.lists(_foreign_line, max_size=5))
def test_a_block_in_the_middle_is_replaced_where_it_is(before: list[str], after: list[str]) -> None:
    head = "".join(f"{line}\n" for line in before)
    tail = "".join(f"{line}\n" for line in after)
    text = head + BLOCK + tail
    newer = BLOCK.replace("*/5", "*/10")
    assert splice(text, newer) == head + newer + tail
    assert extract(text) == BLOCK
    assert splice(text, None) == ((head + tail) or None)


def test_markers_with_trailing_blanks_are_recognised() -> None:
    text = f"a\n{BEGIN}  \nold\n{END}\t\nb\n"
    assert splice(text, BLOCK) == f"a\n{BLOCK}b\n"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"{BEGIN}\nx\n", "without '# END vvctl'"),
        (f"x\n{END}\n", "without '# BEGIN vvctl'"),
        (BLOCK + BLOCK, "more than one"),
        (f"{BEGIN}\n{BEGIN}\n{END}\n", "more than one"),
    ],
)
def test_a_damaged_block_is_refused_not_guessed(text: str, says: str) -> None:
    with pytest.raises(InputError) as caught:
        splice(text, BLOCK, "crontab:box")
    assert says in caught.value.message and "crontab:box" in caught.value.message
    assert caught.value.exit_code is ExitCode.INPUT


def test_percent_signs_are_escaped_for_cron_and_undone_for_sh() -> None:
    command = "echo '100%' >>/var/log/a%b"
    assert "%" not in cron_escape(command).replace("\\%", "")
    assert cron_unescape(cron_escape(command)) == command


def test_the_block_has_one_line_per_job_with_absolute_paths_and_the_config(tmp_path: Path) -> None:
    config = tmp_path / "my etc" / "vv%config.toml"
    settings = load_settings(tmp_path / "none.toml", env={}, flags={"storage_root": str(tmp_path / "box")}).settings
    plan = make_plan(settings, config, ["/opt/vv ctl/bin/vvctl"])
    block = render_block(plan)
    assert block.startswith(BEGIN + "\n") and block.endswith(END + "\n")
    lines = command_lines(block)
    assert [line.split()[:5] for line in lines] == [
        ["*/5", "*", "*", "*", "*"],
        ["*", "*", "*", "*", "*"],
        ["0", "2", "*", "*", "*"],
        ["0", "3", "*", "*", "*"],
        ["30", "4", "*", "*", "*"],
    ]
    for line, job in zip(lines, ("orchestrate", "monitor", "export-logs", "cleanup", "selftest"), strict=True):
        words = shlex.split(cron_unescape(line.split(" ", 5)[5]))
        assert words[0] == f"VV_CONFIG={config}"
        assert words[1] == "/opt/vv ctl/bin/vvctl" and words[2] == "--quiet" and words[3] == job
        assert words[-2:] == [f">>{tmp_path / 'box' / 'logs' / f'cron-{job}.log'}", "2>&1"]
    assert "--once" in command_lines(block)[0] and "--once" in command_lines(block)[1]
    system = render_block(plan, user="root")
    assert all(line.split()[5] == "root" for line in command_lines(system))


def test_a_cron_daemon_is_found_by_its_process_name(tmp_path: Path) -> None:
    import shutil
    import subprocess

    fake = tmp_path / "cron"
    shutil.copy("/bin/sleep", fake)
    process = subprocess.Popen([str(fake), "30"])
    try:
        deadline = time.monotonic() + 10
        while f"cron (pid {process.pid})" not in cron_daemons() and time.monotonic() < deadline:
            time.sleep(0.05)  # the new process may not show its name in /proc at once
        assert f"cron (pid {process.pid})" in cron_daemons()
    finally:
        process.kill()
        process.wait()
    assert f"cron (pid {process.pid})" not in cron_daemons()
