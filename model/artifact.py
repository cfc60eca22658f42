"""The artifact format: joblib bytes of a dict holding the estimator and its metadata."""

import hashlib
import hmac
import io
from dataclasses import asdict, dataclass, field
from typing import Any

import joblib

from model.errors import ArtifactFormatError, ArtifactIntegrityError
from model.predictor import Predictor

ARTIFACT_FORMAT = "failcast-model/1"


@dataclass(frozen=True)
class ArtifactMetadata:
    """What serving needs besides the estimator itself."""

    algorithm: str
    feature_names: tuple[str, ...]
    threshold: float
    params: dict[str, Any] = field(default_factory=dict)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of bytes: the identity of an artifact in the registry."""
    return hashlib.sha256(data).hexdigest()


def dump_artifact(estimator: Any, metadata: ArtifactMetadata) -> bytes:
    """Serialise a fitted estimator with its metadata into artifact bytes."""
    payload = {"format": ARTIFACT_FORMAT, "estimator": estimator, **asdict(metadata)}
    payload["feature_names"] = list(metadata.feature_names)
    buffer = io.BytesIO()
    joblib.dump(payload, buffer, compress=3)
    return buffer.getvalue()


def load_artifact(data: bytes, sha256: str) -> Predictor:
    """Verify the digest, and only then unpickle the artifact into a Predictor."""
    # Unpickling runs code: bytes that differ from what the registry recorded never get that far.
    if not hmac.compare_digest(sha256_hex(data), sha256.lower()):
        raise ArtifactIntegrityError("artifact bytes do not match the registered sha256")
    try:
        payload = joblib.load(io.BytesIO(data))
    except Exception as exc:  # truncated or foreign bytes whose digest was recorded as such
        raise ArtifactFormatError(f"artifact does not unpickle: {type(exc).__name__}") from exc
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise ArtifactFormatError(f"not a {ARTIFACT_FORMAT} artifact")
    try:
        return Predictor(
            payload["estimator"],
            payload["feature_names"],
            payload["threshold"],
            payload["algorithm"],
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ArtifactFormatError(f"incomplete artifact: {exc}") from exc
