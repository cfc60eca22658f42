"""The load generator: wrk (Debian's package) with a Lua script that cycles prepared requests."""

import json
import resource
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import LOOPBACK

RESULT_MARK = "BENCH_RESULT "

_LUA = """\
local bodies = {
%(bodies)s
}
local headers = {
%(headers)s
}
local prepared = {}
local next_index = 0
local threads = {}
sent = 0  -- a global of each thread, read through thread:get in done()

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for i, body in ipairs(bodies) do
    prepared[i] = wrk.format(%(method)s, %(path)s, headers, body)
  end
end

function request()
  sent = sent + 1
  next_index = next_index %% #prepared + 1
  return prepared[next_index]
end

function done(summary, latency, _)
  local e = summary.errors
  -- wrk calls request() once in thread 0 to check the script: that one is never sent.
  local total_sent = -1
  for _, thread in ipairs(threads) do
    total_sent = total_sent + thread:get("sent")
  end
  io.write(string.format(
    '%(mark)s{"requests":%%d,"sent":%%d,"duration_us":%%d,"status_errors":%%d,' ..
    '"connect_errors":%%d,"read_errors":%%d,"write_errors":%%d,"timeouts":%%d,' ..
    '"p50_us":%%d,"p99_us":%%d,"mean_us":%%.1f,"max_us":%%d}\\n',
    summary.requests, total_sent, summary.duration, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass(frozen=True)
class RequestSpec:
    """What every request of a load run looks like (bodies are cycled through)."""

    path: str
    bodies: list[str]
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


@dataclass(frozen=True)
class LoadResult:
    """What wrk saw in one run."""

    requests: int
    sent: int  # requests written; those never answered were in flight when wrk stopped
    duration_s: float
    non_2xx: int  # wrk counts statuses above 399
    socket_errors: int
    timeouts: int
    p50_ms: float
    p99_ms: float
    client_cpu_s: float  # wrk's own CPU time: it shares the machine's cores with the server

    @property
    def answered_ok(self) -> int:
        """Responses with a status below 400."""
        return self.requests - self.non_2xx

    @property
    def per_second(self) -> float:
        """Completed requests per second."""
        return self.requests / self.duration_s if self.duration_s else 0.0


def _lua_string(text: str) -> str:
    level = "=" * 4
    if f"]{level}]" in text:
        raise ValueError("body contains the Lua long-string terminator")
    return f"[{level}[{text}]{level}]"


def write_script(spec: RequestSpec, path: Path) -> Path:
    """Write the Lua script that sends `spec`'s requests."""
    headers = {"Content-Type": "application/json", **spec.headers}
    path.write_text(
        _LUA
        % {
            "bodies": ",\n".join(_lua_string(body) for body in spec.bodies),
            "headers": ",\n".join(
                f"  [ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()
            ),
            "method": _lua_string(spec.method),
            "path": _lua_string(spec.path),
            "mark": RESULT_MARK,
        },
        encoding="utf-8",
    )
    return path


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    print("wrk is missing: apt-get install -y wrk", flush=True)
    if subprocess.run(install, capture_output=True, check=False, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False, timeout=600)
        subprocess.run(install, capture_output=True, check=False, timeout=600)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and `apt-get install -y wrk` failed (root?)")
    return found


def wrk_version(wrk: str) -> str:
    """wrk's own version line."""
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].split(" Copyright")[0]


def run_wrk(
    wrk: str,
    base_url: str,
    script: Path,
    *,
    seconds: int,
    connections: int,
    threads: int = 1,
) -> LoadResult:
    """Drive a loopback server for `seconds`; wrk stops by itself, and so does this call."""
    if not base_url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError("the load target must be on the loopback address")
    command = [
        wrk, f"--threads={threads}", f"--connections={connections}",
        f"--duration={max(1, seconds)}s", "--timeout=60s", f"--script={script}", base_url,
    ]  # fmt: skip
    before = _children_cpu()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    client_cpu = _children_cpu() - before
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return _result(json.loads(line.removeprefix(RESULT_MARK)), client_cpu)
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}):\n{done.stderr[-1000:]}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # children waited for: wrk runs
    return usage.ru_utime + usage.ru_stime


def _result(raw: dict[str, float], client_cpu_s: float) -> LoadResult:
    return LoadResult(
        requests=int(raw["requests"]),
        sent=int(raw["sent"]),
        duration_s=raw["duration_us"] / 1e6,
        non_2xx=int(raw["status_errors"]),
        socket_errors=int(raw["connect_errors"] + raw["read_errors"] + raw["write_errors"]),
        timeouts=int(raw["timeouts"]),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        client_cpu_s=client_cpu_s,
    )
