"""The Markdown report: the results table, the targets met or missed, memory and storage checks."""

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.contenders import COLUMNS_VERSUS_ROWS, Contender
from bench.measure import TAIL, Memory, Run, StorageCheck
from bench.pauses import total

ROW_NUMBERS = {
    "reference": "1", "floor": "2", "sqlite": "3", "sqlite-explain": "3b", "postgres": "4",
    "batch-sqlite": "5a", "batch-postgres": "5b", "batch-columns-sqlite": "5c",
    "batch-columns-postgres": "5d", "rest": "6", "postgres-2w": "7",
}  # fmt: skip
SOAK_PREDICTIONS = 100_000
RSS_LIMIT_MB = 250.0


@dataclass(frozen=True)
class Spread:
    """Median and range of a per-round measure."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median over rounds."""
        return statistics.median(self.values) if self.values else float("nan")

    def show(self, fmt: str = "{:,.0f}") -> str:
        """`median [min-max]`, or just the value for a single round."""
        if not self.values:
            return "-"
        if len(self.values) == 1:
            return fmt.format(self.values[0])
        low, high = min(self.values), max(self.values)
        return f"{fmt.format(self.median)} [{fmt.format(low)}-{fmt.format(high)}]"


@dataclass(frozen=True)
class Results:
    """Everything the report is made from."""

    contenders: Sequence[Contender]
    runs: Sequence[Run]
    memory: Sequence[Memory]
    storage: Sequence[StorageCheck]
    machine: Sequence[str]
    method: str
    notes: Sequence[str]
    soak_predictions: int = SOAK_PREDICTIONS

    def measured(self, key: str) -> list[Run]:
        """The measured rounds of one contender, in round order."""
        return sorted((r for r in self.runs if r.key == key and r.round > 0), key=lambda r: r.round)

    def spread(self, key: str, measure: Callable[[Run], float]) -> Spread:
        """A measure of a contender over its rounds."""
        return Spread(tuple(measure(run) for run in self.measured(key)))

    def ratio(self, key: str, base: str, measure: Callable[[Run], float]) -> Spread:
        """Per-round ratio of a contender's measure to another's in the same round."""
        mine = {run.round: measure(run) for run in self.measured(key)}
        theirs = {run.round: measure(run) for run in self.measured(base)}
        shared = sorted(set(mine) & set(theirs))
        return Spread(tuple(mine[r] / theirs[r] for r in shared if theirs[r]))


def _units(run: Run) -> float:
    return run.units_per_second


def _p99(run: Run) -> float:
    return run.load.p99_ms


def _tail(run: Run) -> float:
    """How far the tail stands from the median (issue 15's target: <= 2.5 at 32 connections)."""
    return run.load.p99_ms / max(run.load.p50_ms, 1e-9)


def _cpu(contender: Contender, results: Results) -> str:
    spread = results.spread(contender.key, lambda run: run.cpu_ms_per_request)
    text = spread.show("{:.2f} ms")
    if contender.rows_per_request > 1 and spread.values:
        text += f" ({spread.median * 1000 / contender.rows_per_request:.1f} us/prediction)"
    return text


def _cores(key: str, results: Results) -> str:
    runs = results.measured(key)
    if not runs:
        return "-"
    medians = tuple(statistics.median(run.cores()[i] for run in runs) for i in range(4))
    return _cores_text(medians, runs)


def _cores_text(cores: tuple[float, ...], runs: Sequence[Run]) -> str:
    server, db, wrk, rest = cores
    return f"{server:.2f}{_loop(runs)} + {db:.2f} + {wrk:.2f} + {rest:.2f}"


def _loop(runs: Sequence[Run]) -> str:
    """' (loop 0.80)': the median share of the runs the event loop's thread was on a CPU."""
    shares = [share for share in (run.loop_busy() for run in runs) if share is not None]
    return f" (loop {statistics.median(shares):.2f})" if shares else ""


def _storage_cell(check: StorageCheck | None) -> str:
    if check is None:
        return "n/a"
    state = "yes, exactly" if check.exact else "yes" if check.ok else "**NO**"
    return f"{state} (+{check.audit_extra} audit, +{check.prediction_extra} pred.)"


def _pauses_cell(runs: Sequence[Run]) -> str:
    measured = total([run.pauses for run in runs if run.pauses is not None])
    return "-" if measured is None else measured.show()


def results_table(results: Results) -> list[str]:
    """The main table: one row per contender."""
    lines = [
        "| # | contender | answered/s, median [min-max] | x reference | p50 ms | p99 ms "
        "| p99 / p50 | server CPU / request | cores busy: server (its event loop's thread) + DB "
        "+ wrk + rest of machine "
        "| peak RSS MB | non-2xx "
        "| stored = answered | pauses over the rounds (collector, event loop, group commits) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    storage = {check.key: check for check in results.storage}
    rss = {m.key: max(m.workers_mb, default=0.0) for m in results.memory}
    for contender in results.contenders:
        key = contender.key
        unit = "predictions" if contender.rows_per_request > 1 else "requests"
        runs = results.measured(key)
        cells = [
            ROW_NUMBERS.get(key, "?"),
            contender.title,
            f"{results.spread(key, _units).show()} {unit}",
            results.ratio(key, "reference", _units).show("{:.2f}x"),
            results.spread(key, lambda run: run.load.p50_ms).show("{:.1f}"),
            results.spread(key, _p99).show("{:.1f}"),
            results.spread(key, _tail).show("{:.2f}"),
            _cpu(contender, results),
            _cores(key, results),
            f"{rss.get(key, 0.0):.0f}",
            str(sum(run.load.non_2xx + run.load.socket_errors for run in runs)),
            _storage_cell(storage.get(key)),
            _pauses_cell(runs),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


@dataclass(frozen=True)
class Target:
    """One goal of the issue, and whether this run met it."""

    goal: str
    measured: str
    met: bool | None  # None: not measured in this run
    others: str = "-"  # cores other processes of the machine used during the runs compared


def _others(results: Results, *keys: str) -> str:
    rest = [run.cores()[3] for key in keys for run in results.measured(key)]
    return f"{statistics.median(rest):.2f}" if rest else "-"


def _at_least(results: Results, key: str, base: str, goal: float, text: str) -> Target:
    spread = results.ratio(key, base, _units)
    if not spread.values:
        return Target(text, "not measured", None)
    met = spread.median >= goal
    return Target(text, spread.show("{:.2f}x"), met, _others(results, key, base))


def _batch(results: Results, key: str, text: str) -> Target:
    spread = results.spread(key, _units)
    if not spread.values:
        return Target(text, "not measured", None)
    measured = f"{spread.show()} predictions/s"
    return Target(text, measured, spread.median >= 50_000, _others(results, key))


def _p99_target(results: Results) -> Target:
    text = "`predict` on SQLite: p99 <= the reference's p99"
    mine, theirs = results.spread("sqlite", _p99), results.spread("reference", _p99)
    if not mine.values or not theirs.values:
        return Target(text, "not measured", None)
    measured = f"{mine.median:.1f} ms vs {theirs.median:.1f} ms (medians)"
    return Target(
        text, measured, mine.median <= theirs.median, _others(results, "sqlite", "reference")
    )


def _rss_target(results: Results) -> Target:
    text = f"peak RSS per worker <= {RSS_LIMIT_MB:.0f} MB after {SOAK_PREDICTIONS:,} predictions"
    soaked = [m for m in results.memory if (m.stored_predictions or 0) >= SOAK_PREDICTIONS]
    if not soaked:
        return Target(text, "not measured", None)
    worst = max(soaked, key=lambda m: max(m.workers_mb))
    peak = max(worst.workers_mb)
    return Target(text, f"{peak:.0f} MB (worst: {worst.key})", peak <= RSS_LIMIT_MB)


def tail_table(results: Results) -> list[str]:
    """The tail runs: one long run of single-row `predict` per database."""
    runs = [run for run in results.runs if run.round == TAIL]
    if not runs:
        return ["(no tail run: --tail 0)"]
    lines = [
        "| contender | seconds | answered/s | p50 ms | p99 ms | p99 / p50 | target "
        "p99 <= 2.5x p50 | pauses (collector, event loop, group commits) | cores busy: server "
        "(its event loop's thread) + DB + wrk + rest of machine |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        ratio = _tail(run)
        cells = [
            run.key,
            f"{run.load.duration_s:.0f}",
            f"{run.load.per_second:,.0f}",
            f"{run.load.p50_ms:.1f}",
            f"{run.load.p99_ms:.1f}",
            f"{ratio:.2f}",
            _verdict(ratio <= 2.5),
            "-" if run.pauses is None else run.pauses.show(),
            # The server's own pauses against its neighbours': on 2 cores, another process's
            # work (a database's autovacuum after the batch runs) stretches the tail too (the
            # other servers are stopped meanwhile: what is left is the databases' and others').
            _cores_text(run.cores(), [run]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets(results: Results) -> list[Target]:
    """The issue's targets, in its order."""
    return [
        _at_least(results, "sqlite", "reference", 2.0, "`predict` on SQLite >= 2.0x reference"),
        _at_least(
            results, "sqlite", "reference", 4.0, "`predict` on SQLite >= 4x reference (round 2)"
        ),
        _at_least(
            results,
            "sqlite-explain",
            "reference",
            4.0,
            "`predict` + `explanation` on SQLite >= 4x reference (round 2)",
        ),
        _p99_target(results),
        _at_least(
            results, "postgres", "reference", 1.5, "`predict` on PostgreSQL >= 1.5x reference"
        ),
        _batch(results, "batch-sqlite", "`predictBatch` x1,000 on SQLite >= 50,000 predictions/s"),
        _batch(
            results, "batch-postgres", "`predictBatch` x1,000 on PostgreSQL >= 50,000 predictions/s"
        ),
        _at_least(
            results, "postgres-2w", "postgres", 1.7, "2 workers >= 1.7x 1 worker (PostgreSQL)"
        ),
        _rss_target(results),
    ]


def columns_table(results: Results) -> list[str]:
    """predictColumns against predictBatch on the same database: the same rows, the same run."""
    keys = {contender.key for contender in results.contenders}
    pairs = [(c, r) for c, r in COLUMNS_VERSUS_ROWS.items() if c in keys and r in keys]
    if not pairs:
        return ["(not measured: --only batch or batch-columns measures it)"]
    lines = [
        "| rows sent as | predictions/s, median [min-max] | x `predictBatch` (per round) "
        "| x reference | server CPU / prediction | p50 / p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for columns, rows in pairs:
        for key, ratio in ((rows, "1.00x"), (columns, None)):
            spread = results.spread(key, _units)
            cpu = results.spread(key, lambda run: run.cpu_ms_per_request)
            per_row = "-" if not cpu.values else f"{cpu.median * 1000 / _rows(results, key):.1f} us"
            p50 = results.spread(key, lambda run: run.load.p50_ms).median
            cells = [
                key,
                f"{spread.show()}",
                ratio or results.ratio(key, rows, _units).show("{:.2f}x"),
                results.ratio(key, "reference", _units).show("{:.2f}x"),
                per_row,
                f"{p50:.1f} / {results.spread(key, _p99).median:.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _rows(results: Results, key: str) -> int:
    return next(c.rows_per_request for c in results.contenders if c.key == key)


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def targets_table(results: Results) -> list[str]:
    """Each target with its measured value and verdict."""
    lines = [
        "| target | measured (median [min-max]) | verdict | cores other processes used meanwhile |",
        "|---|---|---|---|",
    ]
    for t in targets(results):
        lines.append(f"| {t.goal} | {t.measured} | {_verdict(t.met)} | {t.others} |")
    return lines


def memory_table(results: Results) -> list[str]:
    """Peak RSS of every worker, with the predictions its server had stored."""
    lines = [
        "| contender | peak RSS (VmHWM) per worker, MB | RSS now (VmRSS), MB | predictions stored "
        "|",
        "|---|---|---|---|",
    ]
    for m in results.memory:
        peaks = ", ".join(f"{mb:.0f}" for mb in m.workers_mb)
        now = ", ".join(f"{mb:.0f}" for mb in m.workers_now_mb)
        stored = "-" if m.stored_predictions is None else f"{m.stored_predictions:,}"
        lines.append(f"| {m.key} | {peaks} | {now} | {stored} |")
    return lines


def storage_table(results: Results) -> list[str]:
    """Database rows against the answers the load generator received."""
    lines = [
        "| contender | audit rows | answered | predictions stored | predictions answered 2xx "
        "| in flight when wrk stopped: requests (predictions) | check "
        "| database on disk, bytes per stored prediction |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in results.storage:
        verdict = "exact" if c.exact else "ok (<= in flight)" if c.ok else "**MISMATCH**"
        size = c.bytes_per_prediction
        lines.append(
            f"| {c.key} | {c.audit_rows:,} | {c.answered:,} | {c.prediction_rows:,} "
            f"| {c.predicted_ok:,} | {c.in_flight:,} ({c.in_flight_rows:,}) | {verdict} "
            f"| {'-' if size is None else f'{size:,.0f}'} |"
        )
    return lines


def worker_notes(results: Results) -> list[str]:
    """How the work of multi-worker servers was shared between their processes."""
    notes = []
    for contender in results.contenders:
        runs = [run for run in results.measured(contender.key) if run.worker_cpu_s]
        if runs:
            shares = "; ".join(
                f"round {run.round}: "
                + " / ".join(f"{s / run.load.duration_s:.2f}" for s in run.worker_cpu_s)
                for run in runs
            )
            notes.append(f"{contender.key}: cores busy per worker process, {shares}")
    return notes


def render(results: Results) -> str:
    """The whole report."""
    parts = [
        "# failcast benchmark",
        "",
        *(f"- {line}" for line in results.machine),
        f"- method: {results.method}",
        "",
        *results_table(results),
        "",
        "## Tail: one long run of single-row `predict` at the same connections",
        "",
        "Each tail run has the machine to itself: the other contenders' servers are stopped "
        "(SIGSTOP to their process groups, SIGCONT after), so their background work (each "
        "refreshes its drift gauges 300 s after it starts, all at once) is not measured as "
        "this server's tail. The server's own background work runs as usual.",
        "",
        *tail_table(results),
        "",
        "## `predictColumns` against `predictBatch`: the same rows, as columns, in the same run",
        "",
        *columns_table(results),
        "",
        "## Targets (1 worker unless said, all ratios measured in this run)",
        "",
        *targets_table(results),
        "",
        "The last column is CPU that processes outside the bench took from the 2 cores while "
        "the runs compared were measured: well above 0, a verdict describes the machine as it "
        "was as much as the code, so confirm it on a quiet machine.",
        "",
        f"## Memory (the batch and 2-worker servers topped up to >= {results.soak_predictions:,} "
        "stored predictions with `predictBatch`, the columns servers with `predictColumns`; "
        "VmHWM is the peak over the process's life)",
        "",
        *memory_table(results),
        "",
        "## Storage guarantee: every answered request audited, every 2xx prediction stored",
        "",
        *storage_table(results),
        "",
        "Rows beyond the answers received must be the requests wrk had sent but not seen "
        "answered when it stopped (the server still finishes and records them): 'exact' when "
        "the surplus equals them, row for row. The last column is the whole database (SQLite's "
        "pages, or PostgreSQL's `pg_database_size`: audit rows, indexes and the registered "
        "models included) over the predictions it holds; an explained prediction takes more "
        "(its explanation is stored with it).",
    ]
    notes = [*results.notes, *worker_notes(results)]
    if notes:
        parts += ["", "## Notes", "", *(f"- {note}" for note in notes)]
    return "\n".join(parts) + "\n"
