"""Server processes: start, wait until ready, stop; their CPU time and peak memory from /proc."""

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:  # the task ended meanwhile
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """The pid and all its live descendants."""
    tree: list[int] = []
    pending = [pid]
    while pending and len(tree) < 1000:
        current = pending.pop()
        if Path(f"/proc/{current}").exists():
            tree.append(current)
            pending += _children(current)
    return tree


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads); 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def loop_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process's first thread (a uvicorn worker's event loop runs
    there); 0 once it is gone. Its share of a run, against the whole process's, shows how long
    the loop waited: for the GIL, or for a commit with every request in it."""
    try:
        stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine have used (and the hypervisor stole), summed."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants."""
    return sum(own_cpu_seconds(member) for member in process_tree(pid))


def _status_mb(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return 0.0


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of one process, in MB (10^6 bytes)."""
    return _status_mb(pid, "VmHWM")


def rss_mb(pid: int) -> float:
    """VmRSS (resident set now) of one process, in MB."""
    return _status_mb(pid, "VmRSS")


@dataclass
class Server:
    """A server running as a subprocess in its own session (so its whole group can be ended)."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://{LOOPBACK}:{self.port}"

    def workers(self) -> list[int]:
        """The processes that serve requests: the children of a supervisor, else the process."""
        tree = process_tree(self.process.pid)
        serving = [pid for pid in tree[1:] if _is_python_worker(pid)]
        return serving or tree[:1]

    def cpu_seconds(self) -> float:
        """CPU time of the whole server tree so far."""
        return cpu_seconds(self.process.pid)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's output, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _is_python_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    if b"failcast.workers" in cmdline:  # failcast serve --workers N (a socket per worker)
        return True
    return b"multiprocessing.spawn" in cmdline and b"resource_tracker" not in cmdline


def start_server(
    name: str, command: Sequence[str], env: Mapping[str, str], cwd: Path, port: int
) -> Server:
    """Start a server command with its output going to a log file in `cwd`."""
    log_path = cwd / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(name, process, port, log_path)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of a GET on a loopback URL, or None when nothing answers."""
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError("only loopback URLs are probed")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return None


def wait_ready(server: Server, path: str, timeout: float = 60.0, streak: int = 1) -> None:
    """Poll GET `path` until it answers 200 `streak` times in a row; raise if it never does."""
    deadline, in_a_row = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited early:\n{server.log_tail()}")
        in_a_row = in_a_row + 1 if http_status(server.base_url + path) == 200 else 0
        if in_a_row >= streak:
            return
        time.sleep(0.05 if in_a_row else 0.2)
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s:\n{server.log_tail()}")


def wait_idle(server: Server, timeout: float = 60.0, window: float = 0.25) -> float:
    """Wait until the server tree uses < 10% of a core over `window`; return the seconds waited.

    wrk stops with requests in flight and the server still finishes them: without this, that
    work would be billed to whichever contender runs next.
    """
    started = time.monotonic()
    last = server.cpu_seconds()
    while time.monotonic() - started < timeout:
        time.sleep(window)
        now = server.cpu_seconds()
        if now - last < 0.1 * window:
            break
        last = now
    return time.monotonic() - started


def stop_server(server: Server, timeout: float = 15.0) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it lingers."""
    if server.process.poll() is not None:
        return
    group = server.process.pid  # start_new_session: the group id is the pid we started
    try:
        os.killpg(group, signal.SIGTERM)
        server.process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(group, signal.SIGKILL)
        server.process.wait(5)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def paused(servers: Sequence[Server]) -> Iterator[None]:
    """Stop the servers' whole process groups (SIGSTOP) for the block, and continue them after.

    A measurement of one server alone: the others' background work (drift refresh, sealing,
    checkpoints) cannot take the machine's cores while it runs.
    """
    groups = [s.process.pid for s in servers if s.process.poll() is None]
    stopped: list[int] = []
    try:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGSTOP)
                stopped.append(group)
        yield
    finally:
        for group in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGCONT)
        for server in servers:  # what their timers owe is done before anything is measured
            if server.process.pid in stopped:
                wait_idle(server)
