"""The contenders: what each one serves, with which request, and how it is started."""

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench import payloads
from bench.load import RequestSpec
from bench.procs import Server, free_port, start_server, wait_ready
from bench.stack import FailcastStack, PostgresAdmin, server_env

REPO_ROOT = Path(__file__).resolve().parents[1]
BODY_VARIANTS = 64
BATCH_VARIANTS = 4

Kind = Literal["reference", "floor", "graphql", "batch", "columns", "rest"]
Backend = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class Plan:
    """A contender as the options name it."""

    key: str
    title: str
    kind: Kind
    backend: Backend | None = None
    workers: int = 1
    explain: bool = False  # single-row `predict` selecting `explanation`


PLANS: tuple[Plan, ...] = (
    Plan("reference", "reference REST (FastAPI + pandas + predict_proba)", "reference"),
    Plan("floor", "empty Starlette endpoint (floor)", "floor"),
    Plan("sqlite", "failcast `predict`, auth + audit, SQLite", "graphql", "sqlite"),
    Plan(
        "sqlite-explain",
        "failcast `predict` + `explanation`, auth + audit, SQLite",
        "graphql",
        "sqlite",
        explain=True,
    ),
    Plan("postgres", "failcast `predict`, auth + audit, PostgreSQL", "graphql", "postgres"),
    Plan("batch-sqlite", "failcast `predictBatch` x{batch}, SQLite", "batch", "sqlite"),
    Plan("batch-postgres", "failcast `predictBatch` x{batch}, PostgreSQL", "batch", "postgres"),
    Plan("batch-columns-sqlite", "failcast `predictColumns` x{batch}, SQLite", "columns", "sqlite"),
    Plan(
        "batch-columns-postgres",
        "failcast `predictColumns` x{batch}, PostgreSQL",
        "columns",
        "postgres",
    ),
    Plan("rest", "failcast `POST /predict` (seed contract), SQLite", "rest", "sqlite"),
    Plan("postgres-2w", "failcast `predict`, PostgreSQL, 2 workers", "graphql", "postgres", 2),
)
BATCHES = ("batch-sqlite", "batch-postgres")  # predictBatch: what predictColumns is compared to
COLUMNS = ("batch-columns-sqlite", "batch-columns-postgres")
ALIASES = {
    "batch": (*BATCHES, *COLUMNS),  # every 1,000-row contender, compared in the same run
    "batch-rows": BATCHES,
    "batch-columns": COLUMNS,
    "workers": ("postgres-2w",),
    "explain": ("sqlite-explain",),
}
# Each predictColumns contender and the predictBatch one on its database (same rows, same run)
COLUMNS_VERSUS_ROWS = dict(zip(COLUMNS, BATCHES, strict=True))


def select(only: Sequence[str] | None) -> list[Plan]:
    """The plans named by --only (aliases expanded), plus what their ratios need."""
    known = {plan.key: plan for plan in PLANS}
    if not only:
        return list(PLANS)
    wanted = {"reference"}  # every ratio is to the reference, measured in the same run
    for name in only:
        keys = ALIASES.get(name, (name,))
        unknown = [key for key in keys if key not in known]
        if unknown:
            raise ValueError(f"unknown contender {name!r}; choose from {', '.join(known)}")
        wanted.update(keys)
    if "postgres-2w" in wanted:
        wanted.add("postgres")  # the 2-worker ratio is to 1 worker, in the same run
    if "sqlite-explain" in wanted:
        wanted.add("sqlite")  # `predict` with `explanation` against without, in the same run
    # predictColumns is measured against predictBatch on its database, in the same run
    wanted.update(rows for columns, rows in COLUMNS_VERSUS_ROWS.items() if columns in wanted)
    return [plan for plan in PLANS if plan.key in wanted]


@dataclass
class Contender:
    """A planned contender with its deployment, request and (once started) server."""

    plan: Plan
    workdir: Path
    batch_size: int
    stack: FailcastStack | None = None
    server: Server | None = None
    artifact: tuple[Path, str] | None = None  # the reference's model: file, sha256
    postgres: PostgresAdmin | None = None  # to read the CPU of its database's backends

    @property
    def key(self) -> str:
        """The contender's name in options and results."""
        return self.plan.key

    @property
    def title(self) -> str:
        """The row label of the table."""
        return self.plan.title.format(batch=f"{self.batch_size:,}")

    @property
    def rows_per_request(self) -> int:
        """Predictions one successful request makes."""
        return self.batch_size if self.plan.kind in ("batch", "columns") else 1

    @property
    def tail_measured(self) -> bool:
        """Whether the tail run measures it: single-row GraphQL `predict` on one process (the
        issue's target; its /metrics is the whole server's)."""
        plan = self.plan
        return self.stores and plan.kind == "graphql" and plan.workers == 1 and not plan.explain

    @property
    def stores(self) -> bool:
        """Whether the contender is failcast, which stores what it answers."""
        return self.stack is not None

    def request(self) -> RequestSpec:
        """The request its load runs send."""
        kind = self.plan.kind
        if kind in ("reference", "floor"):
            return RequestSpec("/predict", payloads.rest_bodies(BODY_VARIANTS))
        if kind == "rest":
            return RequestSpec("/predict", payloads.rest_bodies(BODY_VARIANTS), self._auth())
        if kind in ("batch", "columns"):
            return self.batch_request()
        explained = self.plan.explain
        document = payloads.EXPLAINED_PREDICT_DOCUMENT if explained else payloads.PREDICT_DOCUMENT
        return RequestSpec(
            "/graphql", payloads.predict_bodies(BODY_VARIANTS, document), self._auth()
        )

    def batch_request(self) -> RequestSpec:
        """A predictBatch request on this contender's failcast (also used to top up storage);
        a predictColumns contender's is predictColumns, with the same rows."""
        if self.plan.kind == "columns":
            bodies = payloads.columns_bodies(BATCH_VARIANTS, self.batch_size)
        else:
            bodies = payloads.batch_bodies(BATCH_VARIANTS, self.batch_size)
        return RequestSpec("/graphql", bodies, self._auth())

    def _auth(self) -> dict[str, str]:
        assert self.stack is not None
        return {"Authorization": f"Bearer {self.stack.token}"}

    def database_cpu(self) -> dict[int, float]:
        """CPU seconds of each PostgreSQL backend serving this contender (SQLite: none)."""
        if self.postgres is None or self.stack is None:
            return {}
        return self.postgres.backend_cpu(self.stack.database_url)

    def launch(self) -> Server:
        """Start the server on a free loopback port (see `wait_ready`)."""
        port = free_port()
        if self.stack is not None:
            command = self.stack.serve_command(port, self.plan.workers)
            env = self.stack.env
        else:
            command = _uvicorn(f"bench.{self.plan.kind}_service:create_app", port)
            env = server_env({"PYTHONPATH": str(REPO_ROOT), **self._artifact_env()})
        self.server = start_server(self.key, command, env, self.workdir, port)
        return self.server

    def wait_ready(self) -> None:
        """Wait until GET /readyz answers 200, several times in a row with several workers."""
        assert self.server is not None
        wait_ready(self.server, "/readyz", timeout=120, streak=3 * self.plan.workers)

    def _artifact_env(self) -> dict[str, str]:
        if self.artifact is None:
            return {}
        path, sha256 = self.artifact
        return {"BENCH_ARTIFACT_PATH": str(path), "BENCH_ARTIFACT_SHA256": sha256}


def _uvicorn(app: str, port: int) -> list[str]:
    # The same uvicorn (uvloop, httptools) and log level as `failcast serve` in the bench.
    return [
        sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1", "--log-level", "warning",
    ]  # fmt: skip
