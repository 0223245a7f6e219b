from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vvctl.core.errors import StorageError
from vvctl.core.hashing import sha256_bytes, sha256_file
from vvctl.core.timeutil import parse_rfc3339, rfc3339


def test_sha256_file_streams_large_files(tmp_path: Path) -> None:
    data = bytes(range(256)) * 20_000  # 5 MB: several chunks
    path = tmp_path / "big"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest() == sha256_bytes(data)


def test_sha256_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot read"):
        sha256_file(tmp_path / "nope")


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC), "2026-11-25T10:00:00Z"),
        (datetime(2026, 11, 25, 10, 0, 0, 5, tzinfo=UTC), "2026-11-25T10:00:00.000005Z"),
        (datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone(timedelta(hours=2))), "2026-11-25T10:00:00Z"),
    ],
)
def test_rfc3339_is_utc_with_z(moment: datetime, text: str) -> None:
    assert rfc3339(moment) == text


def test_rfc3339_rejects_naive() -> None:
    with pytest.raises(ValueError, match="naive"):
        rfc3339(datetime(2026, 1, 1))


@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1)))
def test_rfc3339_round_trip(moment: datetime) -> None:
    assert parse_rfc3339(rfc3339(moment)) == moment
