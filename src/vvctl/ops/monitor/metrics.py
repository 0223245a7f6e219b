"""Prometheus metrics of the monitor (``prometheus_client``): a textfile for node_exporter, and ``/metrics``
plus ``/status`` (JSON) served by ``vvctl monitor --watch --serve``.

Every value comes from the latest :class:`MonitorReport` through a custom collector, so the textfile and
the HTTP endpoint always show the same pass, and nothing is kept in the library's global registry.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from vvctl.core.atomic import atomic_write_bytes
from vvctl.core.errors import UsageError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from vvctl.ops.monitor.report import MonitorReport

log = logging.getLogger("vvctl.monitor")

PREFIX = "vvctl_"


class ReportCollector:
    """Yields the metric families of one monitor report."""

    def __init__(self, report: MonitorReport) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        report, facts = self.report, self.report.facts
        checks = GaugeMetricFamily(
            f"{PREFIX}check_state", "State of each monitor check: 0 OK, 1 WARN, 2 CRITICAL.", labels=["check"]
        )
        for row in report.checks:
            checks.add_metric([row.check], row.state.rank)
        yield checks
        since = GaugeMetricFamily(
            f"{PREFIX}check_state_since_timestamp_seconds",
            "When each check entered its current state.",
            labels=["check"],
        )
        for row in report.checks:
            since.add_metric([row.check], row.since.timestamp())
        yield since
        yield GaugeMetricFamily(
            f"{PREFIX}monitor_worst_state", "The worst check state (0 OK, 1 WARN, 2 CRITICAL).", value=report.worst.rank
        )
        yield GaugeMetricFamily(
            f"{PREFIX}monitor_last_run_timestamp_seconds",
            "When the monitor last ran its checks.",
            value=report.checked_at.timestamp(),
        )
        restarts = CounterMetricFamily(
            f"{PREFIX}container_restarts",
            "Container restarts seen by the monitor, by who did them.",
            labels=["container", "by"],
        )
        for name, (by_vvctl, by_docker) in sorted(facts.restarts.items()):
            restarts.add_metric([name, "vvctl"], by_vvctl)
            restarts.add_metric([name, "docker"], by_docker)
        yield restarts
        if facts.docker_reachable is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}docker_up", "1 when the Docker engine answered.", value=int(facts.docker_reachable)
            )
        success = GaugeMetricFamily(
            f"{PREFIX}job_last_success_timestamp_seconds", "When each scheduled job last succeeded.", labels=["job"]
        )
        for job, moment in sorted(facts.last_success.items()):
            success.add_metric([job], moment)
        yield success
        if facts.backlog_videos is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}backlog_videos", "Video files waiting in input/.", value=facts.backlog_videos
            )
        if facts.backlog_oldest_age_s is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}backlog_oldest_age_seconds",
                "Age of the oldest video waiting in input/.",
                value=facts.backlog_oldest_age_s,
            )
        videos = GaugeMetricFamily(
            f"{PREFIX}videos", "Videos in the state database by status (done, quarantined, ...).", labels=["status"]
        )
        for status, count in sorted(facts.videos.items()):
            videos.add_metric([status], count)
        yield videos
        if facts.quarantined_recent is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}quarantined_recent_videos",
                "Videos quarantined into corrupted/ within quarantine_window_s.",
                value=facts.quarantined_recent,
            )
        if facts.provider is not None:
            provider = InfoMetricFamily(
                f"{PREFIX}inference_provider", "The inference provider of the last analysed video."
            )
            provider.add_metric([], {"provider": facts.provider, "requested": ",".join(facts.requested_providers)})
            yield provider
        if facts.free_bytes is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}storage_free_bytes", "Free bytes under the storage root.", value=facts.free_bytes
            )
        verified = GaugeMetricFamily(
            f"{PREFIX}loglines_verified_last_pass",
            "LogLines verified by the last monitor pass, per log.",
            labels=["log"],
        )
        for name, count in sorted(facts.loglines_verified.items()):
            verified.add_metric([name], count)
        yield verified
        failed = sum(1 for d in report.deliveries if not d.delivered)
        yield GaugeMetricFamily(
            f"{PREFIX}alert_deliveries_failed",
            "Alert deliveries that failed on the last pass (retried next pass).",
            value=failed,
        )


def exposition(report: MonitorReport) -> bytes:
    """The report in the Prometheus text format."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(report))
    return generate_latest(registry)


def write_textfile(path: Path, report: MonitorReport) -> None:
    """Write the metrics for node_exporter's textfile collector atomically (it never reads half a file)."""
    atomic_write_bytes(path, exposition(report))


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``127.0.0.1:9810``, ``[::1]:9810``) for ``--serve``."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--serve wants HOST:PORT (e.g. 127.0.0.1:9810), not {text!r}")
    return host, int(port)


class MetricsServer:
    """``/metrics`` (Prometheus text) and ``/status`` (JSON) of the latest report, on a daemon thread."""

    def __init__(self, host: str, port: int) -> None:
        self._lock = threading.Lock()
        self._report: MonitorReport | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                report = server.latest
                path = self.path.split("?", 1)[0]
                if path == "/metrics" and report is not None:
                    from prometheus_client import CONTENT_TYPE_LATEST

                    self._send(200, CONTENT_TYPE_LATEST, exposition(report))
                elif path == "/status" and report is not None:
                    body = json.dumps(report.status_document(), ensure_ascii=False).encode()
                    self._send(200, "application/json", body)
                elif path in ("/metrics", "/status"):
                    self._send(503, "text/plain; charset=utf-8", b"no monitor pass finished yet\n")
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /status\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http request", extra={"request": format % args})

        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise UsageError(f"--serve {host}:{port}: cannot listen there ({exc.strerror or exc})") from exc
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="vvctl-metrics", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def latest(self) -> MonitorReport | None:
        with self._lock:
            return self._report

    def publish(self, report: MonitorReport) -> None:
        with self._lock:
            self._report = report

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def close(self) -> None:
        """Stop serving and free the port; safe to call more than once, and before :meth:`start`."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["MetricsServer", "ReportCollector", "exposition", "parse_address", "write_textfile"]
