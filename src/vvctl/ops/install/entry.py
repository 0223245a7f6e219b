"""This installation of vvctl: the command that starts it from anywhere, and the files it consists of.

cron and systemd start jobs with an almost empty environment (no ``PATH`` beyond ``/usr/bin:/bin``, no
virtual environment activated), so the scheduled command is the absolute path of the console script the
running distribution installed (a virtual environment, pipx or ``pip --user`` alike), found in the
distribution's own file list; ``python -m vvctl`` with this interpreter when there is none.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

from vvctl.core.errors import DependencyError

DIST_NAME = "vvctl"
SCRIPT_NAMES = ("vvctl", "vvctl.exe")


def this_distribution() -> Distribution:
    try:
        return distribution(DIST_NAME)
    except PackageNotFoundError:
        raise DependencyError(
            "vvctl is not installed as a package (no distribution metadata): install it with pip or pipx"
        ) from None


def _located(dist: Distribution, relative: object) -> Path:
    return Path(os.path.normpath(os.path.abspath(str(dist.locate_file(str(relative))))))  # noqa: PTH100


def console_script(dist: Distribution) -> Path | None:
    """The ``vvctl`` script the distribution installed (from its RECORD), if it is there and executable."""
    for entry in dist.files or ():
        if entry.name in SCRIPT_NAMES and entry.parent.name in ("bin", "Scripts"):
            path = _located(dist, entry)
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None


def vvctl_argv(dist: Distribution | None = None) -> tuple[str, ...]:
    """The absolute command that runs this installation's vvctl from a bare environment."""
    try:
        found = console_script(dist or this_distribution())
    except DependencyError:
        found = None
    if found is not None:
        return (str(found),)
    beside = Path(sys.executable).parent / "vvctl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return (str(beside),)
    return (os.path.abspath(sys.executable), "-m", "vvctl")  # noqa: PTH100


def is_editable(dist: Distribution) -> bool:
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    try:
        return bool(json.loads(text).get("dir_info", {}).get("editable", False))
    except (ValueError, AttributeError):
        return False


def package_directory(dist: Distribution) -> Path:
    """The directory the ``vvctl`` package is imported from (the source tree for an editable install)."""
    if is_editable(dist):
        import vvctl

        return Path(os.path.normpath(os.path.abspath(vvctl.__file__))).parent  # noqa: PTH100
    return _located(dist, DIST_NAME)


def _skipped(path: Path) -> bool:
    # Byte code is left out: Python rewrites it by itself (a source touched without a change, another
    # interpreter), which would read as drift; the sources it is compiled from are covered.
    return path.suffix == ".pyc" or "__pycache__" in path.parts


def _walk(directory: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            yield Path(dirpath) / name


def installed_files(dist: Distribution) -> list[Path]:
    """Every file of the installed distribution, from its own file list (RECORD), byte code left out.

    An editable install lists only a path hook; its package files are the source tree it points to.
    """
    paths = {_located(dist, entry) for entry in dist.files or ()}
    if is_editable(dist):
        paths.update(_walk(package_directory(dist)))
    return sorted(p for p in paths if not _skipped(p))


def unlisted_files(dist: Distribution, listed: set[Path]) -> list[Path]:
    """Files in the package directory that the manifest does not list (a module dropped in later)."""
    directory = package_directory(dist)
    if not directory.is_dir():
        return []
    return [p for p in _walk(directory) if p not in listed and not _skipped(p)]


__all__ = [
    "DIST_NAME",
    "console_script",
    "installed_files",
    "is_editable",
    "package_directory",
    "this_distribution",
    "unlisted_files",
    "vvctl_argv",
]
