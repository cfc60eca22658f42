"""The artifact format: joblib bytes of a dict of metadata, compiled arrays and the estimator.

Format 2 keeps the estimator as an inner pickle beside plain-array evaluators (see
model.compiled): loading a compiled model unpickles only numpy arrays, so a serving process never
imports scikit-learn, which it would otherwise hold in memory for nothing (and which a serving
install, without the `train` extra, does not have). Format 1 artifacts (the estimator inline)
and uncompiled ones still load where scikit-learn is installed, and are refused with an
ArtifactDependencyError where it is not.
"""

import hashlib
import hmac
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import joblib

from model.compiled import compile_spec, evaluator
from model.errors import ArtifactDependencyError, ArtifactFormatError, ArtifactIntegrityError
from model.predictor import Predictor

ARTIFACT_FORMAT = "failcast-model/2"
FORMAT_1 = "failcast-model/1"
TRAIN_HINT = "; format-1 and uncompiled artifacts need scikit-learn: pip install 'failcast[train]'"


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
    except ImportError as exc:  # pickled classes of a package this install lacks
        raise _dependency_error(exc) from exc
    except Exception as exc:  # truncated or foreign bytes whose digest was recorded as such
        raise ArtifactFormatError(f"artifact does not unpickle: {type(exc).__name__}") from exc


def _dependency_error(exc: ImportError) -> ArtifactDependencyError:
    name = exc.name or "a module"
    hint = TRAIN_HINT if name.split(".")[0] == "sklearn" else ""
    return ArtifactDependencyError(f"artifact needs {name}, which this process cannot import{hint}")


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
    if spec is None:
        load = _loaded_now(load)
    fast = evaluator(spec) if spec is not None else None
    names, threshold = payload["feature_names"], payload["threshold"]
    return Predictor(names, threshold, payload["algorithm"], fast, load)


def _loaded_now(load: Callable[[], Any]) -> Callable[[], Any]:
    # Uncompiled: scikit-learn answers every prediction, so a process without it must refuse the
    # artifact at load time (and keep serving the previous one), not fail each request.
    estimator = load()
    return lambda: estimator
