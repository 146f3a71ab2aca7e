"""Name resolution and outages on loopback: a tiny DNS server and a silent TCP listener.

- `dns_server(table)`: answers A queries from a mutable `{name: address}` table (a name
  absent from it gets NXDOMAIN) on 127.0.0.1 (a free UDP port); the front's `resolver` is
  pointed at it, as Docker's embedded DNS answers it in the container. Changing the table
  is how a rehearsal makes the upstream's name stop (or start) resolving.
- `silent_listener(address, ports)`: accepts TCP connections and never answers a byte, the
  way packets dropped after the handshake (a captive portal, a stuck middlebox) look to a
  client; only its own timeouts end the wait.

Three outages of an upstream named `registry.hub.localhost` (and its auth host):
name absent from the table (does not resolve); name -> 127.0.0.3 where nothing listens
(connection refused); name -> 127.0.0.4 where `silent_listener` holds the ports (timeout).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass
class DnsServer:
    port: int
    table: dict[str, str]
    queries: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _answer(query: bytes, table: dict[str, str]) -> tuple[str, bytes]:
    (ident, _flags, qdcount) = struct.unpack("!HHH", query[:6])
    offset, labels = 12, []
    while query[offset]:
        length = query[offset]
        labels.append(query[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    qtype, _qclass = struct.unpack("!HH", query[offset + 1 : offset + 5])
    question = query[12 : offset + 5]
    name = ".".join(labels).lower()
    address = table.get(name)
    if address is None:
        header = struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0)  # NXDOMAIN
        return name, header + question
    if qtype != 1:  # only A records exist here: an empty answer for AAAA and the rest
        return name, struct.pack("!HHHHHH", ident, 0x8180, 1, 0, 0, 0) + question
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(address)
    return name, struct.pack("!HHHHHH", ident, 0x8180, qdcount, 1, 0, 0) + question + record


@contextlib.contextmanager
def dns_server(table: dict[str, str]) -> Iterator[DnsServer]:
    """A DNS server on 127.0.0.1 answering from `table` (mutable) until the block exits."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    server = DnsServer(sock.getsockname()[1], table)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                query, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(Exception):  # a malformed query gets no answer, as on UDP
                name, reply = _answer(query, server.table)
                server.queries.append(name)
                sock.sendto(reply, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


@contextlib.contextmanager
def silent_listener(address: str, ports: Iterable[int]) -> Iterator[list[socket.socket]]:
    """Listen on `address` at each port, accept, and never send a byte until the block exits."""
    listeners: list[socket.socket] = []
    accepted: list[socket.socket] = []
    stop = threading.Event()
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(64)
        sock.settimeout(0.1)
        listeners.append(sock)

    def accept(sock: socket.socket) -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)  # held open, never read from or written to

    threads = [threading.Thread(target=accept, args=(s,), daemon=True) for s in listeners]
    for thread in threads:
        thread.start()
    try:
        yield listeners
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        for sock in [*listeners, *accepted]:
            sock.close()
