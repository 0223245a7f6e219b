from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from vvctl.core.jsonlog import LOG_FILE, configure_file_logging, detach_file_logging
from vvctl.core.schemas import SchemaViolation, validate


@pytest.mark.parametrize(
    ("document", "field", "reason"),
    [
        ({"batch_size": "x"}, "$.batch_size", "is not of type 'integer'"),
        ({"status_rules": [{"label": "person", "min_detections": 1}]}, "$.status_rules[0].status", "required"),
        ({"typo": 1}, "$.typo", "unknown key"),
    ],
)
def test_violation_points_at_the_field(document: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(SchemaViolation) as info:
        validate(document, "config.schema.json")
    assert info.value.field == field
    assert reason in info.value.reason


def test_json_lines_log_with_rotation(tmp_path: Path) -> None:
    try:
        assert configure_file_logging(tmp_path, level="info", max_bytes=4096, backups=2)
        log = logging.getLogger("vvctl.test")
        for i in range(200):
            log.info("event %d", i, extra={"video": f"v{i}.mp4"})
        log.debug("not written at info level")
    finally:
        detach_file_logging()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [LOG_FILE, f"{LOG_FILE}.1", f"{LOG_FILE}.2"]
    lines = (tmp_path / LOG_FILE).read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["msg"] == "event 199" and last["video"] == "v199.mp4" and last["level"] == "info"
    assert last["ts"].endswith("Z")
    assert all(json.loads(line)["level"] == "info" for line in lines)


def test_no_file_logging_without_logs_dir(tmp_path: Path) -> None:
    assert not configure_file_logging(tmp_path / "absent", level="info", max_bytes=4096, backups=1)
