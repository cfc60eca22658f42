"""Use cases of model monitoring: input drift, outcomes, live performance, evaluation runs.

Every read runs off the event loop in a session of its own (`usecases.read`); the SQL is in
persistence (drift.py, outcomes.py, evaluations.py), the numbers in model (drift.py,
performance.py). An outcome is not written here: it is queued on the request's audit record and
committed with the audit row, like predictions.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session

from graph.errors import ErrorCode, FailcastError, bad_input
from graph.runtime.audit import RequestAudit
from graph.runtime.usecases import check_device_id, check_observed_at, read
from graph.settings import Settings
from model import DEVICE_FEATURES
from model.drift import DriftStatus, ks_2samp, psi, psi_status, worst
from model.performance import (
    RankingSums,
    comparable,
    compare_with_training,
    threshold_figures,
)
from persistence import (
    ModelEvaluation,
    ModelVersion,
    ModelVersionRepository,
    NotFound,
    session_scope,
)
from persistence import drift as drift_sql
from persistence import evaluations as evaluation_sql
from persistence import outcomes as outcome_sql


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift over a window."""

    feature: str
    psi: float | None  # None: no prediction in the window
    ks: float | None
    ks_p_value: float | None
    status: DriftStatus


@dataclass(frozen=True)
class DriftReport:
    """A version's input drift over [start, end)."""

    model_version: str
    start: datetime
    end: datetime
    status: DriftStatus
    sample_size: int  # predictions in the window (what PSI counts)
    ks_sample_size: int  # of them, the rows the KS test read
    min_sample: int
    features: list[FeatureDrift]


@dataclass(frozen=True)
class Window:
    """A time window [start, end); start None: since the first prediction."""

    start: datetime | None
    end: datetime


def window(start: datetime | None, end: datetime | None, default_span: timedelta | None) -> Window:
    """The window the arguments describe: `end` defaults to now, `start` to end - default_span."""
    for value, name in ((start, "from"), (end, "to")):
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise bad_input(f"`{name}` needs a UTC offset (e.g. 2026-11-29T08:00:00Z)", name)
    upper = datetime.now(UTC) if end is None else end.astimezone(UTC)
    if start is None and default_span is not None:
        start = upper - default_span
    lower = None if start is None else start.astimezone(UTC)
    if lower is not None and lower >= upper:
        raise bad_input("`from` must be before `to`", "from")
    return Window(lower, upper)


def _version(session: Session, name: str | None) -> ModelVersion:
    """The named version, or the active one; NOT_FOUND when there is none."""
    repo = ModelVersionRepository(session)
    if name is None:
        active = repo.active()
        if active is None:
            message = "no model version is active: name one in `modelVersion`"
            raise FailcastError(ErrorCode.NOT_FOUND, message, field="modelVersion")
        return active
    try:
        return repo.get(name)
    except NotFound as error:
        message = f"no model version {name!r}"
        raise FailcastError(ErrorCode.NOT_FOUND, message, field="modelVersion") from error


def _drift(
    session: Session, version: ModelVersion, span: Window, min_sample: int, sample_limit: int
) -> DriftReport:
    profile = version.input_profile
    if not profile or not profile.get("features"):
        message = (
            f"model version {version.version} has no input profile (it was registered before "
            "profiles existed): its drift cannot be measured; retrain it to get one"
        )
        raise bad_input(message, "modelVersion")
    assert version.id is not None and span.start is not None
    described = profile["features"]
    # The telemetry counters the predictions store (history features are made from them).
    names = [n for n in version.feature_names if n in described and n in DEVICE_FEATURES]
    edges = {name: described[name]["bins"]["edges"] for name in names}
    total, bins = drift_sql.window_bins(session, version.id, span.start, span.end, edges)
    sample = drift_sql.window_sample(
        session, version.id, span.start, span.end, names, total, sample_limit
    )
    features = []
    for i, name in enumerate(names):
        if total == 0:
            features.append(FeatureDrift(name, None, None, None, DriftStatus.INSUFFICIENT_DATA))
            continue
        value = psi(bins[name], described[name]["bins"]["shares"])
        reference = np.asarray(described[name]["sample"], dtype=np.float64)
        d, p_value = ks_2samp(reference, sample[:, i])
        features.append(FeatureDrift(name, value, d, p_value, psi_status(value, total, min_sample)))
    overall = worst([f.status for f in features])
    if total < min_sample:
        overall = DriftStatus.INSUFFICIENT_DATA
    return DriftReport(
        version.version, span.start, span.end, overall, total, len(sample), min_sample, features
    )


async def drift(
    engine: Engine, settings: Settings, version: str | None, span: Window
) -> DriftReport:
    """A version's (default: the active one's) input drift over a window."""
    return await read(
        engine,
        lambda s: _drift(
            s, _version(s, version), span, settings.drift_min_sample, settings.drift_sample
        ),
    )


def active_drift(engine: Engine, settings: Settings) -> DriftReport | None:
    """The active version's drift over the trailing window, from its latest
    `drift_gauge_rows` predictions when it holds more (for the gauges: their cost stays bounded
    however busy the server is); None: no version is active, or it has no profile. Blocking:
    run it off the event loop."""
    span = window(None, None, timedelta(hours=settings.drift_window_hours))
    with session_scope(engine) as session:
        version = ModelVersionRepository(session).active()
        if version is None or not version.input_profile:
            return None
        assert version.id is not None
        latest = drift_sql.latest_start(
            session, version.id, span.start, span.end, settings.drift_gauge_rows
        )
        if latest is not None:
            span = Window(latest, span.end)
        return _drift(session, version, span, settings.drift_min_sample, settings.drift_sample)


@dataclass(frozen=True)
class RecordedOutcome:
    """An outcome as stored (or about to be, with the request's audit row)."""

    device_id: str
    failed: bool
    observed_at: datetime
    day: date
    labeled_predictions: int


async def record_outcome(
    engine: Engine,
    audit: RequestAudit,
    device_id: str,
    failed: bool,
    observed_at: datetime,
    horizon_days: int,
) -> RecordedOutcome:
    """Check an outcome, count the predictions it labels, and queue it with the audit row."""
    check_device_id(device_id, "deviceId")
    check_observed_at(observed_at, "observedAt")
    moment = observed_at.astimezone(UTC)
    covered = await read(
        engine, lambda s: outcome_sql.covered_predictions(s, device_id, moment, horizon_days)
    )
    record = outcome_sql.OutcomeRecord(device_id, failed, moment, datetime.now(UTC), audit.subject)
    audit.add_effect(record)
    return RecordedOutcome(device_id, failed, moment, record.day, covered)


@dataclass(frozen=True)
class Performance:
    """A version's predictions in a window, against the outcomes that label them."""

    model_version: str
    window: Window
    labeled: int
    unlabeled: int
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    figures: dict[str, float | None]  # precision .. false_negative_rate, roc_auc, pr_auc
    training: dict[str, Any] | None  # the version's test-set figures (metrics["test"])
    tolerance: float
    min_failures: int
    degraded: bool | None
    verdict: str
    findings: list[str] = field(default_factory=list)

    @property
    def labeled_failures(self) -> int:
        """Labeled predictions whose device failed."""
        return self.true_positives + self.false_negatives


def _performance(
    session: Session, version: ModelVersion, span: Window, settings: Settings
) -> Performance:
    assert version.id is not None
    total = outcome_sql.window_count(session, version.id, span.start, span.end)
    sums = RankingSums()
    tp = fp = 0
    for batch in outcome_sql.labeled_groups(
        session, version.id, span.start, span.end, settings.outcome_horizon_days
    ):
        counts = batch[:, 1:].astype(np.int64)
        sums.add(counts[:, 0], counts[:, 1])
        tp += int(counts[:, 2].sum())
        fp += int(counts[:, 3].sum())
    fn, tn = sums.positives - tp, sums.negatives - fp
    figures = {**threshold_figures(tp, fp, tn, fn), "roc_auc": sums.roc_auc, "pr_auc": sums.pr_auc}
    training = (version.metrics or {}).get("test")
    degraded, verdict, findings = _verdict(figures, training, sums.positives, settings)
    labeled = sums.positives + sums.negatives
    return Performance(
        version.version, span, labeled, total - labeled, tp, fp, tn, fn, figures,
        training if isinstance(training, dict) else None,
        settings.performance_tolerance, settings.performance_min_failures,
        degraded, verdict, findings,
    )  # fmt: skip


def _verdict(
    figures: dict[str, float | None], training: Any, failures: int, settings: Settings
) -> tuple[bool | None, str, list[str]]:
    """(degraded, why, findings): None with the reason while it cannot be said."""
    tolerance, needed = settings.performance_tolerance, settings.performance_min_failures
    if not isinstance(training, dict) or not comparable(training):
        return None, "the version has no training test-set precision or recall to compare", []
    if failures < needed:
        return None, f"{failures} labeled failures; at least {needed} are needed to judge", []
    findings = compare_with_training(figures, training, tolerance)
    if findings:
        return True, "; ".join(findings), findings
    return False, f"recall and precision within {tolerance:g} of the training test set", []


async def model_performance(
    engine: Engine, settings: Settings, version: str | None, span: Window
) -> Performance:
    """A version's (default: the active one's) live performance over a window."""
    return await read(engine, lambda s: _performance(s, _version(s, version), span, settings))


async def evaluations(
    engine: Engine, version_ids: Sequence[int], first: int
) -> dict[int, list[ModelEvaluation]]:
    """Each version's latest evaluation runs, newest first."""
    return await read(engine, lambda s: evaluation_sql.latest_evaluations(s, version_ids, first))
