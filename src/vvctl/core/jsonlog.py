"""JSON-lines logging into ``logs/vvctl.jsonl`` with size-based rotation.

Library modules log through ``logging.getLogger("vvctl.<module>")``; this module only decides where
records go. Never pass secrets to a logger: records are written as they are.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
from datetime import UTC, datetime
from pathlib import Path

from vvctl.core.timeutil import rfc3339

LOG_FILE = "vvctl.jsonl"
_HANDLER_NAME = "vvctl-jsonl"
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, pid, plus any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": rfc3339(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_file_logging(logs_dir: Path, *, level: str = "info", max_bytes: int, backups: int) -> bool:
    """Attach a rotating JSON-lines handler on the ``vvctl`` logger. False if ``logs_dir`` is absent.

    Calling it again for the same directory keeps the handler; for another directory it moves there.
    """
    logger = logging.getLogger("vvctl")
    logger.setLevel(level.upper())
    target = os.path.abspath(logs_dir / LOG_FILE)  # noqa: PTH100 - the same normalisation FileHandler applies
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            if isinstance(handler, logging.FileHandler) and handler.baseFilename == target:
                return True
            logger.removeHandler(handler)
            handler.close()
    if not logs_dir.is_dir() or not os.access(logs_dir, os.W_OK):
        return False
    handler = logging.handlers.RotatingFileHandler(
        logs_dir / LOG_FILE, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
    )
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonLineFormatter())
    logger.addHandler(handler)
    return True


def detach_file_logging() -> None:
    logger = logging.getLogger("vvctl")
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
            handler.close()
