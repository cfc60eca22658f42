"""The report directory of a version: report.json, model.joblib and the PNG plots."""

import json
from pathlib import Path
from typing import Any

from training.experiment import Experiment
from training.plots import (
    plot_confusion_matrix,
    plot_pr_curves,
    plot_reliability,
    plot_validation_curve,
)

REPORT_FILE = "report.json"
MODEL_FILE = "model.joblib"


def write_report(
    directory: Path, experiment: Experiment, record: dict[str, Any], artifact: bytes
) -> Path:
    """Write everything about one version into `directory`; returns the report.json path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_bytes(artifact)
    plots = [
        plot_pr_curves(experiment, directory / "pr_curve.png"),
        plot_confusion_matrix(experiment, directory / "confusion_matrix.png"),
    ]
    reliability = plot_reliability(experiment, directory / "reliability.png")
    if reliability is not None:
        plots.append(reliability)
    if experiment.validation_curve is not None:
        plots.append(
            plot_validation_curve(experiment.validation_curve, directory / "validation_curve.png")
        )
    report = {**record, "files": [MODEL_FILE, *(p.name for p in plots)]}
    path = directory / REPORT_FILE
    path.write_text(json.dumps(report, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path
