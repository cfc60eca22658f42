"""`failcast serve --workers N`: N uvicorn processes, each listening on its own socket.

uvicorn's own workers accept from one shared listening socket, and a client's keep-alive
connections are handed out once, as they arrive: the bench saw one of two workers take all 32
of wrk's connections while the other stayed idle. Here every worker binds the same port with
SO_REUSEPORT, and the kernel spreads new connections across the workers' sockets by a hash of
each connection.

The supervisor starts the workers and passes SIGINT/SIGTERM on to them; each stops as uvicorn
does, finishing (and recording) the requests in flight. A worker that dies after start-up is
restarted. One that dies during start-up stops them all with exit code 1, because its siblings
would fail the same way (a port in use, bad settings).
"""

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("failcast.workers")

STARTUP_GRACE_S = 15.0  # a worker that dies sooner failed to start
STOP_TIMEOUT_S = 30.0  # after this, a worker that has not stopped is killed
BACKLOG = 2048


def reuse_port_available() -> bool:
    """Whether this platform can give each worker its own socket on one port."""
    return hasattr(socket, "SO_REUSEPORT")


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on host:port that other processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def serve_one(host: str, port: int, options: dict[str, Any]) -> None:
    """One worker: uvicorn with `options`, on its own socket."""
    import uvicorn

    sock = listening_socket(host, port)
    uvicorn.Server(uvicorn.Config(**options, host=host, port=port)).run(sockets=[sock])


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    started: float


def supervise(host: str, port: int, workers: int, options: dict[str, Any]) -> int:
    """Run `workers` workers until SIGINT/SIGTERM; the exit code of the whole server."""
    command = [sys.executable, "-m", "failcast.workers", host, str(port), json.dumps(options)]

    def start() -> _Worker:
        return _Worker(subprocess.Popen(command), time.monotonic())  # noqa: S603

    signals: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: signals.append(number))
    running = [start() for _ in range(workers)]
    code = 0
    while not signals and code == 0:
        time.sleep(0.2)
        for index, worker in enumerate(running):
            status = worker.process.poll()
            if status is None:
                continue
            if time.monotonic() - worker.started < STARTUP_GRACE_S:
                log.error("a worker exited during start-up (code %s): stopping", status)
                code = 1
                break
            log.warning("worker %s died (code %s): starting another", worker.process.pid, status)
            running[index] = start()
    _stop(running)
    return code


def _stop(running: list[_Worker]) -> None:
    for worker in running:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for worker in running:
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error(
                "worker %s did not stop in %.0f s: killed", worker.process.pid, STOP_TIMEOUT_S
            )
            worker.process.kill()
            worker.process.wait()


if __name__ == "__main__":
    serve_one(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]))
