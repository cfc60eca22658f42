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


# Bin edges of the reliability plot, as quantiles of the plotted probabilities: failures are
# rare, so the bins are narrow where the highest probabilities (and the failures) are.
RELIABILITY_QUANTILES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 1.0)


def reliability_points(
    y: npt.NDArray[np.int64], proba: npt.NDArray[np.float64]
) -> list[dict[str, float]]:
    """Per bin of probabilities: mean predicted probability, observed failure rate, rows."""
    edges = np.unique(np.quantile(proba, RELIABILITY_QUANTILES))
    bins = np.clip(np.searchsorted(edges, proba, side="right") - 1, 0, max(edges.size - 2, 0))
    points = []
    for index in np.unique(bins):
        inside = bins == index
        points.append(
            {
                "predicted": float(proba[inside].mean()),
                "observed": float(y[inside].mean()),
                "rows": int(inside.sum()),
            }
        )
    return points


def plot_reliability(experiment: Experiment, path: Path) -> Path | None:
    """Observed failure rate against predicted probability of the selected pipeline's held-out
    cross-validation scores, before and after calibration, beside the balanced logistic
    regression failcast served before (None without cross-validation)."""
    scores = experiment.chosen.scores
    if scores is None or scores.calibrated is None:
        return None
    y = experiment.dataset.y
    figure = _figure(6.5, 5)
    axes = figure.add_subplot()
    series = [
        (f"{experiment.selected}, uncalibrated", scores.proba),
        (f"{experiment.selected}, calibrated (served)", scores.calibrated),
    ]
    if experiment.before is not None:
        series.append(("before: logistic regression on counters", experiment.before))
    for label, proba in series:
        seen = ~np.isnan(proba)
        points = reliability_points(y[seen], proba[seen])
        predicted = [p["predicted"] for p in points]
        observed = [p["observed"] for p in points]
        axes.plot(predicted, observed, marker="o", label=label)
    low = max(float(y.mean()) / 100, 1e-6)
    axes.plot([low, 1.0], [low, 1.0], color="grey", linestyle=":", label="perfectly calibrated")
    # Log scales: the base rate is 0.1% and most rows score far below it. A bin where no row
    # failed has no point on the log scale.
    axes.set_xscale("log")
    axes.set_yscale("log")
    method = (experiment.chosen.calibration or {}).get("method")
    axes.set(
        xlabel="mean predicted P(failure) in bin",
        ylabel="observed failure rate in bin",
        title=f"Reliability on held-out folds (calibration: {method})",
    )
    axes.legend(loc="upper left", fontsize="small")
    figure.savefig(path)
    return path
