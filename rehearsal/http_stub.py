"""One way to serve a stand-in HTTP handler on loopback during a test."""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def serve_http(
    handler: type[http.server.BaseHTTPRequestHandler],
    *,
    address: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
) -> Iterator[int]:
    """Serve `handler` on `address` (a free port) from a thread; yield the port; stop at exit.
    With `tls` (a server context) it speaks HTTPS."""
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    # a short poll interval makes shutdown() return quickly at the end of each test
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
