"""A throttling, byte-counting TCP proxy: the benchmark's stand-in for the internet.

`ThrottleProxy(target, rate_mbit=100, rtt_ms=20)` listens on 127.0.0.1 and forwards every
connection to `target`. Both directions pass through one emulated link each, shared by all
connections (like one access line): a chunk first waits for its serialization time on the
link (`bytes * 8 / rate`), then for the one-way propagation delay (`rtt / 2`), and is only
then written on. Transfers pipeline, so the delay adds latency without capping throughput.
A new connection first waits one RTT (the TCP handshake with a distant server; a TLS
handshake, which the plain-HTTP upstream here does not do, would cost one or two more).
`rate_mbit=0` means no bandwidth limit; `rtt_ms=0` means no added delay.

The proxy counts what it delivers in each direction: `down` is target -> client (what an
upstream registry sends: the "upstream bytes" of the benchmark), `up` is client -> target.

It runs an asyncio loop in a background thread; `start()` returns the listening port and
`stop()` closes every connection. Loopback only: it refuses to listen on, or forward to,
anything but a loopback address.

    python -m rehearsal.throttle --target 127.0.0.1:5000 --rate-mbit 100 --rtt-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

CHUNK = 64 * 1024  # 64 KiB: 5 ms of serialization at 100 Mbit/s
QUEUE_CHUNKS = 16  # read-ahead per direction and connection (a small TCP window)
_EOF = b""


@dataclass(frozen=True)
class Counters:
    """Bytes delivered so far (monotonic), and connections accepted."""

    down: int  # target -> client
    up: int  # client -> target
    connections: int

    def __sub__(self, other: Counters) -> Counters:
        return Counters(self.down - other.down, self.up - other.up, self.connections - other.connections)


class Link:
    """One direction of the emulated line: serialization at `rate_bps`, then `delay` seconds."""

    def __init__(self, rate_bps: float, delay: float) -> None:
        self.rate_bps = rate_bps
        self.delay = delay
        self._free_at = 0.0  # loop time at which the line is free again

    def reserve(self, nbytes: int, now: float) -> float:
        """Book `nbytes` on the line; return the loop time its last bit has left."""
        if self.rate_bps <= 0:
            return now
        start = max(now, self._free_at)
        self._free_at = start + nbytes * 8 / self.rate_bps
        return self._free_at


def _require_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"the throttle only runs on loopback, not {host!r}")


class ThrottleProxy:
    def __init__(
        self,
        target: tuple[str, int],
        *,
        rate_mbit: float = 100.0,
        rtt_ms: float = 20.0,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        _require_loopback(target[0])
        _require_loopback(listen_host)
        if rate_mbit < 0 or rtt_ms < 0:
            raise ValueError("rate and rtt must be >= 0")
        self.target = target
        self.rate_mbit = rate_mbit
        self.rtt_ms = rtt_ms
        self.listen_host = listen_host
        self.port = listen_port
        self._down = 0
        self._up = 0
        self._connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ public API

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    def counters(self) -> Counters:
        return Counters(self._down, self._up, self._connections)

    def start(self, timeout: float = 10.0) -> int:
        self._thread = threading.Thread(target=self._run, name="throttle-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("throttle proxy did not start")
        if self._error is not None:
            raise RuntimeError(f"throttle proxy failed to start: {self._error!r}")
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = None
        self._thread = None

    def wait_quiet(self, quiet_for: float = 0.5, timeout: float = 60.0) -> Counters:
        """Block until no byte has moved for `quiet_for` seconds; return the counters."""
        deadline = time.monotonic() + timeout
        last = self.counters()
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.counters()
            if (now.down, now.up) != (last.down, last.up):
                last, last_change = now, time.monotonic()
            elif time.monotonic() - last_change >= quiet_for:
                return now
        raise TimeoutError(f"traffic through the throttle did not stop within {timeout}s")

    def __enter__(self) -> ThrottleProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        rate = self.rate_mbit * 1e6
        delay = self.rtt_ms / 2000.0
        self._down_link = Link(rate, delay)
        self._up_link = Link(rate, delay)
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, self.listen_host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as error:  # noqa: BLE001 - reported to start()
            self._error = error
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _count_down(self, n: int) -> None:
        self._down += n

    def _count_up(self, n: int) -> None:
        self._up += n

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._connections += 1
        self._writers.add(client_w)
        try:
            if self.rtt_ms > 0:  # the TCP handshake with a distant server costs one round trip
                await asyncio.sleep(self.rtt_ms / 1000.0)
            target_r, target_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            self._writers.discard(client_w)
            return
        self._writers.add(target_w)
        pipes = [
            asyncio.ensure_future(self._pipe(client_r, target_w, self._up_link, self._count_up)),
            asyncio.ensure_future(self._pipe(target_r, client_w, self._down_link, self._count_down)),
        ]
        for task in pipes:
            self._tasks.add(task)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            for writer in (client_w, target_w):
                writer.close()
                self._writers.discard(writer)
            for task in pipes:
                self._tasks.discard(task)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: Link,
        count: Callable[[int], None],
    ) -> None:
        """reader -> (serialize on link) -> (propagation delay) -> writer."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=QUEUE_CHUNKS)

        async def serialize() -> None:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    await queue.put((loop.time(), _EOF))
                    return
                sent_at = link.reserve(len(data), loop.time())
                wait = sent_at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await queue.put((sent_at + link.delay, data))

        producer = asyncio.ensure_future(serialize())
        try:
            while True:
                deliver_at, data = await queue.get()
                wait = deliver_at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is _EOF or not data:
                    break
                writer.write(data)
                await writer.drain()
                count(len(data))
        except (ConnectionError, OSError):
            pass
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            if writer.can_write_eof():
                try:
                    writer.write_eof()
                except (OSError, RuntimeError):
                    pass


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="loopback host:port to forward to")
    parser.add_argument("--listen", default="127.0.0.1:0", help="loopback host:port to listen on")
    parser.add_argument("--rate-mbit", type=float, default=100.0, help="bandwidth, Mbit/s (0: unlimited)")
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="added round-trip time, ms")
    args = parser.parse_args(argv)
    host, port = _host_port(args.listen)
    proxy = ThrottleProxy(
        _host_port(args.target), rate_mbit=args.rate_mbit, rtt_ms=args.rtt_ms, listen_host=host, listen_port=port
    )
    proxy.start()
    print(f"throttle {proxy.address} -> {args.target} at {args.rate_mbit} Mbit/s, +{args.rtt_ms} ms RTT", flush=True)
    try:
        while True:
            time.sleep(5)
            c = proxy.counters()
            print(f"down {c.down} B, up {c.up} B, {c.connections} connections", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()


if __name__ == "__main__":
    main()
