"""Keeps the registry's active model loaded, verified, and swapped in when it changes.

It also lends the predictors of other versions (`predictor_for`), to explain stored predictions
with the version that made them: loaded and verified like the serving one, a few kept.
"""

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from sqlalchemy.engine import Engine

from graph.runtime import listening
from graph.runtime.scoring import Scoring
from model import (
    ArtifactFormatError,
    LoadedModel,
    ModelError,
    ModelHolder,
    Predictor,
    load_artifact,
)
from model.golden import check_golden_set
from model.history import HistoryFeatures
from model.profile import InputRanges, ranges
from persistence import (
    ModelVersion,
    ModelVersionRepository,
    PersistenceError,
    lifecycle,
    session_scope,
)

log = logging.getLogger("failcast.models")
OTHER_VERSIONS_KEPT = 4  # predictors of versions other than the serving one, least recent out


class ModelService:
    """The serving process's view of the registry's active model."""

    def __init__(
        self,
        engine: Engine,
        refresh_seconds: float = 5.0,
        on_swap: Callable[[str | None], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_swap = on_swap
        self.refresh_seconds = refresh_seconds
        self.holder = ModelHolder()
        self.last_error: str | None = None
        self._refused: tuple[int, str] | None = None  # (id, sha256) refused: not retried
        self._refreshing = asyncio.Lock()
        self._others: OrderedDict[int, Predictor] = OrderedDict()
        self._others_lock = threading.Lock()
        self.scoring = Scoring()  # the model calls of concurrent requests, grouped

    @property
    def current(self) -> LoadedModel | None:
        """The model serving now."""
        return self.holder.current

    def refresh_sync(self) -> LoadedModel | None:
        """Load the active version if it is not the one serving; keep serving on failure."""
        with session_scope(self.engine) as session:
            repo = ModelVersionRepository(session)
            ref = repo.active_ref()
            current = self.holder.current
            if ref is None or (current and current.version_id == ref[0]) or ref == self._refused:
                if ref is None:
                    self.last_error = "no active model version"
                return current
            row = repo.active(with_artifact=True)
        return self._load(row) if row is not None else current

    def _load(self, row: ModelVersion) -> LoadedModel | None:
        try:
            loaded = _serving(row)
        except ModelError as error:
            assert row.id is not None
            self._refused = (row.id, row.artifact_sha256)
            self.last_error = f"model version {row.version} refused: {error}"
            log.error("%s; the previous version keeps serving", self.last_error)
            self._record_refusal(row, str(error))
            return self.holder.current
        self.swap_in(loaded)
        return loaded

    def swap_in(self, loaded: LoadedModel) -> None:
        """Serve a verified model from now on (a switch this process committed, or found)."""
        current = self.holder.current
        if current is not None and current.version_id == loaded.version_id:
            return
        self.holder.swap(loaded)
        self.last_error = None
        if self.on_swap is not None:
            self.on_swap(loaded.version)
        log.info("serving model version %s (%s)", loaded.version, loaded.predictor.algorithm)

    def prepare_sync(self, version: str) -> LoadedModel:
        """Load and verify a version before switching to it (ModelError if it cannot serve)."""
        with session_scope(self.engine) as session:
            row = ModelVersionRepository(session).get(version, with_artifact=True)
        return _serving(row)

    def _record_refusal(self, row: ModelVersion, reason: str) -> None:
        assert row.id is not None
        try:
            with session_scope(self.engine) as session:
                ModelVersionRepository(session).record_refusal(row.id, row.artifact_sha256, reason)
        except PersistenceError as error:  # the log line above still says it
            log.warning("model refusal not recorded: %s", error)

    def predictor_for(self, version_id: int) -> Predictor:
        """The verified predictor of any registered version (blocking: call it off the loop).

        The serving version's own, or one loaded from the registry (digest first, then the
        features and the golden set, as for serving) and kept among the last few asked for;
        ModelError when the version's artifact cannot be used, NotFound when there is none.
        """
        current = self.holder.current
        if current is not None and current.version_id == version_id:
            return current.predictor
        with self._others_lock:  # one load per version, even when asked from several threads
            found = self._others.get(version_id)
            if found is None:
                with session_scope(self.engine) as session:
                    row = ModelVersionRepository(session).get_by_id(version_id, with_artifact=True)
                found = verified(row).predictor
                self._others[version_id] = found
                while len(self._others) > OTHER_VERSIONS_KEPT:
                    self._others.popitem(last=False)
            self._others.move_to_end(version_id)
            return found

    async def refresh(self) -> LoadedModel | None:
        """refresh_sync off the event loop (one at a time: the poller and the listener share)."""
        async with self._refreshing:
            return await asyncio.to_thread(self.refresh_sync)

    async def follow_switches(self) -> None:
        """On PostgreSQL, reload as soon as any process commits a switch (NOTIFY), for ever.

        A lost connection is reopened with a growing pause (up to 30 s); the registry is read
        again each time, since switches made while nobody listened are not replayed. Polling
        (`keep_fresh`) runs beside this regardless, so a listener that cannot connect only
        makes switches slower to arrive, never missed.
        """
        if not lifecycle.listens(self.engine):
            return
        await listening.follow(
            lambda: lifecycle.activations_heard(self.engine),
            "model switches",
            lambda _payload: self._refresh_logged(),
            self._refresh_logged,
        )

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except PersistenceError as error:
            self.last_error = f"registry unreachable: {error}"
            log.warning("model refresh failed: %s", error)
        except Exception:  # a bug must not end the listening: log it, keep serving, retry
            log.exception("model refresh failed unexpectedly")

    async def keep_fresh(self) -> None:
        """Poll the registry forever, so every process follows activations made anywhere."""
        while True:
            await asyncio.sleep(self.refresh_seconds)
            await self._refresh_logged()


def verified(row: ModelVersion) -> LoadedModel:
    """The version loaded: digest, format, features and golden set checked (ModelError if not).

    The row is left as it is: a caller holding it in an open session would otherwise write
    back whatever was changed on it.
    """
    predictor = load_artifact(row.artifact, row.artifact_sha256)
    _check_features(predictor.feature_names)
    if row.golden_set is not None:  # versions registered before golden sets have none
        check_golden_set(predictor, row.golden_set)
    assert row.id is not None
    limits = _ranges(row, predictor)
    return LoadedModel(row.id, row.version, row.artifact_sha256, predictor, info=row, ranges=limits)


def _serving(detached: ModelVersion) -> LoadedModel:
    """verified(), then the row (out of its session) lets go of the artifact's bytes: they are
    in the predictor now, and the row stays with the model as its registry facts."""
    loaded = verified(detached)
    detached.artifact = b""
    return loaded


def _ranges(row: ModelVersion, predictor: Predictor) -> InputRanges | None:
    """The training range of each input, from the version's profile (None without one)."""
    if row.input_profile is None:  # registered before profiles existed: no warnings
        return None
    try:
        return ranges(row.input_profile, predictor.feature_names)
    except (KeyError, TypeError, ValueError) as error:
        log.warning(
            "model version %s: input profile unusable (%r): no input warnings", row.version, error
        )
        return None


def _check_features(names: tuple[str, ...]) -> None:
    try:  # telemetry counters, and history features computed from the stored ones
        HistoryFeatures(names)
    except ValueError as error:
        raise ArtifactFormatError(f"features the API cannot supply: {error}") from None
