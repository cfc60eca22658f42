"""The baseline: the original REST service's way of predicting, rebuilt for comparison.

FastAPI with a pydantic body, a one-row pandas DataFrame per request and scikit-learn's
`predict_proba` on it; no auth, no storage. It serves the estimator of the same registered
model failcast serves (the artifact's bytes are handed over in a file, checked by sha256).
Run: `uvicorn bench.reference_service:create_app --factory` with BENCH_ARTIFACT_PATH and
BENCH_ARTIFACT_SHA256 set.
"""

import os
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

from model import load_artifact


class Telemetry(BaseModel):
    """The original request body: the eight counters."""

    metric1: float
    metric2: float
    metric3: float
    metric4: float
    metric5: float
    metric6: float
    metric7: float
    metric9: float


def load_estimator(path: Path, sha256: str) -> tuple[Any, list[str], int]:
    """The scikit-learn estimator of an artifact, its feature order and positive-class column."""
    predictor = load_artifact(path.read_bytes(), sha256)
    estimator = predictor.estimator
    positive = list(estimator.classes_).index(1)
    return estimator, list(predictor.feature_names), positive


def create_app() -> FastAPI:
    """The reference app (a uvicorn factory)."""
    estimator, features, positive = load_estimator(
        Path(os.environ["BENCH_ARTIFACT_PATH"]), os.environ["BENCH_ARTIFACT_SHA256"]
    )
    # failcast fits on arrays; the original fitted on DataFrames and so never warned.
    warnings.filterwarnings("ignore", message="X has feature names")
    app = FastAPI()

    @app.post("/predict")
    def predict(body: Telemetry) -> dict[str, str]:
        frame = pd.DataFrame([body.model_dump()], columns=features)
        proba = float(estimator.predict_proba(frame)[0][positive])
        failure = proba >= 0.5
        return {
            "timestamp": datetime.now(UTC).isoformat(),
            "class": "Failure" if failure else "Non-Failure",
            "probability": f"{(proba if failure else 1 - proba) * 100:.1f}%",
        }

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app
