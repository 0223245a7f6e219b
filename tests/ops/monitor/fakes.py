"""Test doubles served over real sockets: a fake Docker Engine API on a unix socket (the real Docker SDK
talks to it) and an HTTP receiver on 127.0.0.1 for Apprise ``json://`` alerts."""

from __future__ import annotations

import json
import shutil
import socketserver
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

API_VERSION = "1.45"


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class FakeContainer:
    name: str
    status: str = "running"
    health: str | None = "healthy"
    exit_code: int = 0
    restart_count: int = 0
    policy: str = "unless-stopped"
    max_retries: int = 0
    labels: dict[str, str] = field(default_factory=lambda: {"vvctl.monitor": "true"})
    health_after_restart: str | None = "healthy"
    """What a restart does to the container's health (None: no healthcheck)."""
    id: str = ""

    def __post_init__(self) -> None:
        self.id = self.id or (self.name.encode().hex() * 8)[:64]

    def summary(self) -> dict[str, Any]:
        return {"Id": self.id, "Names": [f"/{self.name}"], "Labels": self.labels, "State": self.status}

    def inspect(self) -> dict[str, Any]:
        state: dict[str, Any] = {"Status": self.status, "Running": self.status == "running", "ExitCode": self.exit_code}
        if self.health is not None:
            state["Health"] = {"Status": self.health, "FailingStreak": 3 if self.health == "unhealthy" else 0}
        return {
            "Id": self.id,
            "Name": f"/{self.name}",
            "State": state,
            "RestartCount": self.restart_count,
            "HostConfig": {"RestartPolicy": {"Name": self.policy, "MaximumRetryCount": self.max_retries}},
            "Config": {"Labels": self.labels, "Image": "example/app:1"},
        }


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeDockerEngine:
    """The few Docker Engine API endpoints the SDK calls for listing, inspecting and restarting."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="vvd", dir="/tmp"))  # unix socket paths are short
        self.socket = self.directory / "docker.sock"
        self.containers: dict[str, FakeContainer] = {}
        self.restarts: list[str] = []
        self.requests: list[str] = []
        self.lock = threading.Lock()
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, code: int, body: Any = None, *, text: str | None = None) -> None:
                data = text.encode() if text is not None else (b"" if body is None else json.dumps(body).encode())
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if text is not None else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Api-Version", API_VERSION)
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                url = urlparse(self.path)
                parts = [p for p in url.path.split("/") if p]
                if parts and parts[0].startswith("v1."):
                    parts = parts[1:]
                with engine.lock:
                    engine.requests.append(f"{method} /{'/'.join(parts)}")
                    self._answer(method, parts, parse_qs(url.query))

            def _answer(self, method: str, parts: list[str], query: dict[str, list[str]]) -> None:
                if method == "GET" and parts == ["_ping"]:
                    return self._reply(200, text="OK")
                if method == "GET" and parts == ["version"]:
                    return self._reply(200, {"ApiVersion": API_VERSION, "MinAPIVersion": "1.24", "Version": "27.0.0"})
                if method == "GET" and parts == ["containers", "json"]:
                    filters = json.loads(query.get("filters", ["{}"])[0])
                    wanted = filters.get("label", [])
                    found = [c.summary() for c in engine.containers.values() if all(_has_label(c, w) for w in wanted)]
                    return self._reply(200, found)
                if len(parts) >= 3 and parts[0] == "containers":
                    container = engine.find(parts[1])
                    if container is None:
                        return self._reply(404, {"message": f"No such container: {parts[1]}"})
                    if method == "GET" and parts[2] == "json":
                        return self._reply(200, container.inspect())
                    if method == "POST" and parts[2] == "restart":
                        engine.restarts.append(container.name)
                        container.status, container.health = "running", container.health_after_restart
                        return self._reply(204)
                return self._reply(404, {"message": "page not found"})

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_HEAD(self) -> None:
                self._route("HEAD")

        self.server = _UnixHTTPServer(str(self.socket), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def add(self, container: FakeContainer) -> FakeContainer:
        self.containers[container.id] = container
        return container

    def find(self, key: str) -> FakeContainer | None:
        for container in self.containers.values():
            if key in (container.id, container.name) or container.id.startswith(key):
                return container
        return None

    def __enter__(self) -> FakeDockerEngine:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)


def _has_label(container: FakeContainer, wanted: str) -> bool:
    key, _, value = wanted.partition("=")
    return key in container.labels and (not value or container.labels[key] == value)


class AlertReceiver:
    """A real HTTP server on 127.0.0.1 that records what Apprise's ``json://`` posts."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                receiver.received.append(json.loads(body))
                receiver.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, secret: str = "SECRETTOKEN") -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hooks/{secret}"

    def titles(self) -> list[str]:
        return [str(m["title"]) for m in self.received]

    def __enter__(self) -> AlertReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
