"""`python -m bench` (`make bench`): failcast against the reference REST service, under wrk.

Each contender runs as a real uvicorn on 127.0.0.1 and is driven by wrk in interleaved rounds;
the Markdown table goes to bench/results/latest.md and to stdout.
"""

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from bench.contenders import ALIASES, PLANS
from bench.run import Options, run
from bench.stack import DEFAULT_PG_ADMIN

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.md"


def parser() -> argparse.ArgumentParser:
    """The command line of the benchmark."""
    names = ", ".join([plan.key for plan in PLANS] + list(ALIASES))
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--duration", type=int, default=10, help="seconds per load run (10)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    p.add_argument(
        "--batch-connections",
        type=int,
        default=4,
        help="wrk connections for predictBatch and predictColumns (4)",
    )
    p.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up seconds per contender (2)")
    p.add_argument("--pause", type=float, default=0.5, help="idle seconds between runs (0.5)")
    p.add_argument("--only", help=f"comma-separated contenders: {names}")
    p.add_argument(
        "--batch-size", type=int, default=1000, help="rows per predictBatch / predictColumns (1000)"
    )
    p.add_argument(
        "--soak", type=int, default=100_000,
        help="predictions the batch and 2-worker servers are topped up to before RSS is read",
    )  # fmt: skip
    p.add_argument("--real-data", action="store_true", help="train on the public dataset (slower)")
    p.add_argument("--pg-url", default=DEFAULT_PG_ADMIN, help="admin URL of a loopback PostgreSQL")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the Markdown report")
    p.add_argument(
        "--tail", type=int, default=60,
        help="seconds of the tail run of single-row predict per database after the rounds "
        "(60; 0: none)",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="smoke run: 3 s, 1 round, 1 s warm-up")
    return p


def options_from(args: argparse.Namespace) -> Options:
    """Options from parsed arguments (--quick overrides durations, rounds and soak)."""
    if not (1 <= args.duration <= 600 and 1 <= args.rounds <= 20 and 1 <= args.connections <= 1024):
        raise SystemExit("--duration 1..600, --rounds 1..20, --connections 1..1024")
    if not 0 <= args.tail <= 3600:
        raise SystemExit("--tail 0..3600")
    if not 1 <= args.batch_size <= 1000:
        raise SystemExit("--batch-size 1..1000 (failcast's limit)")
    quick = args.quick
    return Options(
        seconds=3 if quick else args.duration,
        rounds=1 if quick else args.rounds,
        connections=args.connections,
        batch_connections=args.batch_connections,
        threads=args.threads,
        warmup_seconds=1 if quick else args.warmup,
        pause_s=0.2 if quick else args.pause,
        only=[name.strip() for name in args.only.split(",") if name.strip()] if args.only else None,
        batch_size=args.batch_size,
        soak_predictions=min(args.soak, 10_000) if quick else args.soak,
        real_data=args.real_data,
        tail_seconds=min(args.tail, 5) if quick else args.tail,
        pg_url=args.pg_url,
        output=args.output,
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanup: servers stopped, DBs dropped


def main() -> int:
    """Run the benchmark and print its report."""
    options = options_from(parser().parse_args())
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        report = run(options, log)
    except ValueError as error:  # bad options (contender names, a non-loopback database)
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # a server or command failed; the message carries its output
        print(f"bench: {error}", file=sys.stderr)
        return 1
    print(report)
    log(f"report written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
