"""``vvctl export-logs``: signed, reproducible tar.gz exports of logs and LogLines, their verification,
their retention, and which exported LogLines may leave ``loglines/``.

``removable_loglines(settings)`` is the one question ``cleanup`` asks before it removes LogLines.
"""

from __future__ import annotations

from vvctl.ops.export.job import SPEC, ExportProgress, ExportReport, LogLineRange, Scope, export_logs
from vvctl.ops.export.prune import PruneResult, prune_loglines, removable_loglines
from vvctl.ops.export.verify import ExportFinding, ExportReason, ExportVerifyReport, verify_export

__all__ = [
    "SPEC",
    "ExportFinding",
    "ExportProgress",
    "ExportReason",
    "ExportReport",
    "ExportVerifyReport",
    "LogLineRange",
    "PruneResult",
    "Scope",
    "export_logs",
    "prune_loglines",
    "removable_loglines",
    "verify_export",
]
