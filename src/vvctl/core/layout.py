"""The storage layout under ``storage_root`` (SPEC section 4).

``raw/`` and ``tv_curado/`` of the first layout are gone: the box never keeps a second copy of a video
(``processed/`` holds the originals byte for byte, bound by SHA-256 in their LogLines), and what a TV or
kiosk player shows is the daily playlist in ``playlists/``, which points into ``processed/`` instead of
copying. ``fallback/`` holds the bundled sample clip that an empty daily playlist plays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vvctl.core.errors import StorageError

DIRECTORIES: tuple[str, ...] = (
    "input",
    "processed",
    "corrupted",
    "analytic",
    "summaries",
    "snapshots",
    "reports",
    "loglines",
    "playlists",
    "fallback",
    "logs",
    "state",
    "exports",
    "models",
)

# Never accept these (or / itself) as a storage root: bootstrap would scatter folders into the OS.
_SYSTEM = (
    "/bin /boot /dev /etc /lib /lib32 /lib64 /libx32 /proc /root /run /sbin /sys /usr /var /home /opt /srv "
    "/mnt /media /tmp /usr/bin /usr/lib /usr/local /usr/sbin /usr/share /var/lib /var/log"
)
SYSTEM_DIRECTORIES: frozenset[str] = frozenset(_SYSTEM.split())


@dataclass(frozen=True)
class StorageLayout:
    root: Path

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def playlists(self) -> Path:
        return self.root / "playlists"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    @property
    def corrupted(self) -> Path:
        return self.root / "corrupted"

    @property
    def analytic(self) -> Path:
        return self.root / "analytic"

    @property
    def summaries(self) -> Path:
        return self.root / "summaries"

    @property
    def loglines(self) -> Path:
        return self.root / "loglines"

    @property
    def fallback(self) -> Path:
        return self.root / "fallback"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def state_db(self) -> Path:
        return self.state / "vvctl.sqlite3"

    def lock(self, job: str) -> Path:
        return self.state / f"{job}.lock"

    def directories(self) -> list[Path]:
        return [self.root / name for name in DIRECTORIES]


def check_storage_root(root: Path) -> Path:
    """Refuse ``/`` and system directories; return the absolute, normalised root."""
    resolved = root.expanduser().resolve()
    if resolved == Path(resolved.anchor):
        raise StorageError(f"refusing storage root {root}: it is the filesystem root")
    if str(resolved) in SYSTEM_DIRECTORIES:
        raise StorageError(f"refusing storage root {root}: {resolved} is a system directory")
    return resolved
