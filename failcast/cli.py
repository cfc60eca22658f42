"""`failcast`: serve, train, token, db, models, evaluate, outcomes, audit, export (exit codes)."""

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import date

from failcast import commands
from persistence import PersistenceError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _day(text: str) -> date:
    """A YYYY-MM-DD day (argparse type): anything else is a usage error (exit 2)."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from None


def _serve(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="serve the API with uvicorn")
    p.add_argument("--host", help="bind address (default FAILCAST_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default FAILCAST_PORT or 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.set_defaults(run=commands.serve)


def _train(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("train", help="train, evaluate and register a model version (train extra)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", help="dataset CSV (.csv or .csv.gz); default: synthetic data")
    source.add_argument(
        "--from-database",
        action="store_true",
        help="train on the predictions and outcomes stored in FAILCAST_DATABASE_URL: one row "
        "per device and UTC day (its latest prediction), failed if its outcome says so",
    )
    p.add_argument(
        "--from",
        dest="date_from",
        type=_day,
        metavar="YYYY-MM-DD",
        help="with --from-database: predictions observed on or after this day (00:00 UTC)",
    )
    p.add_argument(
        "--to",
        dest="date_to",
        type=_day,
        metavar="YYYY-MM-DD",
        help="with --from-database: predictions observed before this day (00:00 UTC)",
    )
    p.add_argument(
        "--algorithm",
        choices=["decision_tree", "logistic_regression", "hist_gradient_boosting", "blend"],
        help="train only this one (default: all, register the best by cross-validation)",
    )
    p.add_argument(
        "--horizon-days",
        type=int,
        default=1,
        help="a row is a failure when its device fails within N days (default 1: that day)",
    )
    p.add_argument(
        "--feature-set",
        help="use this history feature set (default: chosen by cross-validation)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--min-recall", type=float, help="pick the threshold reaching this recall")
    p.add_argument(
        "--max-depth", type=int, help="decision-tree depth (default: chosen by cross-validation)"
    )
    p.add_argument(
        "--cv-folds",
        type=int,
        default=5,
        help="grouped cross-validation folds for the choices and calibration (default 5; 0: "
        "none: the counters, default settings, uncalibrated, as failcast trained before)",
    )
    p.add_argument(
        "--no-refit",
        dest="refit",
        action="store_false",
        help="serve the selected model as fitted on the training devices (default: refitted on "
        "every device once the test devices are scored)",
    )
    p.add_argument("--activate", action="store_true", help="make the new version active")
    p.add_argument(
        "--if-no-active",
        action="store_true",
        help="do nothing when a version is already active (for make serve)",
    )
    p.add_argument("--report-dir", default="artifacts", help="where reports go (default artifacts)")
    p.set_defaults(run=commands.train)


def _token(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("token", help="mint a development token with the configured secret")
    p.add_argument("--subject", required=True, help="the token's subject (sub)")
    p.add_argument("--scope", default="", help='space-separated scopes, e.g. "predict"')
    p.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 7d (default 1h)")
    p.set_defaults(run=commands.token)


def _db(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("db", help="database schema")
    dsub = p.add_subparsers(dest="db_command", required=True)
    up = dsub.add_parser("upgrade", help="apply the Alembic migrations up to head")
    up.add_argument("--revision", default="head")
    up.set_defaults(run=commands.db_upgrade)


def _models(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("models", help="the model registry")
    msub = p.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="list model versions").set_defaults(run=commands.models_list)
    act = msub.add_parser("activate", help="make a version the active one (checked first)")
    act.add_argument("version")
    act.add_argument("--reason", help="why (kept in the activation history)")
    act.set_defaults(run=commands.models_activate)
    back = msub.add_parser("rollback", help="re-activate the version active before this one")
    back.add_argument("--reason", help="why (kept in the activation history)")
    back.set_defaults(run=commands.models_rollback)
    hist = msub.add_parser("history", help="switches of the active version, newest first")
    hist.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    hist.set_defaults(run=commands.models_history)


def _evaluate(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "evaluate",
        help="score a registered version on a labeled dataset, store the run, gate it (train "
        "extra); exit 1 when recall or precision fall more than the tolerance below training's",
    )
    p.add_argument("version")
    p.add_argument("--data", required=True, help="dataset CSV (.csv or .csv.gz)")
    p.add_argument(
        "--held-out",
        action="store_true",
        help="score only the version's test devices (the data must be its training file)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        help="absolute drop allowed (default FAILCAST_PERFORMANCE_TOLERANCE, 0.1)",
    )
    p.set_defaults(run=commands.evaluate)


def _outcomes(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("outcomes", help="what really happened to devices")
    osub = p.add_subparsers(dest="outcomes_command", required=True)
    imp = osub.add_parser(
        "import",
        help="record the outcomes of a file in the public dataset's format (date, device, "
        "failure; .csv or .csv.gz): one per device and day, idempotent",
    )
    imp.add_argument("file", metavar="FILE")
    imp.set_defaults(run=commands.outcomes_import)


def _audit(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("audit", help="the audit trail's seals")
    asub = p.add_subparsers(dest="audit_command", required=True)
    seal = asub.add_parser("seal", help="seal audit events older than the lag")
    seal.add_argument("--lag", type=float, help="seconds (default FAILCAST_AUDIT_SEAL_LAG_SECONDS)")
    seal.set_defaults(run=commands.audit_seal)
    verify = asub.add_parser("verify", help="report rows altered, deleted or inserted")
    verify.set_defaults(run=commands.audit_verify)


def _export(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("export", help="export stored data, straight from the database")
    esub = p.add_subparsers(dest="export_command", required=True)
    predictions = esub.add_parser(
        "predictions",
        help="predictions as CSV, oldest first: the rows and bytes of GET /exports/predictions.csv",
    )
    times = {
        "--observed-from": "telemetry taken at or after T (ISO 8601 with a UTC offset)",
        "--observed-to": "telemetry taken before T",
        "--created-from": "predictions made at or after T",
        "--created-to": "predictions made before T",
    }
    for flag, text in times.items():
        predictions.add_argument(flag, metavar="T", help=text)
    predictions.add_argument("--device-prefix", metavar="P", help="device ids starting with P")
    predictions.add_argument("--model-version", metavar="V", help="predictions of version V")
    predictions.add_argument("--output", metavar="FILE", help="write to FILE (default stdout)")
    predictions.set_defaults(run=commands.export_predictions)


def parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    root = argparse.ArgumentParser(prog="failcast", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)
    for add in (_serve, _train, _token, _db, _models, _evaluate, _outcomes, _audit, _export):
        add(sub)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; return its exit code."""
    args = parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except commands.CommandError as error:
        print(f"failcast: {error}", file=sys.stderr)
        return error.exit_code
    except PersistenceError as error:
        cause = getattr(error.__cause__, "orig", error.__cause__)
        detail = str(cause).splitlines()[0] if cause else "no detail"
        print(f"failcast: database: {error} ({detail})", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
