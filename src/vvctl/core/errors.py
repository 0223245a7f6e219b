"""Typed errors and the exit codes they map to.

Library code raises a :class:`VVError` subclass; the CLI root catches it once, prints its one-line
message and exits with its code. Exit codes are documented in ``docs/exit-codes.md``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes. Stable: scripts and cron wrappers depend on them."""

    OK = 0
    FINDINGS = 1
    """The command ran and found problems (invalid LogLines, failed checks)."""
    USAGE = 2
    """Bad command-line arguments."""
    CONFIG = 3
    """The configuration file or environment is invalid or unreadable."""
    LOCKED = 4
    """Another run of the same job holds the lock."""
    INTEGRITY = 5
    """A checksum or signature that must match did not (model file, key store)."""
    STORAGE = 6
    """The storage root or a file in it cannot be read or written (permissions, disk full)."""
    DEPENDENCY = 7
    """A runtime dependency is missing or unusable (video decoder, inference provider, Docker)."""
    INPUT = 8
    """An input file is unusable (not a video, not JSON, wrong format)."""
    CRITICAL = 9
    """A check is CRITICAL (``vvctl monitor``): something a person must act on now."""
    INTERRUPTED = 130
    """Stopped by SIGINT/SIGTERM before finishing."""
    INTERNAL = 70
    """A bug in vvctl: please report it with the output of ``--verbose``."""


class VVError(Exception):
    """Base error: carries a one-line user message and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str) -> None:
        # One line, always: the CLI prints it as is.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self)


class UsageError(VVError):
    exit_code = ExitCode.USAGE


class ConfigError(VVError):
    exit_code = ExitCode.CONFIG


class LockedError(VVError):
    exit_code = ExitCode.LOCKED


class IntegrityError(VVError):
    exit_code = ExitCode.INTEGRITY


class StorageError(VVError):
    exit_code = ExitCode.STORAGE


class DiskFullError(StorageError):
    """The file system is full (ENOSPC, EDQUOT, SQLITE_FULL): the environment failed, not the data.

    Never counted against a video: the run stops (exit 6) and the next one, with space, goes on."""


class DependencyError(VVError):
    exit_code = ExitCode.DEPENDENCY


class InputError(VVError):
    exit_code = ExitCode.INPUT


class FindingsError(VVError):
    """Raised when a command completed but must report failure (exit 1)."""

    exit_code = ExitCode.FINDINGS


class InterruptedRun(VVError):
    exit_code = ExitCode.INTERRUPTED
