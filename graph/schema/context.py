"""What every resolver can reach: the caller, the request's audit, and the runtime."""

import uuid
from dataclasses import dataclass, field

from strawberry.dataloader import DataLoader

from auth import Principal
from graph.runtime import Runtime
from graph.runtime.audit import RequestAudit
from graph.runtime.usecases import latest_predictions, model_versions, request_subjects
from graph.schema.cursors import CursorCodec
from persistence import ModelVersion, Prediction


@dataclass
class GraphContext:
    """The per-request context handed to the resolvers."""

    runtime: Runtime
    audit: RequestAudit
    principal: Principal | None
    cursors: CursorCodec
    # A subscription's context lives as long as it does: its loaders batch, but keep nothing.
    loader_cache: bool = True
    _versions: DataLoader[int, ModelVersion | None] | None = field(default=None, repr=False)
    _subjects: DataLoader[uuid.UUID, str | None] | None = field(default=None, repr=False)
    _latest: DataLoader[str, Prediction | None] | None = field(default=None, repr=False)

    @property
    def versions(self) -> DataLoader[int, ModelVersion | None]:
        """Batches model-version lookups of one request into one query."""
        if self._versions is None:
            engine = self.runtime.engine

            async def load(ids: list[int]) -> list[ModelVersion | None]:
                found = {v.id: v for v in await model_versions(engine, ids)}
                return [found.get(i) for i in ids]

            self._versions = DataLoader(load_fn=load, cache=self.loader_cache)
        return self._versions

    @property
    def subjects(self) -> DataLoader[uuid.UUID, str | None]:
        """Batches the lookups of who asked for predictions (their requests' subjects)."""
        if self._subjects is None:
            engine = self.runtime.engine

            async def load(ids: list[uuid.UUID]) -> list[str | None]:
                found = await request_subjects(engine, ids)
                return [found.get(i) for i in ids]

            self._subjects = DataLoader(load_fn=load, cache=self.loader_cache)
        return self._subjects

    @property
    def latest(self) -> DataLoader[str, Prediction | None]:
        """Batches the lookups of devices' latest predictions."""
        if self._latest is None:
            engine = self.runtime.engine

            async def load(device_ids: list[str]) -> list[Prediction | None]:
                found = await latest_predictions(engine, device_ids)
                return [found.get(i) for i in device_ids]

            self._latest = DataLoader(load_fn=load, cache=self.loader_cache)
        return self._latest
