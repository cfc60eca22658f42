"""The serving runtime: the long-lived parts a request uses, and the use cases built on them.

`Runtime` is built once per application by `graph.app` (the composition root) and handed to the
HTTP edge and the GraphQL schema explicitly; nothing here knows HTTP or GraphQL.
"""

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from auth import TokenVerifier
from graph.runtime.alerts import Alerts
from graph.runtime.histories import DeviceHistories
from graph.runtime.metrics import Metrics
from graph.runtime.models import ModelService
from graph.runtime.ratelimit import RateLimiter
from graph.runtime.recorder import Recorder
from graph.runtime.tally import RefusalTally
from graph.runtime.webhooks import Deliveries
from graph.runtime.writers import WriterProcesses
from graph.settings import Settings


@dataclass(frozen=True)
class Runtime:
    """Everything a request handler needs, built once per application."""

    settings: Settings
    engine: Engine
    exports: Engine  # reads of CSV exports only: a small pool of their own
    writes: Engine  # the group commits' (SQLite: one connection of their own; else `engine`)
    verifier: TokenVerifier
    models: ModelService
    recorder: Recorder
    limiter: RateLimiter  # per subject and scope
    anonymous: RateLimiter  # per client address, for requests without a valid token
    tally: RefusalTally  # anonymous refusals beyond their limit, counted instead of audited
    metrics: Metrics
    alerts: Alerts  # live alerts: this process's subscribers and how predictions reach them
    deliveries: Deliveries  # webhooks: the target policy and this process's delivery worker
    histories: DeviceHistories  # devices' earlier observations, for history features
    # the processes that write the group commits (a SQLite file), or None: `writes`, in threads
    writer_processes: WriterProcesses | None = None
