"""The model runtime: artifact format, digest-verified loading and vectorised prediction."""

from model.artifact import (
    ARTIFACT_FORMAT,
    ArtifactMetadata,
    dump_artifact,
    load_artifact,
    sha256_hex,
)
from model.errors import (
    ArtifactDependencyError,
    ArtifactFormatError,
    ArtifactIntegrityError,
    ModelError,
)
from model.features import DEVICE_FEATURES, FieldProblem, find_invalid_values
from model.predictor import Predictor
from model.runtime import LoadedModel, ModelHolder

__all__ = [
    "ARTIFACT_FORMAT",
    "DEVICE_FEATURES",
    "ArtifactDependencyError",
    "ArtifactFormatError",
    "ArtifactIntegrityError",
    "ArtifactMetadata",
    "FieldProblem",
    "LoadedModel",
    "ModelError",
    "ModelHolder",
    "Predictor",
    "dump_artifact",
    "find_invalid_values",
    "load_artifact",
    "sha256_hex",
]
