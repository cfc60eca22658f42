"""A TCP proxy on loopback that a test controls, to take a database away without touching it.

The proxy forwards 127.0.0.1:<port> to a loopback target (the PostgreSQL server) and can

- `refuse()` new connections: it stops listening, so a connect fails at once with
  ECONNREFUSED, as when the database server is down (the port stays reserved meanwhile);
- `cut()` every live connection with a TCP reset, as when the server process dies;
- `stall()` traffic: connections are accepted and bytes read but nothing is forwarded, as when
  the network drops packets (a client then hangs until its own timeouts fire);
- `accept()` again (forward normally).

It runs its own event loop in a daemon thread; every control call waits at most a few seconds.
"""

import asyncio
import contextlib
import ipaddress
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any

CONTROL_TIMEOUT_S = 5.0
UPSTREAM_CONNECT_TIMEOUT_S = 3.0
CHUNK = 64 * 1024


def _check_loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the fault proxy only targets loopback addresses, not {host}")


def _reserve(port: int = 0) -> socket.socket:
    """A bound, not listening socket: holds the port; connecting to it is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a connection with RST (linger 0), not an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Forward loopback TCP to a loopback target, with faults on demand."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        _check_loopback(target_host)
        self.target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )
        self._reserved: socket.socket | None = _reserve()
        self.port: int = self._reserved.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections_accepted = 0

    # -- control (called from the test's thread) ---------------------------------------------

    def start(self, accepting: bool = True) -> "FaultProxy":
        """Run the proxy's loop; listen at once unless `accepting` is False."""
        self._thread.start()
        self._call(self._init_flowing())
        if accepting:
            self.accept()
        return self

    def accept(self) -> None:
        """Listen and forward (undoes refuse and stall)."""
        self._call(self._accept())

    def refuse(self) -> None:
        """Stop listening: new connections are refused; live ones are left alone."""
        self._call(self._refuse())

    def cut(self) -> int:
        """Reset every live connection (both ends); returns how many sockets were reset."""
        return self._call(self._cut())

    def outage(self) -> int:
        """The database goes away: refuse new connections and cut the live ones."""
        self.refuse()
        return self.cut()

    def stall(self) -> None:
        """Keep accepting and reading, forward nothing (a black hole)."""
        self._call(self._stall())

    def close(self) -> None:
        """Stop listening, cut everything, stop the loop (bounded)."""
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=CONTROL_TIMEOUT_S)
        elif self._reserved is not None:  # never started
            self._reserved.close()
            self._reserved = None
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=CONTROL_TIMEOUT_S)

    # -- the proxy's loop ----------------------------------------------------------------------

    async def _init_flowing(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def _accept(self) -> None:
        assert self._flowing is not None
        self._flowing.set()
        if self._server is not None:
            return
        sock, self._reserved = self._reserved or _reserve(self.port), None
        self._server = await asyncio.start_server(self._handle, sock=sock, backlog=128)

    async def _refuse(self) -> None:
        if self._server is None:
            return
        self._server.close()  # closes the listening socket; not wait_closed (waits for links)
        self._server = None
        self._reserved = _reserve(self.port)

    async def _cut(self) -> int:
        links = list(self._links)
        for writer in links:
            _reset(writer)
        self._links.clear()
        return len(links)

    async def _stall(self) -> None:
        assert self._flowing is not None
        self._flowing.clear()
        if self._server is None:
            await self._accept()
            self._flowing.clear()

    async def _close(self) -> None:
        await self._refuse()
        await self._cut()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CONTROL_TIMEOUT_S / 2)
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._links.add(writer)
        try:
            await self._forward(reader, writer)
        except asyncio.CancelledError:  # the proxy is closing; swallowed for asyncio.streams
            _reset(writer)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            await self._flowing.wait()
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), UPSTREAM_CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            self._links.discard(writer)
            _reset(writer)
            return
        if writer not in self._links:  # cut while connecting upstream
            _reset(up_writer)
            return
        self._links.add(up_writer)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                self._links.discard(end)
                end.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(CHUNK):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):  # the other side was reset or closed
            _reset(writer)
