"""`python -m bench.quality`: model quality end to end, as a user runs it, on unseen devices.

For each of `--splits` device splits (StratifiedGroupKFold by device, `--seed`): the training
devices' rows are written to a data file and `failcast train --data FILE --activate` trains on
them (its own selection, calibration and threshold); a real `failcast serve` on loopback then
receives the other devices' rows through `predictBatch` in date order (1,000 rows a request,
each with `deviceId` and `observedAt`), so history features come from what the server stored;
the probabilities the API answered are scored against the held-out devices' labels at the
served version's horizon. Beside it, reference pipelines are trained on the same training rows
and scored on the same held-out rows: the logistic regression on the counters (the original
service's model) and with the history features.

    .venv/bin/python -m bench.quality --data YOUR_COPY.csv.gz [--splits 3] [--seed 0]

Writes bench/results/quality.md (git-ignored).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from bench.procs import free_port, start_server, stop_server, wait_ready
from bench.stack import active_model, new_stack
from model import DEVICE_FEATURES
from training import load_dataset
from training.dataset import Dataset
from training.estimators import logistic_regression, may_be_negative
from training.features import COUNTERS, FEATURE_SETS, history_matrix
from training.labels import with_horizon
from training.writer import write_dataset_csv

OUTPUT = Path(__file__).resolve().parent / "results" / "quality.md"
BATCH = """mutation B($r: [PredictInput!]!) { predictBatch(inputs: $r) { failureProbability } }"""
HISTORY_SET = "counters+delta+max7+zero_run+observations"


def _served(dataset: Dataset, rows: np.ndarray, url: str, token: str) -> np.ndarray:
    """The probabilities the API answers for `rows`, replayed in date order."""
    order = rows[np.lexsort((dataset.devices[rows], dataset.dates[rows]))]
    found = np.empty(len(dataset))
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        for start in range(0, len(order), 1000):
            batch = order[start : start + 1000].tolist()
            inputs = []
            for i in batch:
                row: dict[str, Any] = {
                    n: int(v) for n, v in zip(DEVICE_FEATURES, dataset.X[i].tolist(), strict=True)
                }
                row["deviceId"] = str(dataset.devices[i])
                row["observedAt"] = f"{dataset.dates[i]}T00:00:00Z"
                inputs.append(row)
            body = client.post("/graphql", json={"query": BATCH, "variables": {"r": inputs}})
            answers = body.json()["data"]["predictBatch"]
            for i, answer in zip(batch, answers, strict=True):
                found[i] = answer["failureProbability"]
    return found[rows]


def _scores(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    return float(roc_auc_score(y, p)), float(average_precision_score(y, p))


def _reference(dataset: Dataset, train: np.ndarray, test: np.ndarray, names: Any) -> np.ndarray:
    X = history_matrix(dataset, names)
    y = dataset.y
    model = logistic_regression(0, signed=may_be_negative(names)).fit(X[train], y[train])
    return np.asarray(model.predict_proba(X[test])[:, 1])


def run_split(dataset: Dataset, train: np.ndarray, test: np.ndarray, work: Path) -> dict[str, Any]:
    """Train with the CLI on `train`, replay `test` through a real server, score everything."""
    data = work / "train.csv.gz"
    write_dataset_csv(dataset.subset(train), data)
    stack = new_stack("quality", work, f"sqlite:///{work / 'quality.db'}")
    started = time.monotonic()
    stack.cli("db", "upgrade")
    stack.cli("train", "--activate", "--data", str(data), "--report-dir", str(work / "reports"))
    trained_s = time.monotonic() - started
    token = stack.mint_token()
    port = free_port()
    server = start_server("quality", stack.serve_command(port, 1), stack.env, work, port)
    try:
        wait_ready(server, "/readyz")
        started = time.monotonic()
        served = _served(dataset, test, server.base_url, token)
        replay_s = time.monotonic() - started
    finally:
        stop_server(server)
    horizon = active_model(stack.database_url).horizon_days
    reference_data = with_horizon(dataset, horizon)
    y = reference_data.y[test]
    result = {
        "horizon_days": horizon,
        "test_devices": int(np.unique(dataset.devices[test]).size),
        "test_positives": int(y.sum()),
        "train_s": trained_s,
        "replay_s": replay_s,
        "served": _scores(y, served),
        "LR counters": _scores(y, _reference(reference_data, train, test, FEATURE_SETS[COUNTERS])),
        "LR history": _scores(
            y, _reference(reference_data, train, test, FEATURE_SETS[HISTORY_SET])
        ),
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the public dataset's file")
    parser.add_argument("--splits", type=int, default=3, help="device splits (folds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    splitter = StratifiedGroupKFold(n_splits=args.splits, shuffle=True, random_state=args.seed)
    results = []
    for k, (train, test) in enumerate(splitter.split(dataset.X, dataset.y, dataset.devices)):
        with tempfile.TemporaryDirectory(prefix="failcast-quality-") as tmp:
            result = run_split(dataset, np.sort(train), np.sort(test), Path(tmp))
        results.append(result)
        print(f"split {k}: {result}", file=sys.stderr, flush=True)
    lines = _report(results, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


def _report(results: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    rows = ["served (CLI-trained, replayed through predictBatch)", "LR counters", "LR history"]
    keys = ["served", "LR counters", "LR history"]
    lines = [
        f"# Quality on unseen devices: {len(results)} device splits, seed {args.seed}",
        "",
        f"Command: `.venv/bin/python -m bench.quality --data DATA --splits {args.splits} "
        f"--seed {args.seed}`. Horizon {results[0]['horizon_days']} day(s); "
        + ", ".join(
            f"split {k}: {r['test_devices']} test devices, {r['test_positives']} positives, "
            f"trained in {r['train_s']:.0f} s, replayed in {r['replay_s']:.0f} s"
            for k, r in enumerate(results)
        ),
        "",
        "| pipeline | ROC-AUC per split | mean | PR-AUC per split | mean |",
        "|---|---|---|---|---|",
    ]
    for title, key in zip(rows, keys, strict=True):
        roc = [r[key][0] for r in results]
        pr = [r[key][1] for r in results]
        lines.append(
            f"| {title} | {' / '.join(f'{v:.3f}' for v in roc)} | {statistics.mean(roc):.3f} "
            f"| {' / '.join(f'{v:.3f}' for v in pr)} | {statistics.mean(pr):.3f} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
