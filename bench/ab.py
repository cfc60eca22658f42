"""`python -m bench.ab OTHER_TREE`: single-row `predict` on SQLite, this tree against another
checkout of failcast (`git worktree add ../base <commit>`), run after run, under wrk.

A change worth a few percent is lost in `make bench`'s spread: two benches one after the other
differ by more than that on this shared 2-core machine. Here one model is trained once (with
this tree), each run serves a fresh copy of that database from one tree or the other, and the
two trees alternate for `--rounds` rounds: a drift of the machine touches both alike. Each run
gives requests/s, the server's CPU per request, its event loop thread's CPU per request and
share of the run (the rest it waited: for the GIL, or for the group commit every request in
flight waits on), and p50/p99. The other tree must serve this tree's database schema (the same
Alembic head).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import payloads
from bench.load import RequestSpec, ensure_wrk, run_wrk, write_script
from bench.procs import (
    cpu_seconds,
    free_port,
    loop_thread_cpu_seconds,
    start_server,
    stop_server,
    wait_ready,
)
from bench.stack import copy_sqlite, prepare_stack

HERE = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sample:
    """One run of one tree."""

    tree: str
    per_second: float
    cpu_us: float  # the server's, per request
    loop_us: float  # its event loop thread's, per request
    loop_share: float  # of the run, on a CPU
    p50_ms: float
    p99_ms: float


def _commit(tree: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return (done.stdout.strip() or "?") + (" + changes" if dirty.stdout.strip() else "")


def _run(tree: Path, database: str, env: dict[str, str], script: Path, args: argparse.Namespace,
         work: Path, wrk: str) -> Sample:  # fmt: skip
    """Serve a fresh copy of the database from `tree`, warm it up, then measure one wrk run."""
    copy = copy_sqlite(database, Path(tempfile.mkdtemp(dir=work)) / "failcast.db")
    port = free_port()
    command = [sys.executable, "-m", "failcast", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]  # fmt: skip
    # PYTHONPATH puts the tree's packages first; the server runs (and logs) in the work dir.
    served = {**env, "FAILCAST_DATABASE_URL": copy, "PYTHONPATH": str(tree)}
    server = start_server(f"ab-{port}", command, served, work, port)
    try:
        wait_ready(server, "/readyz", timeout=120, streak=3)
        run_wrk(wrk, server.base_url, script, seconds=args.warmup, connections=args.connections)
        pid = server.process.pid
        cpu, loop = cpu_seconds(pid), loop_thread_cpu_seconds(pid)
        load = run_wrk(wrk, server.base_url, script, seconds=args.seconds,
                       connections=args.connections)  # fmt: skip
        cpu, loop = cpu_seconds(pid) - cpu, loop_thread_cpu_seconds(pid) - loop
    finally:
        stop_server(server)
    requests = max(load.requests, 1)
    return Sample(
        str(tree), load.per_second, cpu * 1e6 / requests, loop * 1e6 / requests,
        loop / load.duration_s, load.p50_ms, load.p99_ms,
    )  # fmt: skip


def _median(samples: list[Sample], field: str) -> str:
    values = [getattr(s, field) for s in samples]
    return f"{statistics.median(values):,.2f} [{min(values):,.2f}-{max(values):,.2f}]"


def report(trees: list[Path], samples: list[Sample], args: argparse.Namespace) -> str:
    """The Markdown table: per tree, medians [min-max] over the rounds, and the ratio of the
    median requests/s to the first tree's."""
    first = statistics.median(s.per_second for s in samples if s.tree == str(trees[0]))
    lines = [
        f"single-row `predict`{' + explanation' if args.explain else ''} on SQLite, "
        f"{args.connections} connections, {args.seconds} s runs, {args.rounds} rounds "
        "(the trees alternate), medians [min-max]:",
        "",
        "| tree | commit | requests/s | x first | server CPU us/request (its processes) | "
        "event loop CPU us/request | event loop on a CPU (share of the run) | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tree in trees:
        mine = [s for s in samples if s.tree == str(tree)]
        ratio = statistics.median(s.per_second for s in mine) / first
        cells = [str(tree), _commit(tree), _median(mine, "per_second"), f"{ratio:.3f}x",
                 _median(mine, "cpu_us"), _median(mine, "loop_us"), _median(mine, "loop_share"),
                 _median(mine, "p50_ms"), _median(mine, "p99_ms")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    """Train once, then alternate the trees' servers round by round; print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("other", type=Path, help="another failcast checkout (the baseline)")
    parser.add_argument("--rounds", type=int, default=4, help="runs per tree (4)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per run (3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--explain", action="store_true", help="select `explanation` too")
    parser.add_argument("--data", type=Path, help="train on this dataset (default: synthetic)")
    args = parser.parse_args()
    other = args.other.resolve()
    if not (other / "failcast" / "__main__.py").exists():
        parser.error(f"{other} is not a failcast checkout")
    trees = [other, HERE]
    wrk = ensure_wrk()
    document = payloads.EXPLAINED_PREDICT_DOCUMENT if args.explain else payloads.PREDICT_DOCUMENT
    with tempfile.TemporaryDirectory(prefix="failcast-ab-") as tmp:
        work = Path(tmp)
        print("training once (this tree)", file=sys.stderr, flush=True)
        stack = prepare_stack("ab", work, f"sqlite:///{work / 'trained.db'}", args.data)
        spec = RequestSpec("/graphql", payloads.predict_bodies(64, document),
                           {"Authorization": f"Bearer {stack.token}"})  # fmt: skip
        script = write_script(spec, work / "predict.lua")
        samples = []
        for index in range(args.rounds):
            for tree in trees if index % 2 == 0 else trees[::-1]:
                sample = _run(tree, stack.database_url, stack.env, script, args, work, wrk)
                samples.append(sample)
                print(f"  round {index + 1} {tree}: {sample.per_second:,.0f} req/s, loop "
                      f"{sample.loop_us:.0f} us/request", file=sys.stderr, flush=True)  # fmt: skip
    print(report(trees, samples, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
