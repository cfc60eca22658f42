"""Load runs: warm-up, interleaved rounds, the storage top-up, and what the servers used."""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.contenders import Contender
from bench.load import LoadResult, run_wrk, write_script
from bench.pauses import Pauses, between, scrape
from bench.procs import (
    cpu_seconds,
    loop_thread_cpu_seconds,
    machine_busy_seconds,
    peak_rss_mb,
    rss_mb,
    wait_idle,
)
from bench.stack import database_bytes, stored_counts

WARMUP, SOAK, TAIL = 0, -1, -2  # round numbers of the runs that are not measured rounds


@dataclass(frozen=True)
class LoadSettings:
    """How each load run drives its server."""

    wrk: str
    seconds: int
    warmup_seconds: int
    connections: int
    batch_connections: int
    threads: int
    pause_s: float


@dataclass(frozen=True)
class Run:
    """One wrk run against one contender, with the server CPU it cost."""

    key: str
    round: int
    load: LoadResult
    cpu_s: float
    rows_per_request: int
    connections: int
    db_cpu_s: float = 0.0
    worker_cpu_s: tuple[float, ...] = ()  # per worker process, when there are several
    machine_cpu_s: float = 0.0  # every process of the machine (other tenants included)
    pauses: Pauses | None = None  # a single-process failcast server's collections, loop lag
    loop_cpu_s: float | None = None  # a single-process failcast server's event loop thread

    def cores(self) -> tuple[float, float, float, float]:
        """Cores kept busy during the run by the server, its database, wrk, and the rest."""
        seconds = self.load.duration_s or float("nan")
        mine = self.cpu_s + self.db_cpu_s + self.load.client_cpu_s
        rest = max(0.0, self.machine_cpu_s - mine)
        return (
            self.cpu_s / seconds,
            self.db_cpu_s / seconds,
            self.load.client_cpu_s / seconds,
            rest / seconds,
        )

    def loop_busy(self) -> float | None:
        """The share of the run the event loop's thread was on a CPU (None: not measured)."""
        if self.loop_cpu_s is None:
            return None
        return self.loop_cpu_s / (self.load.duration_s or float("nan"))

    @property
    def units_per_second(self) -> float:
        """Predictions (or requests, for one-row contenders) answered per second."""
        return self.load.answered_ok * self.rows_per_request / self.load.duration_s

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU time per completed request."""
        return self.cpu_s * 1000 / self.load.requests if self.load.requests else float("nan")


class Driver:
    """Runs wrk against contenders, keeping every run (measured or not) for the checks."""

    def __init__(
        self,
        settings: LoadSettings,
        scripts: Path,
        log: Callable[[str], None],
        settle: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.scripts = scripts
        self.log = log
        self.settle = settle  # flushes what a run wrote, so the next run does not pay for it
        self.runs: list[Run] = []
        self._script_paths: dict[tuple[str, str], Path] = {}

    def _script(self, contender: Contender, batch: bool) -> Path:
        key = (contender.key, "batch" if batch else "main")
        if key not in self._script_paths:
            spec = contender.batch_request() if batch else contender.request()
            path = self.scripts / f"{key[0]}-{key[1]}.lua"
            self._script_paths[key] = write_script(spec, path)
        return self._script_paths[key]

    def run(self, contender: Contender, round_no: int, seconds: int, batch: bool = False) -> Run:
        """One load run; CPU is read from the server's process tree before and after."""
        server = contender.server
        assert server is not None
        script = self._script(contender, batch)
        settings = self.settings
        connections = settings.connections
        if batch or contender.rows_per_request > 1:
            connections = settings.batch_connections
        workers = server.workers() if contender.plan.workers > 1 else []
        before, db_before = server.cpu_seconds(), contender.database_cpu()
        workers_before = [cpu_seconds(pid) for pid in workers]
        machine_before = machine_busy_seconds()
        # One process answers /metrics for the whole server only when there is one.
        watched = contender.stack is not None and contender.plan.workers == 1
        token = contender.stack.token if contender.stack is not None else None
        paused_before = scrape(server.base_url, token or "") if watched else None
        loop_pid = server.workers()[0] if watched else None
        loop_before = loop_thread_cpu_seconds(loop_pid) if loop_pid is not None else 0.0
        load = run_wrk(settings.wrk, server.base_url, script, seconds=seconds,
                       connections=connections, threads=settings.threads)  # fmt: skip
        machine = machine_busy_seconds() - machine_before
        loop_cpu = None
        if loop_pid is not None:
            loop_cpu = loop_thread_cpu_seconds(loop_pid) - loop_before
        cpu = server.cpu_seconds() - before
        split = tuple(
            cpu_seconds(pid) - was for pid, was in zip(workers, workers_before, strict=True)
        )
        db_after = contender.database_cpu()
        db_cpu = sum(now - db_before.get(pid, 0.0) for pid, now in db_after.items())
        pauses = None
        if paused_before is not None:
            pauses = between(paused_before, scrape(server.base_url, token or ""))
        rows = contender.batch_size if batch else contender.rows_per_request
        run = Run(
            contender.key, round_no, load, cpu, rows, connections, db_cpu, split, machine, pauses,
            loop_cpu,
        )  # fmt: skip
        self.runs.append(run)
        wait_idle(server)  # the server finishes what wrk left in flight before anyone goes on
        self.settle()
        time.sleep(settings.pause_s)
        return run

    def warm_up(self, contenders: Sequence[Contender]) -> None:
        """A short unmeasured run per contender: pools, caches and pages get filled."""
        for contender in contenders:
            run = self.run(contender, WARMUP, self.settings.warmup_seconds)
            self.log(f"  warm-up {contender.key}: {run.load.per_second:,.0f} req/s")

    def rounds(self, contenders: Sequence[Contender], count: int) -> None:
        """`count` rounds; each runs every contender once, starting one further each round."""
        for index in range(count):
            shift = index % len(contenders)
            order = [*contenders[shift:], *contenders[:shift]]
            for contender in order:
                run = self.run(contender, index + 1, self.settings.seconds)
                self.log(
                    f"  round {index + 1} {contender.key}: {run.units_per_second:,.0f}/s, "
                    f"p99 {run.load.p99_ms:.1f} ms, non-2xx {run.load.non_2xx}"
                )

    def top_up(self, contender: Contender, predictions: int, max_runs: int = 30) -> int:
        """Send predictBatch requests until the database holds `predictions`; return the count."""
        assert contender.stack is not None
        stored = stored_counts(contender.stack.database_url)[1]
        for _ in range(max_runs):
            if stored >= predictions:
                break
            self.run(contender, SOAK, 5, batch=True)
            stored = stored_counts(contender.stack.database_url)[1]
        return stored


@dataclass(frozen=True)
class Memory:
    """Peak RSS of each worker of a server, and the predictions it had stored by then."""

    key: str
    workers_mb: list[float]  # peak (VmHWM)
    stored_predictions: int | None
    workers_now_mb: list[float]  # resident now (VmRSS): below the peak when it was transient


def memory_of(contender: Contender, stored: int | None) -> Memory:
    """VmHWM of each serving process of a contender."""
    assert contender.server is not None
    workers = contender.server.workers()
    peaks, now = [peak_rss_mb(pid) for pid in workers], [rss_mb(pid) for pid in workers]
    return Memory(contender.key, peaks, stored, now)


@dataclass(frozen=True)
class StorageCheck:
    """Rows in the database against the answers the load generator received."""

    key: str
    audit_rows: int
    answered: int
    prediction_rows: int
    predicted_ok: int
    in_flight: int  # requests wrk had sent but not seen answered when it stopped
    in_flight_rows: int  # the predictions those requests ask for
    database_bytes: int | None = None  # the whole database on disk (bench.stack.database_bytes)

    @property
    def bytes_per_prediction(self) -> float | None:
        """The database's size over the predictions it holds (the audit rows, the indexes and
        the registered models included): None without predictions or a size."""
        if self.database_bytes is None or not self.prediction_rows:
            return None
        return self.database_bytes / self.prediction_rows

    @property
    def audit_extra(self) -> int:
        """Audit rows beyond the answers received (requests cut off when wrk stopped)."""
        return self.audit_rows - self.answered

    @property
    def prediction_extra(self) -> int:
        """Prediction rows beyond the successful answers received."""
        return self.prediction_rows - self.predicted_ok

    @property
    def ok(self) -> bool:
        """Nothing answered is missing, and any surplus is explained by requests cut off."""
        return 0 <= self.audit_extra <= self.in_flight and (
            0 <= self.prediction_extra <= self.in_flight_rows
        )

    @property
    def exact(self) -> bool:
        """Every request sent left its rows: the surplus is exactly the requests cut off."""
        return self.audit_extra == self.in_flight and self.prediction_extra == self.in_flight_rows


def check_storage(contender: Contender, runs: Sequence[Run]) -> StorageCheck:
    """Compare the contender's stored rows with every answer its load runs received."""
    assert contender.stack is not None
    audit, predictions = stored_counts(contender.stack.database_url)
    mine = [run for run in runs if run.key == contender.key]
    return StorageCheck(
        key=contender.key,
        audit_rows=audit,
        answered=sum(run.load.requests for run in mine),
        prediction_rows=predictions,
        predicted_ok=sum(run.load.answered_ok * run.rows_per_request for run in mine),
        in_flight=sum(run.load.sent - run.load.requests for run in mine),
        in_flight_rows=sum(
            (run.load.sent - run.load.requests) * run.rows_per_request for run in mine
        ),
        database_bytes=database_bytes(contender.stack.database_url),
    )
