"""The artifact format: joblib bytes of a dict of metadata, compiled arrays and the estimator.

Format 2 keeps the estimator as an inner pickle beside plain-array evaluators (see
model.compiled): loading a compiled model unpickles only numpy arrays, so a serving process never
imports scikit-learn, which it would otherwise hold in memory for nothing. Format 1 artifacts
(the estimator inline) still load.
"""

import hashlib
import hmac
import io
from dataclasses import dataclass, field
from typing import Any

import joblib

from model.compiled import compile_spec, evaluator
from model.errors import ArtifactFormatError, ArtifactIntegrityError
from model.predictor import Predictor

ARTIFACT_FORMAT = "failcast-model/2"
FORMAT_1 = "failcast-model/1"


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


def _joblib_bytes(value: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(value, buffer, compress=3)
    return buffer.getvalue()


def _unpickle(data: bytes) -> Any:
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:  # truncated or foreign bytes whose digest was recorded as such
        raise ArtifactFormatError(f"artifact does not unpickle: {type(exc).__name__}") from exc


def dump_artifact(estimator: Any, metadata: ArtifactMetadata) -> bytes:
    """Serialise a fitted estimator, its compiled arrays and its metadata into artifact bytes."""
    payload = {
        "format": ARTIFACT_FORMAT,
        "algorithm": metadata.algorithm,
        "feature_names": list(metadata.feature_names),
        "threshold": float(metadata.threshold),
        "params": dict(metadata.params),
        "compiled": compile_spec(estimator),
        "estimator": _joblib_bytes(estimator),
    }
    return _joblib_bytes(payload)


def load_artifact(data: bytes, sha256: str) -> Predictor:
    """Verify the digest, and only then unpickle the artifact into a Predictor."""
    # Unpickling runs code: bytes that differ from what the registry recorded never get that far.
    if not hmac.compare_digest(sha256_hex(data), sha256.lower()):
        raise ArtifactIntegrityError("artifact bytes do not match the registered sha256")
    payload = _unpickle(data)
    if not isinstance(payload, dict) or payload.get("format") not in (ARTIFACT_FORMAT, FORMAT_1):
        raise ArtifactFormatError(f"not a {ARTIFACT_FORMAT} artifact")
    try:
        return _predictor(payload)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ArtifactFormatError(f"incomplete artifact: {exc}") from exc


def _predictor(payload: dict[str, Any]) -> Predictor:
    if payload["format"] == FORMAT_1:
        estimator = payload["estimator"]
        spec, load = compile_spec(estimator), lambda: estimator
    else:
        inner: bytes = payload["estimator"]
        spec, load = payload["compiled"], lambda: _unpickle(inner)
    fast = evaluator(spec) if spec is not None else None
    names, threshold = payload["feature_names"], payload["threshold"]
    return Predictor(names, threshold, payload["algorithm"], fast, load)
