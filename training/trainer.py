"""`train()`: load or generate data, run the experiment, register the version, write the report."""

import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy.typing as npt
from sqlalchemy.engine import Engine

from model import ArtifactMetadata, dump_artifact, sha256_hex
from model.golden import build_golden_set, pick_golden_rows
from model.profile import FloatArray, build_profile
from training.database import database_source, load_database_dataset
from training.dataset import Dataset
from training.errors import InvalidOptionsError
from training.evaluation import positive_proba
from training.experiment import Experiment, Progress, run_experiment
from training.lineage import build_lineage
from training.loader import load_dataset
from training.options import TrainingOutcome, TrainOptions, validate_options
from training.registry import VersionRecord, register_version
from training.report import REPORT_FILE, write_report
from training.synthetic import generate_synthetic


def print_progress(message: str) -> None:
    """The default progress sink: one line on stderr."""
    print(f"[train] {message}", file=sys.stderr, flush=True)


def train(
    options: TrainOptions, engine: Engine, progress: Progress = print_progress
) -> TrainingOutcome:
    """Train, register a new model version (active if asked) and write its report."""
    validate_options(options)
    dataset = load_training_data(options, progress, engine)
    experiment = run_experiment(options, dataset, progress)
    record = build_record(options, experiment)
    progress("registering the model version and writing its report")
    version, report = _register_with_report(engine, options, experiment, record)
    progress(f"registered {version} ({record.algorithm}); report in {report.parent}")
    return TrainingOutcome(
        version=version,
        algorithm=record.algorithm,
        threshold=record.threshold,
        metrics=record.metrics,
        report_path=report,
        activated=options.activate,
        trained_on_synthetic_data=dataset.synthetic,
    )


def _register_with_report(
    engine: Engine, options: TrainOptions, experiment: Experiment, record: VersionRecord
) -> tuple[str, Path]:
    # The report is staged before the commit and moved into place after it: a failed commit
    # leaves no report, and a failed report leaves no version.
    options.report_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=options.report_dir))
    try:
        version, _ = register_version(
            engine,
            record,
            options.activate,
            lambda name: write_report(staging, experiment, record.to_json(name), record.artifact),
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version, _publish(staging, options.report_dir / version)


def load_training_data(
    options: TrainOptions, progress: Progress, engine: Engine | None = None
) -> Dataset:
    """The data file of the options, the rows stored in `engine`'s database (`from_database`),
    or the synthetic fleet when neither is asked for."""
    if options.from_database:
        if engine is None:
            raise InvalidOptionsError("from_database needs the database's engine")
        progress(f"reading {database_source(engine, options.date_from, options.date_to)}")
        dataset = load_database_dataset(engine, options.date_from, options.date_to)
        selection = dataset.fingerprint.database
        assert selection is not None  # load_database_dataset always sets it
        progress(
            f"{selection.rows} device-days of {selection.devices} devices, {selection.failures}"
            f" failed; {selection.duplicates_dropped} older predictions of a device-day dropped"
        )
        return dataset
    if options.data_path is None:
        progress(
            f"no data path: generating a synthetic fleet of {options.synthetic_devices} devices"
            f" over {options.synthetic_days} days"
        )
        return generate_synthetic(options.synthetic_devices, options.synthetic_days, options.seed)
    progress(f"loading {options.data_path}")
    return load_dataset(options.data_path)


def build_record(options: TrainOptions, experiment: Experiment) -> VersionRecord:
    """The registry record of the selected candidate, with its serialised artifact."""
    chosen = experiment.chosen
    features = experiment.feature_names
    metadata = ArtifactMetadata(chosen.algorithm, features, chosen.threshold, chosen.params)
    served = experiment.served
    artifact = dump_artifact(served, metadata)
    # The rows the served model learned from: what live inputs are held to.
    learned = experiment.served_rows
    profile, golden = serving_checks(
        features,
        experiment.features.matrix[learned],
        experiment.dataset.y[learned],
        lambda rows: positive_proba(served, rows),
    )
    return VersionRecord(
        algorithm=chosen.algorithm,
        params=chosen.params,
        feature_names=features,
        threshold=chosen.threshold,
        horizon_days=experiment.horizon_days,
        metrics=experiment.metrics(),
        lineage=build_lineage(options, experiment),
        fingerprint=experiment.dataset.fingerprint,
        synthetic=experiment.dataset.synthetic,
        artifact=artifact,
        artifact_sha256=sha256_hex(artifact),
        input_profile=profile,
        golden_set=golden,
    )


def serving_checks(
    features: Sequence[str],
    matrix: FloatArray,
    labels: npt.NDArray[Any],
    reference_proba: Callable[[FloatArray], FloatArray],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(input profile, golden set) a version carries: the profile of its training inputs
    (`matrix`, columns `features`), and golden rows of them scored by scikit-learn itself."""
    rows = pick_golden_rows(matrix, labels)
    golden = build_golden_set(features, rows, reference_proba(rows))
    return build_profile(matrix, features), golden


def _publish(staging: Path, target: Path) -> Path:
    # The version is committed: move its report into place. A directory of the same name can
    # only be left over from another database that reused the name; the new one replaces it.
    if target.exists():
        shutil.rmtree(target)
    staging.chmod(0o755)  # mkdtemp makes it private; the report is meant to be read
    staging.rename(target)
    return target / REPORT_FILE
