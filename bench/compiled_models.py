"""Per-call time of the compiled evaluators (model.compiled) against scikit-learn's predict_proba.

Fits a gradient-boosted model and calibrated models on rows with history features (the public
dataset when it is there, else the synthetic fleet), then times, for one row and for a batch,
scikit-learn's `predict_proba`, the compiled evaluator's probabilities and its probabilities with
explanations, each call in a loop: the median and the minimum of the repeats, in microseconds.
Both sides run in this one process, so a busy machine slows both; scikit-learn's OpenMP threads
(gradient boosting walks its trees with them) are limited to one by default, as in a serving
worker, and because spinning OpenMP threads make its timings erratic on a shared machine. Run:
`.venv/bin/python -m bench.compiled_models` (`--trees 200 --batch 1000 --repeats 7
--sklearn-threads 1`).
"""

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

from model import ArtifactMetadata, dump_artifact, load_artifact, sha256_hex
from model.features import DEVICE_FEATURES
from model.history import HistoryFeatures, history_feature_names
from training import generate_synthetic, load_dataset
from training.estimators import build_estimator

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "device_failure_subset.csv.gz"
NAMES = (*DEVICE_FEATURES, *history_feature_names())
FIT_ROWS = 20_000


def rows_with_history(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(features, labels, devices, source): each device's rows in date order."""
    data = load_dataset(path) if path.is_file() else generate_synthetic(devices=600, days=120)
    order = np.lexsort((data.dates, data.devices))
    devices = data.devices[order]
    starts = np.flatnonzero(devices[1:] != devices[:-1]) + 1
    features = HistoryFeatures(NAMES).of_sequences(np.split(data.X[order], starts))
    source = path.name if path.is_file() else "synthetic fleet (600 devices, 120 days)"
    return np.vstack(features), data.y[order], devices, source


def per_call_us(call: Callable[[], Any], repeats: int, budget: float = 0.2) -> tuple[float, float]:
    """(median, min) over `repeats` loops of one call's time, each loop ~`budget` seconds."""
    start = time.perf_counter()
    call()
    loops = max(1, int(budget / max(time.perf_counter() - start, 1e-7)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            call()
        times.append((time.perf_counter() - start) / loops * 1e6)
    return statistics.median(times), min(times)


def models(X: np.ndarray, y: np.ndarray, devices: np.ndarray, trees: int) -> dict[str, Any]:
    """The fitted estimators to time, by name."""
    boosting = HistGradientBoostingClassifier(
        max_iter=trees, early_stopping=False, class_weight="balanced", random_state=0
    )
    folds = list(GroupKFold(n_splits=3).split(X, y, devices))
    calibrated = {
        f"{method} calibration of {name}": CalibratedClassifierCV(
            inner, method=method, cv=folds, ensemble=False
        )
        for method, name, inner in (
            ("isotonic", f"gradient boosting ({trees} trees)", boosting),
            ("sigmoid", "the logistic regression", build_estimator("logistic_regression", 0)),
        )
    }
    fitted = {f"gradient boosting ({trees} trees)": boosting.fit(X, y)}
    fitted.update({name: model.fit(X, y) for name, model in calibrated.items()})
    return fitted


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.compiled_models", description=__doc__)
    p.add_argument("--data", type=Path, default=DATA, help="dataset (else the synthetic fleet)")
    p.add_argument("--trees", type=int, default=200, help="gradient-boosting iterations (200)")
    p.add_argument("--batch", type=int, default=1000, help="rows of the batch (1000)")
    p.add_argument("--repeats", type=int, default=7, help="timed loops per figure (7)")
    p.add_argument(
        "--sklearn-threads", type=int, default=1,
        help="OpenMP threads of scikit-learn's gradient boosting (1, as a serving worker; 0: all)",
    )  # fmt: skip
    args = p.parse_args()
    if args.sklearn_threads:
        threadpool_limits(limits=args.sklearn_threads, user_api="openmp")
    X, y, devices, source = rows_with_history(args.data)
    rng = np.random.default_rng(0)
    fit = np.union1d(rng.choice(len(y), FIT_ROWS, replace=False), np.flatnonzero(y == 1))
    batch = X[rng.choice(len(y), args.batch, replace=False)]
    print(f"data: {source}, fitted on {len(fit)} rows, {len(NAMES)} features\n")
    print("| model | rows | sklearn predict_proba | compiled | compiled + explain | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, estimator in models(X[fit], y[fit], devices[fit], args.trees).items():
        data = dump_artifact(estimator, ArtifactMetadata("bench", NAMES, 0.5))
        predictor = load_artifact(data, sha256_hex(data))
        assert predictor.compiled
        for rows in (batch[:1], batch):
            gap = np.abs(predictor.predict_proba(rows) - estimator.predict_proba(rows)[:, 1])
            assert gap.max() <= 1e-9
            ref = per_call_us(functools.partial(estimator.predict_proba, rows), args.repeats)
            fast = per_call_us(functools.partial(predictor.predict_proba, rows), args.repeats)
            explained = per_call_us(functools.partial(predictor.explain, rows), args.repeats)
            cells = [f"{median:,.0f} (min {low:,.0f})" for median, low in (ref, fast, explained)]
            print(f"| {name} | {len(rows)} | {' | '.join(cells)} | {ref[0] / fast[0]:.1f}x |")
    print("\nmicroseconds per call: median of the repeats (minimum in brackets)")


if __name__ == "__main__":
    main()
