"""The benchmark's throttling proxy, run for real on loopback against a tiny TCP server.

The server answers a line "N SEED\\n" with N pseudo-random bytes and closes. Each test sends
through `rehearsal.throttle.ThrottleProxy` and checks what arrives, what was counted and how
long it took (bounds are wide: this proves the order of magnitude, not a precise rate).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from rehearsal.throttle import Counters, ThrottleProxy


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@contextlib.contextmanager
def byte_server() -> Iterator[int]:
    """A loopback TCP server: reads 'N SEED\\n', sends payload(N, SEED), closes."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            line = b""
            while not line.endswith(b"\n"):
                chunk = conn.recv(64)
                if not chunk:
                    return
                line += chunk
            size, seed = (int(x) for x in line.split())
            conn.sendall(payload(size, seed))

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def fetch(port: int, size: int, seed: int) -> tuple[bytes, float]:
    """Ask for `size` bytes through 127.0.0.1:port; return them and the elapsed seconds."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(f"{size} {seed}\n".encode())
        parts = []
        while True:
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            parts.append(chunk)
    return b"".join(parts), time.monotonic() - started


@pytest.fixture()
def server_port() -> Iterator[int]:
    with byte_server() as port:
        yield port


def test_forwards_every_byte_unchanged_and_counts_both_directions(server_port: int):
    with ThrottleProxy(("127.0.0.1", server_port), rate_mbit=0, rtt_ms=0) as proxy:
        data, _ = fetch(proxy.port, 3_000_000, seed=7)
        counted = proxy.wait_quiet(quiet_for=0.2, timeout=10)
    assert hashlib.sha256(data).digest() == hashlib.sha256(payload(3_000_000, 7)).digest()
    assert counted == Counters(down=3_000_000, up=len(b"3000000 7\n"), connections=1)


def test_bandwidth_limit_slows_a_transfer_to_roughly_the_asked_rate(server_port: int):
    size = 1_000_000  # 8 Mbit: 0.5 s at 16 Mbit/s
    with ThrottleProxy(("127.0.0.1", server_port), rate_mbit=16, rtt_ms=0) as proxy:
        data, throttled = fetch(proxy.port, size, seed=1)
    with ThrottleProxy(("127.0.0.1", server_port), rate_mbit=0, rtt_ms=0) as proxy:
        _, free = fetch(proxy.port, size, seed=1)
    assert len(data) == size
    assert 0.4 <= throttled <= 1.5, throttled
    assert free < throttled / 3, (free, throttled)


def test_connections_share_one_link(server_port: int):
    """Two parallel 0.5 MB transfers at 16 Mbit/s take about as long as one 1 MB transfer."""
    with ThrottleProxy(("127.0.0.1", server_port), rate_mbit=16, rtt_ms=0) as proxy:
        results: list[float] = []

        def one(seed: int) -> None:
            _, elapsed = fetch(proxy.port, 500_000, seed)
            results.append(elapsed)

        threads = [threading.Thread(target=one, args=(s,)) for s in (1, 2)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        total = time.monotonic() - started
        counted = proxy.wait_quiet(quiet_for=0.2, timeout=10)
    assert counted.down == 1_000_000 and counted.connections == 2
    assert 0.4 <= total <= 1.5, total  # 1 MB at 2 MB/s, not 0.25 s per connection


def test_added_round_trip_time_delays_a_new_connection_and_each_exchange(server_port: int):
    with ThrottleProxy(("127.0.0.1", server_port), rate_mbit=0, rtt_ms=200) as proxy:
        _, delayed = fetch(proxy.port, 100, seed=3)
    with ThrottleProxy(("127.0.0.1", server_port), rate_mbit=0, rtt_ms=0) as proxy:
        _, direct = fetch(proxy.port, 100, seed=3)
    # one RTT for the handshake, then the request one way and the answer the other way
    assert 0.4 <= delayed <= 1.0, delayed
    assert direct < 0.1, direct


def test_refuses_anything_but_loopback():
    with pytest.raises(ValueError, match="loopback"):
        ThrottleProxy(("10.0.0.1", 80))
    with pytest.raises(ValueError, match="loopback"):
        ThrottleProxy(("127.0.0.1", 80), listen_host="0.0.0.0")
