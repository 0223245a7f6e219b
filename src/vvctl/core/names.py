"""File names as the file system has them (bytes) and as records show them (text).

On POSIX a file name is any bytes but ``/`` and NUL, at most ``NAME_MAX`` (255) bytes. Python hands a name
that is not valid UTF-8 (``C\\xe2mera1.mp4`` from an old Windows uploader) to us as a ``str`` with
lone surrogates (PEP 383), which neither JSON, SQLite text, RFC 8785 nor a terminal accepts. So:

* the file itself keeps its exact name wherever vvctl moves it (``input/`` → ``processed/`` or
  ``corrupted/``), unless that name would not fit beside a suffix vvctl adds (then :func:`fit`);
* the state database stores such a name as its raw bytes (a BLOB), so it is kept byte for byte;
* JSON records and messages show it with :func:`display`: each byte that is not UTF-8 is written
  ``\\xNN``, as ``ls -b`` prints it; quarantine records also carry the exact bytes (``name_bytes``,
  base64) when the name is not UTF-8;
* names vvctl derives (analytic, summary, LogLine and temp files) are built from the displayed form and
  always fit in ``NAME_MAX`` bytes (:func:`fit`: cut, plus a hash of the whole name, so two long names
  that share a prefix still differ).
"""

from __future__ import annotations

import hashlib
import os

NAME_MAX = 255
"""Bytes in one path component on every Linux file system vvctl supports (ext4, xfs, btrfs, tmpfs)."""

_HASH_CHARS = 8


def name_bytes(name: str) -> bytes:
    """The exact bytes of a file name as the file system holds them."""
    return os.fsencode(name)


def is_text(name: str) -> bool:
    """True when the name is valid UTF-8 (almost always): it can go into records unchanged."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display(name: str) -> str:
    """The name as valid text: unchanged when it is UTF-8, else each undecodable byte as ``\\xNN``."""
    if is_text(name):
        return name
    return name_bytes(name).decode("utf-8", "backslashreplace")


def from_db(value: str | bytes) -> str:
    """A name stored by :func:`to_db` back as the ``str`` the file system API expects."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def to_db(name: str) -> str | bytes:
    """The value to store in SQLite: the text itself, or the raw bytes when it is not UTF-8."""
    return name if is_text(name) else name_bytes(name)


def _cut(raw: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of ``raw``, never ending inside a UTF-8 sequence (when it is UTF-8)."""
    raw = raw[:limit]
    while raw and (raw[-1] & 0xC0) == 0x80:  # drop continuation bytes of a cut character
        raw = raw[:-1]
    if raw and raw[-1] >= 0xC0:  # and the lead byte they belonged to
        raw = raw[:-1]
    return raw


def fit(stem: str, suffix: str = "", *, limit: int = NAME_MAX) -> str:
    """``stem + suffix`` when it fits in ``limit`` bytes; else the stem cut short plus ``~<hash8>``.

    The hash covers the whole stem, so the result is stable for one name and differs between long names
    that share their first ``limit`` bytes. Works on bytes, so names that are not UTF-8 stay exact where
    they are kept.
    """
    whole = name_bytes(stem)
    tail = name_bytes(suffix)
    if len(whole) + len(tail) <= limit:
        return stem + suffix
    tag = "~" + hashlib.sha256(whole).hexdigest()[:_HASH_CHARS]
    room = limit - len(tail) - len(tag)
    if room < 1:
        raise ValueError(f"suffix {suffix!r} leaves no room for a name in {limit} bytes")
    return os.fsdecode(_cut(whole, room)) + tag + suffix
