"""What every resolver can reach: the caller, the request's audit, and the service's parts."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from strawberry.dataloader import DataLoader

from auth import AuthError, Principal
from graph.audit import RequestAudit
from graph.services import model_versions
from persistence import ModelVersion

if TYPE_CHECKING:
    from graph.app import AppServices


@dataclass
class GraphContext:
    """The per-request context handed to strawberry."""

    services: "AppServices"
    audit: RequestAudit
    principal: Principal | None
    auth_error: AuthError | None = None
    _versions: DataLoader[int, ModelVersion | None] | None = field(default=None, repr=False)

    @property
    def versions(self) -> DataLoader[int, ModelVersion | None]:
        """Batches model-version lookups of one request into one query."""
        if self._versions is None:
            engine = self.services.engine

            async def load(ids: list[int]) -> list[ModelVersion | None]:
                found = {v.id: v for v in await model_versions(engine, ids)}
                return [found.get(i) for i in ids]

            self._versions = DataLoader(load_fn=load)
        return self._versions
