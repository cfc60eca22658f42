"""What each CLI command does: thin calls into the packages."""

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.engine import Engine
from sqlmodel import Session

from auth import ALL_SCOPES, AuthError, generate_secret, mint_token, parse_scopes_strict, parse_ttl
from failcast import workers
from graph.errors import FailcastError
from graph.runtime.export import MAX_NAME, check_text, parse_time, write_csv
from graph.runtime.lifecycle import check_reason
from graph.runtime.models import verified
from graph.runtime.usecases import MAX_DEVICE_ID
from graph.settings import DEV_SECRET_FILE, Settings, SettingsError
from model import ModelError
from persistence import (
    ModelVersion,
    ModelVersionRepository,
    NotFound,
    PersistenceError,
    PredictionFilter,
    create_db_engine,
    lifecycle,
    seal_pending,
    sealed_count,
    session_scope,
    verify_seals,
)
from persistence.outcomes import OutcomeRecord, count_outcomes, upsert_outcomes

# The `train` extra: `pip install .` serves without it; train and evaluate need it.
TRAINING_STACK = ("sklearn", "matplotlib")
EXIT_GATE_FAILED = 1  # failcast evaluate: scored, and below the training figures (a failed check)
NEEDS_TRAIN_EXTRA = "training needs the train extra: pip install 'failcast[train]'"


class CommandError(Exception):
    """A command failed; the message says why, the exit code says how."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _require_training_stack() -> None:
    """Refuse (exit 2) before any work when the train extra is not installed."""
    # matplotlib is imported only when the report is drawn, after training: check both up front.
    for name in TRAINING_STACK:
        try:
            missing = importlib.util.find_spec(name) is None
        except ImportError:  # an import hook refusing the name
            missing = True
        if missing:
            raise CommandError(NEEDS_TRAIN_EXTRA, 2)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as error:
        raise CommandError(f"invalid FAILCAST_* settings: {error}", 2) from error


def _ensure_dev_secret(settings: Settings) -> Settings:
    """In development with no key at all, make (once) and use a local random secret."""
    if settings.production or settings.secret() or settings.jwt_public_key or settings.jwt_jwks_url:
        return settings
    path = settings.jwt_secret_file or DEV_SECRET_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(generate_secret() + "\n", encoding="utf-8")
        path.chmod(0o600)
    os.environ["FAILCAST_JWT_SECRET_FILE"] = str(path.resolve())  # inherited by workers
    return Settings()


def serve(args: argparse.Namespace) -> int:
    """Check the settings, print a development token if useful, and run uvicorn."""
    import uvicorn

    from graph.edge.connections import http_options

    settings = _ensure_dev_secret(_settings())
    try:
        settings.check_startable()
    except SettingsError as error:
        raise CommandError(str(error), 2) from error
    if not settings.production and settings.secret():
        token = mint_token(settings.auth_config(), "developer", ALL_SCOPES, timedelta(hours=12))
        print(f"Development token (every scope, 12 h):\n  {token}\n", file=sys.stderr)
    host, port = args.host or settings.host, args.port or settings.port
    options: dict[str, Any] = {
        "app": "graph.app:create_app_from_env",
        "factory": True,
        "log_level": settings.log_level,
        "log_config": None,  # graph.logs configures logging in each worker
        "access_log": False,  # failcast.request logs one line per request instead
        "proxy_headers": False,
        # The connection guards (header timeout and size, connection cap); an import string,
        # so each worker builds the protocol from its own FAILCAST_* environment.
        **http_options(settings),
    }
    if args.workers > 1 and workers.reuse_port_available():
        return workers.supervise(host, port, args.workers, options)  # a socket per worker
    uvicorn.run(host=host, port=port, workers=args.workers, **options)
    return 0


def token(args: argparse.Namespace) -> int:
    """Mint a token signed with the configured secret."""
    settings = _settings()
    try:
        scopes = parse_scopes_strict(args.scope)
        minted = mint_token(settings.auth_config(), args.subject, scopes, parse_ttl(args.ttl))
    except AuthError as error:
        raise CommandError(str(error), 2) from error
    print(minted)
    return 0


def db_upgrade(args: argparse.Namespace) -> int:
    """Apply migrations."""
    from failcast.migrations import upgrade

    settings = _settings()
    try:
        upgrade(settings.database_url, args.revision)
    except Exception as error:
        raise CommandError(f"migration failed: {error}") from error
    print(f"database at {args.revision}")
    return 0


def models_list(args: argparse.Namespace) -> int:
    """Print the registry."""
    with _session() as session:
        rows = ModelVersionRepository(session).list_all()
    if not rows:
        print("no model versions; run `failcast train --activate`")
    for row in rows:
        mark = "*" if row.is_active else " "
        pr_auc = row.metrics.get("test", {}).get("pr_auc")
        synthetic = " synthetic" if row.trained_on_synthetic_data else ""
        print(
            f"{mark} {row.version:<16} {row.algorithm:<22} threshold={row.threshold:.4f} "
            f"horizon={row.horizon_days}d test_pr_auc={pr_auc}{synthetic}"
        )
    return 0


def models_activate(args: argparse.Namespace) -> int:
    """Make a version active, once it is known to load and score its golden set."""
    _check_reason(args.reason)
    with _session() as session:
        repo = ModelVersionRepository(session)
        before = lifecycle.active_id(session)
        try:
            _check_servable(repo.get(args.version, with_artifact=True))
            row = repo.activate(args.version, via="cli", reason=args.reason)
        except NotFound as error:
            raise CommandError(str(error)) from error
    _print_switch(row.version, row.id == before)
    return 0


def models_rollback(args: argparse.Namespace) -> int:
    """Re-activate the version that was active before the current one."""
    _check_reason(args.reason)
    with _session() as session:
        repo = ModelVersionRepository(session)
        previous = lifecycle.previous_id(session)
        if previous is None:
            raise CommandError(
                "no version was active before the current one: nothing to roll back to"
            )
        target = repo.get(repo.get_many([previous])[previous].version, with_artifact=True)
        _check_servable(target)
        row = repo.rollback(via="cli", reason=args.reason)
    _print_switch(row.version, False)
    return 0


def models_history(args: argparse.Namespace) -> int:
    """Print the activation history, newest first."""
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    with _session() as session:
        entries = lifecycle.activation_page(session, args.limit, None)
    if not entries:
        print("no model version has been activated yet")
    for e in entries:
        who = e.subject or e.via
        reason = f"  {e.reason}" if e.reason else ""
        switch = f"{e.from_version or '-'} -> {e.to_version}"
        print(f"{e.activated_at:%Y-%m-%dT%H:%M:%SZ} {switch} ({who}){reason}")
    return 0


def _check_reason(reason: str | None) -> None:
    try:
        check_reason(reason)
    except FailcastError as error:
        raise CommandError(error.message.replace("reason", "--reason", 1), 2) from error


def _check_servable(row: ModelVersion) -> None:
    try:
        verified(row)
    except ModelError as error:
        raise CommandError(f"model version {row.version} cannot be served: {error}") from error


def _print_switch(version: str, unchanged: bool) -> None:
    print(f"{version} was already active" if unchanged else f"{version} is active")


@contextmanager
def _session() -> Iterator[Session]:
    engine = create_db_engine(_settings().database_url)
    try:
        with session_scope(engine) as session:
            yield session
    except PersistenceError as error:
        raise CommandError(f"database: {error}") from error
    finally:
        engine.dispose()


def train(args: argparse.Namespace) -> int:
    """Train, evaluate, register (and maybe activate) a model version."""
    engine = create_db_engine(_settings().database_url)
    if args.if_no_active:
        with session_scope(engine) as session:
            active = ModelVersionRepository(session).active()
        if active is not None:  # nothing to train, so a serving-only install may answer too
            print(f"model version {active.version} is active; nothing to train")
            return 0
    _require_training_stack()
    return _train(args, engine)


def _train(args: argparse.Namespace, engine: Engine) -> int:
    from training import TrainingError, TrainOptions
    from training import train as run_training

    options = TrainOptions(
        data_path=Path(args.data) if args.data else None,
        from_database=args.from_database,
        date_from=args.date_from,
        date_to=args.date_to,
        algorithm=args.algorithm,
        seed=args.seed,
        min_recall=args.min_recall,
        max_depth=args.max_depth,
        horizon_days=args.horizon_days,
        feature_set=args.feature_set,
        refit=args.refit,
        cv_folds=args.cv_folds,
        activate=args.activate,
        report_dir=Path(args.report_dir),
    )
    try:
        outcome = run_training(options, engine, progress=lambda m: print(m, file=sys.stderr))
    except TrainingError as error:
        raise CommandError(str(error), 2) from error
    except PersistenceError as error:
        raise CommandError(f"database: {error}") from error
    state = "active" if outcome.activated else "registered (not active)"
    name = f"{outcome.version} ({outcome.algorithm})"
    print(f"model version {name} {state}; report: {outcome.report_path}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Score a registered version on a dataset, store the run, print it as JSON; gate it."""
    import json

    _require_training_stack()
    from training import TrainingError, evaluate_version

    settings = _settings()
    tolerance = settings.performance_tolerance if args.tolerance is None else args.tolerance
    if not 0.0 <= tolerance <= 1.0:
        raise CommandError("--tolerance must be between 0 and 1", 2)
    engine = create_db_engine(settings.database_url)
    try:
        result = evaluate_version(
            engine, args.version, Path(args.data), held_out=args.held_out, tolerance=tolerance
        )
    except (TrainingError, NotFound) as error:
        raise CommandError(str(error), 2) from error
    except ModelError as error:
        raise CommandError(f"model version {args.version} refused: {error}") from error
    except PersistenceError as error:
        raise CommandError(f"database: {error}") from error
    finally:
        engine.dispose()
    print(json.dumps(result, indent=2, default=str))
    gate = result["gate"]
    if not gate["passed"]:
        findings = "; ".join(gate["findings"])
        raise CommandError(f"{args.version} fails the gate: {findings}", EXIT_GATE_FAILED)
    return 0


def outcomes_import(args: argparse.Namespace) -> int:
    """Record the outcomes of a file in the public dataset's format (idempotent)."""
    from failcast.outcomes import BATCH, ImportSummary, OutcomeFileError, read_outcomes

    engine = create_db_engine(_settings().database_url)
    summary = ImportSummary()
    batch: list[OutcomeRecord] = []
    try:
        with session_scope(engine) as session:  # one transaction: a bad row stores nothing
            before = count_outcomes(session)
            connection = session.connection()
            for record in read_outcomes(Path(args.file), datetime.now(UTC)):
                summary.count(record)
                batch.append(record)
                if len(batch) == BATCH:
                    upsert_outcomes(connection, batch)
                    batch.clear()
            upsert_outcomes(connection, batch)
            added = count_outcomes(session) - before
    except OutcomeFileError as error:
        raise CommandError(f"{error}; nothing was imported", 2) from error
    except PersistenceError as error:
        raise CommandError(f"database: {error}; nothing was imported") from error
    finally:
        engine.dispose()
    if not summary.rows:
        print("no outcomes in the file")
        return 0
    print(
        f"imported {summary.rows} outcomes ({summary.failed} failed) of {len(summary.devices)} "
        f"devices, {summary.first} to {summary.last}: {added} new, {summary.rows - added} "
        "already recorded (replaced)"
    )
    return 0


def audit_seal(args: argparse.Namespace) -> int:
    """Seal pending audit events."""
    settings = _settings()
    lag = settings.audit_seal_lag_seconds if args.lag is None else args.lag
    engine = create_db_engine(settings.database_url)
    try:
        sealed = seal_pending(engine, lag_seconds=lag)
        total = sealed_count(engine)
    except PersistenceError as error:
        raise CommandError(f"database: {error}") from error
    print(f"sealed {sealed} audit events ({total} sealed in all)")
    return 0


def audit_verify(args: argparse.Namespace) -> int:
    """Verify every seal; exit 1 when anything was tampered with."""
    engine = create_db_engine(_settings().database_url)
    try:
        report = verify_seals(engine)
    except PersistenceError as error:
        raise CommandError(f"database: {error}") from error
    print(f"checked {report.blocks} sealed blocks, {report.events} audit events")
    for kind in ("altered", "deleted", "inserted"):
        for event_id in getattr(report, kind):
            print(f"  {kind}: audit event {event_id}")
    for sequence in report.broken_chain:
        print(f"  broken chain at seal {sequence}")
    print("OK: the sealed audit trail is intact" if report.ok else "TAMPERED")
    return 0 if report.ok else 1


_EXPORT_TIMES = {  # option -> PredictionFilter field
    "observed_from": "--observed-from",
    "observed_to": "--observed-to",
    "created_from": "--created-from",
    "created_to": "--created-to",
}


def _export_filter(args: argparse.Namespace) -> PredictionFilter:
    """The filter the options describe; exit 2 naming the first bad one."""
    try:
        given: dict[str, Any] = {
            field: parse_time(getattr(args, field), option)
            for field, option in _EXPORT_TIMES.items()
            if getattr(args, field) is not None
        }
        if args.device_prefix is not None:
            prefix = check_text(args.device_prefix, "--device-prefix", MAX_DEVICE_ID)
            given["device_id_prefix"] = prefix
        if args.model_version is not None:
            version = check_text(args.model_version, "--model-version", MAX_NAME)
            given["model_version"] = version
    except FailcastError as error:
        raise CommandError(error.message.replace("`", ""), 2) from error
    return PredictionFilter(**given)


def export_predictions(args: argparse.Namespace) -> int:
    """Write the predictions the options select as CSV, read straight from the database."""
    where = _export_filter(args)
    engine = create_db_engine(_settings().database_url)
    try:
        if args.output is None:
            rows = _export_to_stdout(engine, where)
        else:
            rows = _export_to_file(engine, where, Path(args.output))
    finally:
        engine.dispose()
    print(f"exported {rows} predictions", file=sys.stderr)
    return 0


def _export_to_stdout(engine: Engine, where: PredictionFilter) -> int:
    out: BinaryIO = sys.stdout.buffer
    try:
        rows = write_csv(engine, where, out.write)
        out.flush()
    except PersistenceError as error:
        raise CommandError(f"database: {error}; the output is incomplete") from error
    except BrokenPipeError as error:  # the reader left (e.g. `| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail
        raise CommandError("the output was closed before the end", 1) from error
    return rows


def _export_to_file(engine: Engine, where: PredictionFilter, target: Path) -> int:
    """Write next to `target`, then rename: a failed export leaves no file that looks whole."""
    partial = tempfile.NamedTemporaryFile(  # noqa: SIM115 (renamed or removed below)
        dir=target.parent, prefix=f".{target.name}.", suffix=".partial", delete=False
    )
    try:
        with partial:
            rows = write_csv(engine, where, partial.write)
        os.replace(partial.name, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(partial.name)
        if isinstance(error, PersistenceError):
            raise CommandError(f"database: {error}; {target} was not written") from error
        raise
    return rows
