"""PNG plots of a training run, drawn on Agg canvases (no pyplot, no global backend state)."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.experiment import Experiment


def _figure(width: float, height: float) -> Any:
    # Imported here: matplotlib is only needed when a report is written, and an explicit Agg
    # canvas renders without selecting a process-wide backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_pr_curves(experiment: Experiment, path: Path) -> Path:
    """Test-set precision-recall curves of every candidate, with each threshold marked."""
    from sklearn.metrics import precision_recall_curve

    y_test = experiment.dataset.y[experiment.split.test]
    figure = _figure(6, 4.5)
    axes = figure.add_subplot()
    for name, candidate in experiment.candidates.items():
        precision, recall, _ = precision_recall_curve(y_test, candidate.test_proba)
        label = f"{name} (AP {candidate.test['pr_auc']:.3f})"
        line = axes.step(recall, precision, where="post", label=label)[0]
        axes.plot(
            candidate.test["recall"], candidate.test["precision"], "o", color=line.get_color()
        )
    axes.axhline(float(y_test.mean()), color="grey", linestyle=":", label="base rate")
    # Log scale: precision sits near the 0.1% base rate and would hug the axis otherwise.
    axes.set_yscale("log")
    axes.set(xlabel="recall", ylabel="precision", title="Precision-recall on test devices")
    axes.legend(loc="upper right", fontsize="small")
    figure.savefig(path)
    return path


def plot_confusion_matrix(experiment: Experiment, path: Path) -> Path:
    """The selected model's test confusion matrix at its threshold."""
    test = experiment.chosen.test
    matrix = np.array(test["confusion_matrix"]["matrix"], dtype=np.float64)
    figure = _figure(4.5, 4)
    axes = figure.add_subplot()
    # Log colour scale: 20 failures next to 24,000 healthy rows would otherwise be invisible.
    axes.imshow(np.log1p(matrix), cmap="Blues")
    dark = np.log1p(matrix) > np.log1p(matrix).max() / 2
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if dark[row, col] else "black"
        axes.text(col, row, f"{int(count):,}", ha="center", va="center", color=colour)
    axes.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["ok", "failure"],
        yticklabels=["ok", "failure"],
        xlabel="predicted",
        ylabel="actual",
        title=f"{experiment.selected} @ {test['threshold']:.3g}",
    )
    figure.savefig(path)
    return path


def plot_validation_curve(curve: Sequence[dict[str, Any]], path: Path) -> Path:
    """Train versus validation ROC-AUC and PR-AUC of the tree over max_depth."""
    labels = [str(point["max_depth"] or "none") for point in curve]
    positions = np.arange(len(curve))
    figure = _figure(9, 4)
    for index, metric in enumerate(("roc_auc", "pr_auc")):
        axes = figure.add_subplot(1, 2, index + 1)
        for side in ("train", "validation"):
            axes.plot(positions, _series(curve, side, metric), marker="o", label=side)
        if metric == "pr_auc":
            axes.set_yscale("log")  # validation PR-AUC lives two decades below training's
        axes.set(xticks=positions, xlabel="max_depth", ylabel=metric, title=metric)
        axes.set_xticklabels(labels, fontsize="small")
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    return path


def _series(curve: Sequence[dict[str, Any]], side: str, metric: str) -> npt.NDArray[np.float64]:
    values = [point[side][metric] for point in curve]
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
