"""bench.procs.paused: the other servers stop for a tail run, and go on after it."""

import sys
import time
from pathlib import Path

from bench.procs import Server, paused, start_server, stop_server

# Busy for 1 s of CPU (time it cannot take while stopped), then idle: `paused` waits for that.
SPIN = "import time\nwhile time.process_time() < 1.0:\n    pass\ntime.sleep(600)\n"


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _wait_state(pid: int, wanted: set[str]) -> str:
    deadline = time.monotonic() + 5
    while (state := _state(pid)) not in wanted and time.monotonic() < deadline:
        time.sleep(0.01)
    return state


def test_paused_servers_stop_for_the_block_and_go_on_after(tmp_path):
    servers: list[Server] = [
        start_server(f"spin{i}", [sys.executable, "-c", SPIN], {}, tmp_path, 0) for i in range(2)
    ]
    try:
        with paused(servers):
            for server in servers:
                assert _wait_state(server.process.pid, {"T"}) == "T"
            before = [server.cpu_seconds() for server in servers]
            time.sleep(0.3)
            assert [server.cpu_seconds() for server in servers] == before
        # continued, and waited for until idle: each spent its second of CPU
        assert all(s.cpu_seconds() >= 0.99 > b for s, b in zip(servers, before, strict=True))
        for server in servers:
            assert _wait_state(server.process.pid, {"S"}) == "S"
    finally:
        for server in servers:
            stop_server(server)


def test_a_server_that_is_gone_is_skipped(tmp_path):
    gone = start_server("gone", [sys.executable, "-c", "pass"], {}, tmp_path, 0)
    gone.process.wait(10)
    with paused([gone]):
        pass  # nothing to stop, nothing raised
