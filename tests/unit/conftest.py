"""Fixtures shared by the unit tests."""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from typing import Any

import pytest

from rehearsal.http_stub import serve_http


@pytest.fixture(autouse=True)
def _no_docker_host_from_the_environment(monkeypatch):
    """The program reads DOCKER_HOST like the Docker provider does: keep tests hermetic."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)


class StatusHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with `status` and records the paths asked (healthcheck tests)."""

    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def status_server() -> Iterator[tuple[int, type[StatusHandler]]]:
    handler = type("Handler", (StatusHandler,), {"status": 200, "paths": []})
    with serve_http(handler) as port:
        yield port, handler
