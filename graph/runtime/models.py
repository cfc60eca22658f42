"""Keeps the registry's active model loaded, verified, and swapped in when it changes."""

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.engine import Engine

from model import (
    DEVICE_FEATURES,
    ArtifactFormatError,
    LoadedModel,
    ModelError,
    ModelHolder,
    load_artifact,
)
from model.golden import check_golden_set
from persistence import ModelVersion, ModelVersionRepository, PersistenceError, session_scope

log = logging.getLogger("failcast.models")


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
            predictor = load_artifact(row.artifact, row.artifact_sha256)
            _check_features(predictor.feature_names)
            if row.golden_set is not None:  # versions registered before golden sets have none
                check_golden_set(predictor, row.golden_set)
        except ModelError as error:
            assert row.id is not None
            self._refused = (row.id, row.artifact_sha256)
            self.last_error = f"model version {row.version} refused: {error}"
            log.error("%s; the previous version keeps serving", self.last_error)
            self._record_refusal(row, str(error))
            return self.holder.current
        assert row.id is not None
        loaded = LoadedModel(row.id, row.version, row.artifact_sha256, predictor, info=row)
        row.artifact = b""  # the bytes are in the predictor now; do not keep a second copy
        self.holder.swap(loaded)
        self.last_error = None
        if self.on_swap is not None:
            self.on_swap(row.version)
        log.info("serving model version %s (%s)", row.version, predictor.algorithm)
        return loaded

    def _record_refusal(self, row: ModelVersion, reason: str) -> None:
        assert row.id is not None
        try:
            with session_scope(self.engine) as session:
                ModelVersionRepository(session).record_refusal(row.id, row.artifact_sha256, reason)
        except PersistenceError as error:  # the log line above still says it
            log.warning("model refusal not recorded: %s", error)

    async def refresh(self) -> LoadedModel | None:
        """refresh_sync off the event loop."""
        return await asyncio.to_thread(self.refresh_sync)

    async def keep_fresh(self) -> None:
        """Poll the registry forever, so every process follows activations made anywhere."""
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except PersistenceError as error:
                self.last_error = f"registry unreachable: {error}"
                log.warning("model refresh failed: %s", error)
            except Exception:  # a bug must not end the polling: log it, keep serving, retry
                log.exception("model refresh failed unexpectedly")


def _check_features(names: tuple[str, ...]) -> None:
    unknown = [name for name in names if name not in DEVICE_FEATURES]
    if unknown:
        raise ArtifactFormatError(f"features the API cannot supply: {', '.join(unknown)}")
