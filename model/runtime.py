"""The active model of a serving process, swapped atomically when the registry changes."""

from dataclasses import dataclass
from typing import Any

from model.predictor import Predictor
from model.profile import InputRanges


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A verified predictor with the registry facts requests report alongside it."""

    version_id: int
    version: str
    artifact_sha256: str
    predictor: Predictor
    info: Any = None  # the registry row's public fields, for responses (opaque here)
    # The training range of each input in the predictor's feature order (model.profile.ranges),
    # built once at load; None: the version has no input profile.
    ranges: InputRanges | None = None


class ModelHolder:
    """Holds the current LoadedModel; readers see the old or the new one, never a mix."""

    def __init__(self) -> None:
        self._current: LoadedModel | None = None

    @property
    def current(self) -> LoadedModel | None:
        """The model serving now, or None before the first load."""
        return self._current

    def swap(self, loaded: LoadedModel) -> LoadedModel | None:
        """Replace the serving model in one reference assignment; return the previous one."""
        previous, self._current = self._current, loaded
        return previous
