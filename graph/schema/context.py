"""What every resolver can reach: the caller, the request's audit, and the runtime."""

import uuid
from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from auth import Principal
from graph.runtime import Runtime
from graph.runtime.audit import RequestAudit
from graph.runtime.monitoring import evaluations
from graph.runtime.usecases import (
    Explainable,
    explanations,
    latest_predictions,
    model_versions,
    request_subjects,
)
from graph.schema.cursors import CursorCodec
from graph.schema.types import ModelVersionType
from model.compiled import Explanation
from persistence import ModelEvaluation, ModelVersion, Prediction


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
    _evaluations: DataLoader[tuple[int, int], list[ModelEvaluation]] | None = field(
        default=None, repr=False
    )
    _explanations: DataLoader[Explainable, Explanation | None] | None = field(
        default=None, repr=False
    )
    _version_types: dict[Any, ModelVersionType] = field(default_factory=dict, repr=False)

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

    def version_type(self, row: ModelVersion) -> ModelVersionType:
        """The GraphQL object of a registry row, built once per request and version (every
        prediction of a page or a batch shares it: a version's input profile is ~80 objects)."""
        found = self._version_types.get(row.id)
        if found is None:
            found = self._version_types[row.id] = ModelVersionType.from_row(row)
        return found

    @property
    def explanations(self) -> DataLoader[Explainable, Explanation | None]:
        """Batches the explanations of stored predictions that have none stored: a page's are
        computed off the event loop, one pass per model version that made them."""
        if self._explanations is None:
            models, histories = self.runtime.models, self.runtime.histories

            async def load(items: list[Explainable]) -> list[Explanation | None]:
                return await explanations(models, histories, items)

            self._explanations = DataLoader(load_fn=load)
        return self._explanations

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

    @property
    def evaluations(self) -> DataLoader[tuple[int, int], list[ModelEvaluation]]:
        """Batches the lookups of versions' evaluation runs, keyed by (version id, how many)."""
        if self._evaluations is None:
            engine = self.runtime.engine

            async def load(keys: list[tuple[int, int]]) -> list[list[ModelEvaluation]]:
                found: dict[tuple[int, int], list[ModelEvaluation]] = {}
                for first in sorted({n for _, n in keys}):  # one query per page size asked
                    ids = [i for i, n in keys if n == first]
                    rows = await evaluations(engine, ids, first)
                    found |= {(i, first): rows.get(i, []) for i in ids}
                return [found[key] for key in keys]

            self._evaluations = DataLoader(load_fn=load)
        return self._evaluations
