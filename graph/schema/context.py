"""What every resolver can reach: the caller, the request's audit, and the runtime."""

from dataclasses import dataclass, field

from strawberry.dataloader import DataLoader

from auth import Principal
from graph.runtime import Runtime
from graph.runtime.audit import RequestAudit
from graph.runtime.usecases import model_versions
from persistence import ModelVersion


@dataclass
class GraphContext:
    """The per-request context handed to the resolvers."""

    runtime: Runtime
    audit: RequestAudit
    principal: Principal | None
    _versions: DataLoader[int, ModelVersion | None] | None = field(default=None, repr=False)

    @property
    def versions(self) -> DataLoader[int, ModelVersion | None]:
        """Batches model-version lookups of one request into one query."""
        if self._versions is None:
            engine = self.runtime.engine

            async def load(ids: list[int]) -> list[ModelVersion | None]:
                found = {v.id: v for v in await model_versions(engine, ids)}
                return [found.get(i) for i in ids]

            self._versions = DataLoader(load_fn=load)
        return self._versions
