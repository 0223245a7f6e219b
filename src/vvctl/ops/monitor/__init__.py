"""``vvctl monitor``: the box's containers healed within a budget, the box and the pipeline checked,
people alerted once per change, metrics for Prometheus.

:mod:`.checks` holds the check registry and the box and pipeline checks, :mod:`.containers` the Docker
check, :mod:`.metrics` the Prometheus exposition, :mod:`.job` the runs (``--once``, ``--watch``); alert
state, dedup and delivery live in :mod:`vvctl.core.alerts`.
"""

from __future__ import annotations

from vvctl.ops.monitor.checks import REGISTRY, MonitorClients, register
from vvctl.ops.monitor.job import SPEC, monitor_once, monitor_watch
from vvctl.ops.monitor.report import Mode, MonitorReport

__all__ = ["REGISTRY", "SPEC", "Mode", "MonitorClients", "MonitorReport", "monitor_once", "monitor_watch", "register"]
