"""`python -m bench.ab OTHER_TREE`: single-row `predict` on SQLite, this tree against another
checkout of failcast (`git worktree add ../base <commit>`), run after run, under wrk. With
`--batch N`, `predictBatch` of N rows instead (4 connections unless `--connections` says
otherwise), figures per prediction.

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

    tree: str  # the side's label
    per_second: float
    cpu_us: float  # the server's, per request
    loop_us: float  # its event loop thread's, per request
    loop_share: float  # of the run, on a CPU
    p50_ms: float
    p99_ms: float


def _bodies(args: argparse.Namespace) -> list[str]:
    if args.batch:
        document = payloads.EXPLAINED_BATCH_DOCUMENT if args.explain else payloads.BATCH_DOCUMENT
        return payloads.batch_bodies(4, args.batch, document)
    document = payloads.EXPLAINED_PREDICT_DOCUMENT if args.explain else payloads.PREDICT_DOCUMENT
    return payloads.predict_bodies(64, document)


def _unit(args: argparse.Namespace) -> str:
    return "prediction" if args.batch else "request"


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


@dataclass(frozen=True)
class Side:
    """One of the two servers compared: a tree, and the settings its server gets on top."""

    label: str
    tree: Path
    settings: dict[str, str]


def _run(side: Side, database: str, env: dict[str, str], script: Path, args: argparse.Namespace,
         work: Path, wrk: str) -> Sample:  # fmt: skip
    """Serve a fresh copy of the database from the side's tree, warm it up, then measure one
    wrk run."""
    tree = side.tree
    copy = copy_sqlite(database, Path(tempfile.mkdtemp(dir=work)) / "failcast.db")
    port = free_port()
    command = [sys.executable, "-m", "failcast", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]  # fmt: skip
    # PYTHONPATH puts the tree's packages first; the server runs (and logs) in the work dir.
    served = {**env, **side.settings, "FAILCAST_DATABASE_URL": copy, "PYTHONPATH": str(tree)}
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
    rows = max(args.batch, 1)  # predictions per request
    requests = max(load.requests, 1) * rows
    return Sample(
        side.label, load.per_second * rows, cpu * 1e6 / requests, loop * 1e6 / requests,
        loop / load.duration_s, load.p50_ms, load.p99_ms,
    )  # fmt: skip


def _median(samples: list[Sample], field: str) -> str:
    values = [getattr(s, field) for s in samples]
    return f"{statistics.median(values):,.2f} [{min(values):,.2f}-{max(values):,.2f}]"


def report(sides: list[Side], samples: list[Sample], args: argparse.Namespace) -> str:
    """The Markdown table: per side, medians [min-max] over the rounds, and the ratio of the
    median requests/s to the first side's."""
    first = statistics.median(s.per_second for s in samples if s.tree == sides[0].label)
    what = f"`predictBatch` x{args.batch:,}" if args.batch else "single-row `predict`"
    unit = _unit(args)
    lines = [
        f"{what}{' + explanation' if args.explain else ''} on SQLite, "
        f"{args.connections} connections, {args.seconds} s runs, {args.rounds} rounds "
        "(the trees alternate), medians [min-max]:",
        "",
        f"| tree | commit | {unit}s/s | x first | server CPU us/{unit} (its processes) | "
        f"event loop CPU us/{unit} | event loop on a CPU (share of the run) | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for side in sides:
        mine = [s for s in samples if s.tree == side.label]
        ratio = statistics.median(s.per_second for s in mine) / first
        cells = [side.label, _commit(side.tree), _median(mine, "per_second"), f"{ratio:.3f}x",
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
    parser.add_argument("--connections", type=int, help="wrk connections (32; 4 with --batch)")
    parser.add_argument(
        "--batch", type=int, default=0, help="predictBatch of this many rows (1..1000) instead"
    )
    parser.add_argument("--explain", action="store_true", help="select `explanation` too")
    parser.add_argument("--data", type=Path, help="train on this dataset (default: synthetic)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for this tree's server only (FAILCAST_ prefix optional; repeatable)",
    )
    args = parser.parse_args()
    settings = {}
    for given in args.set:
        name, equals, value = given.partition("=")
        if not equals or not name:
            parser.error(f"--set takes NAME=VALUE, not {given!r}")
        name = name.upper()
        settings[name if name.startswith("FAILCAST_") else f"FAILCAST_{name}"] = value
    if not 0 <= args.batch <= 1000:
        parser.error("--batch takes 1..1000 rows")
    if args.connections is None:
        args.connections = 4 if args.batch else 32
    other = args.other.resolve()
    if not (other / "failcast" / "__main__.py").exists():
        parser.error(f"{other} is not a failcast checkout")
    shown = " ".join(f"{k}={v}" for k, v in settings.items())
    sides = [Side(str(other), other, {}), Side(f"{HERE} {shown}".strip(), HERE, settings)]
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="failcast-ab-") as tmp:
        work = Path(tmp)
        print("training once (this tree)", file=sys.stderr, flush=True)
        stack = prepare_stack("ab", work, f"sqlite:///{work / 'trained.db'}", args.data)
        spec = RequestSpec("/graphql", _bodies(args), {"Authorization": f"Bearer {stack.token}"})
        script = write_script(spec, work / "predict.lua")
        samples = []
        for index in range(args.rounds):
            for side in sides if index % 2 == 0 else sides[::-1]:
                sample = _run(side, stack.database_url, stack.env, script, args, work, wrk)
                samples.append(sample)
                unit = _unit(args)
                print(f"  round {index + 1} {side.label}: {sample.per_second:,.0f} {unit}s/s, loop "
                      f"{sample.loop_us:.1f} us/{unit}", file=sys.stderr, flush=True)  # fmt: skip
    print(report(sides, samples, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
