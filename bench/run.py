"""One benchmark run: prepare every contender, start them, load them, check, report."""

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from bench.contenders import REPO_ROOT, Backend, Contender, Plan, select
from bench.load import ensure_wrk, wrk_version
from bench.machine import describe, ensure_extras
from bench.measure import (
    TAIL,
    Driver,
    LoadSettings,
    Memory,
    StorageCheck,
    check_storage,
    memory_of,
)
from bench.procs import paused, stop_server
from bench.report import Results, render
from bench.stack import PostgresAdmin, active_model, copy_sqlite, new_stack

REAL_DATA = Path(  # FAILCAST_BENCH_DATA, else where this workplace keeps the public dataset
    os.environ.get("FAILCAST_BENCH_DATA")
    or REPO_ROOT.parent / "shared" / "data" / "device_failure_subset.csv.gz"
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    """What `python -m bench` was asked to do."""

    seconds: int
    rounds: int
    connections: int
    batch_connections: int
    threads: int
    warmup_seconds: int
    pause_s: float
    only: list[str] | None
    batch_size: int
    soak_predictions: int
    real_data: bool
    tail_seconds: int
    pg_url: str
    output: Path


def _template(backend: Backend, root: Path, admin: PostgresAdmin | None, data: Path | None) -> str:
    """Migrate and train once per database kind; every contender then gets its own copy."""
    workdir = root / f"template-{backend}"
    workdir.mkdir()
    if backend == "postgres":
        assert admin is not None
        url = admin.create("template")
    else:
        url = f"sqlite:///{workdir / 'failcast.db'}"
    new_stack(f"template-{backend}", workdir, url).train(data)
    return url


def _deploy(contender: Contender, template: str, admin: PostgresAdmin | None) -> None:
    """The contender's own database (a copy of the template), secret and token."""
    if contender.plan.backend == "postgres":
        assert admin is not None
        url = admin.create(contender.key.replace("-", "_"), template=template)
    else:
        url = copy_sqlite(template, contender.workdir / "failcast.db")
    stack = new_stack(contender.key, contender.workdir, url)
    stack.cli("db", "upgrade")  # a no-op at head: checks the copy is complete
    stack.mint_token()
    contender.stack, contender.postgres = stack, admin


def prepare(
    plans: Sequence[Plan], root: Path, admin: PostgresAdmin | None, options: Options, log: Log
) -> tuple[list[Contender], str]:
    """Deploy every contender (database, migrations, model, token); say which model serves."""
    data = REAL_DATA if options.real_data else None
    if data is not None and not data.is_file():
        raise RuntimeError(f"--real-data: {data} is missing")
    contenders = []
    for plan in plans:
        (root / plan.key).mkdir()
        contenders.append(Contender(plan, root / plan.key, options.batch_size))
    backends: list[Backend] = [
        b for b in ("sqlite", "postgres") if any(p.backend == b for p in plans)
    ]
    log(f"db upgrade + train --activate once per database: {', '.join(backends or ['sqlite'])}")
    with ThreadPoolExecutor(max_workers=2) as pool:  # two CLI subprocesses at a time
        urls = list(pool.map(lambda b: _template(b, root, admin, data), backends or ["sqlite"]))
        templates = dict(zip(backends or ["sqlite"], urls, strict=True))
        failcast = [c for c in contenders if c.plan.backend is not None]
        log(f"deploying {len(failcast)} failcast contender(s): copy, db upgrade, token")
        list(pool.map(lambda c: _deploy(c, templates[c.plan.backend], admin), failcast))
    return contenders, _hand_model_to_reference(contenders, urls)


def _hand_model_to_reference(contenders: Sequence[Contender], urls: Sequence[str]) -> str:
    model = active_model(urls[0])
    original = active_model(urls[0], counters_only=True)
    digests = {active_model(url).sha256 for url in urls}
    for contender in contenders:
        if contender.plan.kind == "reference":
            path = contender.workdir / "model.joblib"
            path.write_bytes(original.artifact)
            contender.artifact = (path, original.sha256)
    data = "synthetic data" if model.synthetic else "real data"
    same = "the same artifact" if len(digests) == 1 else "ARTIFACTS DIFFER between databases"
    return (
        f"failcast serves {model.version} ({model.algorithm}, {data}, sha256 "
        f"{model.sha256[:12]}), trained once per database kind and copied to each contender's "
        f"database: {same} everywhere; the reference serves {original.version} "
        f"({original.algorithm} on the counters alone, as the original service, sha256 "
        f"{original.sha256[:12]})"
    )


def _postgres(
    plans: list[Plan], options: Options, notes: list[str], log: Log
) -> PostgresAdmin | None:
    if not any(plan.backend == "postgres" for plan in plans):
        return None
    admin = PostgresAdmin(options.pg_url)
    problem = admin.available()
    if problem is not None:
        notes.append(f"PostgreSQL contenders skipped: the server did not answer ({problem})")
        plans[:] = [plan for plan in plans if plan.backend != "postgres"]
        return None
    for name in admin.drop_leftovers():
        log(f"dropped {name}, left behind by an earlier run that was killed")
    return admin


def _method(options: Options, wrk: str, model: str, pg: str | None) -> str:
    return (
        f"{wrk_version(wrk)}, {options.threads} thread, {options.connections} connections "
        f"({options.batch_connections} for predictBatch and predictColumns: 1,000-row requests "
        "would only queue), "
        f"{options.seconds} s per run, {options.rounds} interleaved round(s) (every contender "
        f"once per round, the order rotated each round), {options.warmup_seconds} s warm-up "
        f"each; medians [min-max] over rounds; ratios per round to row 1; after every run its "
        f"writes are flushed (sync, and CHECKPOINT on PostgreSQL) so that the next run does not "
        f"pay for them. Servers: uvicorn "
        f"(uvloop, httptools) on 127.0.0.1, 1 worker unless said, log level warning (no access "
        f"log); failcast with FAILCAST_ENV=production. Model: {model}. "
        f"PostgreSQL: {pg or 'not used'}. CPU: utime+stime from /proc of the server's process "
        "tree, of the PostgreSQL backends connected to the contender's database, and of wrk; "
        "'cores busy' is each of those divided by the run's duration, and 'rest of machine' "
        f"is what every other process used meanwhile (from /proc/stat; the machine has "
        f"{os.cpu_count()} cores: more than 0 means the measurement shared them); 'loop' is "
        "the share of the run a single-process failcast server's event loop thread was on a "
        "CPU (its first thread, from /proc/<pid>/task): what is left of 1.00 it waited, for the "
        "GIL or for the group commit that every request in flight waits on"
    )


def run(options: Options, log: Log) -> str:
    """Run the benchmark; return the Markdown report (also written to options.output)."""
    wrk = ensure_wrk()
    ensure_extras()
    plans, notes = select(options.only), list[str]()
    with ExitStack() as cleanup:
        root = Path(tempfile.mkdtemp(prefix="failcast-bench-"))
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        admin = _postgres(plans, options, notes, log)
        if admin is not None:
            cleanup.callback(admin.drop_all)
        contenders, model = prepare(plans, root, admin, options, log)
        log(f"starting {len(contenders)} servers")
        for contender in contenders:
            cleanup.callback(stop_server, contender.launch())
        for contender in contenders:
            contender.wait_ready()
        driver = Driver(_load_settings(options, wrk), root, log, partial(_settle, admin))
        memory, storage = _measure(driver, contenders, options, log)
        pg = admin.version() if admin else None
    results = Results(
        contenders, driver.runs, memory, storage,
        describe({"load generator": wrk_version(wrk)}), _method(options, wrk, model, pg), notes,
        options.soak_predictions,
    )  # fmt: skip
    return _write(results, options.output)


def _settle(admin: PostgresAdmin | None) -> None:
    # A batch run leaves hundreds of MB of dirty pages behind (SQLite's in the OS cache,
    # PostgreSQL's in shared buffers); flushed during the next contender's run, they would be
    # measured as that contender's slowness.
    os.sync()
    if admin is not None:
        admin.checkpoint()


def _load_settings(options: Options, wrk: str) -> LoadSettings:
    return LoadSettings(
        wrk=wrk,
        seconds=options.seconds,
        warmup_seconds=options.warmup_seconds,
        connections=options.connections,
        batch_connections=options.batch_connections,
        threads=options.threads,
        pause_s=options.pause_s,
    )


def _measure(
    driver: Driver, contenders: Sequence[Contender], options: Options, log: Log
) -> tuple[list[Memory], list[StorageCheck]]:
    """Warm up, run the rounds, top up and read memory, stop the servers, check storage."""
    log("warm-up")
    driver.warm_up(contenders)
    log("rounds")
    driver.rounds(contenders, options.rounds)
    if options.tail_seconds:
        for contender in contenders:
            if contender.tail_measured:
                others = [c.server for c in contenders if c is not contender and c.server]
                with paused(others):  # the tail of this server alone on the machine
                    run = driver.run(contender, TAIL, options.tail_seconds)
                log(f"  tail {contender.key}: {run.load.per_second:,.0f}/s, p50 "
                    f"{run.load.p50_ms:.1f} ms, p99 {run.load.p99_ms:.1f} ms")  # fmt: skip
    memory = _memory(driver, contenders, options.soak_predictions, log)
    for contender in contenders:
        assert contender.server is not None
        stop_server(contender.server)  # a graceful stop commits whatever is queued
    return memory, [check_storage(c, driver.runs) for c in contenders if c.stores]


def _write(results: Results, output: Path) -> str:
    """Write the Markdown report and the raw measurements beside it (.json); return the report."""
    report = render(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report, encoding="utf-8")
    raw = {
        "runs": [asdict(run) for run in results.runs],
        "memory": [asdict(item) for item in results.memory],
        "storage": [asdict(check) for check in results.storage],
    }
    output.with_suffix(".json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    return report


def _memory(driver: Driver, contenders: Sequence[Contender], soak: int, log: Log) -> list[Memory]:
    found = []
    for contender in contenders:
        stored = None
        if contender.stores:
            # Batch servers are nearly there already; the 2-worker one is the deployment shape.
            # Topping up the others too would cost minutes for the same code path.
            if contender.rows_per_request > 1 or contender.plan.workers > 1:
                log(f"topping {contender.key} up to {soak:,} stored predictions")
                stored = driver.top_up(contender, soak)
            else:
                stored = driver.top_up(contender, 0)
        found.append(memory_of(contender, stored))
    return found
