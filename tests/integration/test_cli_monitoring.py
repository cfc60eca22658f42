"""`failcast outcomes import` and `failcast evaluate` as a gate, against real databases.

A version evaluated on its own held-out devices reproduces the training report's test figures
and passes; the same estimator registered with a threshold no score reaches (claiming the good
version's figures) fails with exit code 1 (a failed check, as every gate of the CLI). Both runs
are stored. That runs on a synthetic fleet trained without refit; the session's version trained
on the public dataset (`real_training`, tests/support.REAL_DATA; skipped visibly without it) is
refitted on every device, as `failcast train` does by default, so `--held-out` is refused for it
and it is scored on the whole file instead.
"""

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from support import REAL_DATA, copy_version, seed_predictions
from test_cli import _cli

from model import ArtifactMetadata, dump_artifact, load_artifact, sha256_hex
from persistence import (
    ModelEvaluation,
    ModelVersion,
    ModelVersionRepository,
    Outcome,
    session_scope,
)
from persistence.outcomes import labeled_groups
from training import TrainOptions, generate_synthetic, train, write_dataset_csv

HEADER = (
    "date,device,failure,metric1,metric2,metric3,metric4,metric5,metric6,metric7,metric8,metric9"
)


def _file(path: Path, rows: list[str], gz: bool = False) -> Path:
    data = ("\n".join([HEADER, *rows]) + "\n").encode("latin-1")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _outcomes(engine: Engine) -> list[tuple[str, str, bool, datetime]]:
    with session_scope(engine) as session:
        rows = session.execute(sa.select(Outcome).order_by(Outcome.device_id, Outcome.day))
        return [(r.device_id, str(r.day), r.failed, r.observed_at) for r in rows.scalars()]


def test_outcomes_import_is_idempotent_and_labels_that_days_prediction(
    db_url, db_engine, active_model, tmp_path
):
    rows = [
        "2015-01-01,S1F0\xe9A,0,1,0,0,0,6,400000,0,0,7",  # the dataset's non-ASCII device id
        "2015-01-02,S1F0\xe9A,1,1,0,0,0,6,400000,0,0,7",
        "2015-01-01,W1F0B,0,5,0,0,0,6,400000,0,0,7",
        "",
        "2015-01-02,W1F0B,0,5,0,0,0,6,400000,0,0,7",
    ]
    plain = _file(tmp_path / "outcomes.csv", rows)
    done = _cli(db_url, "outcomes", "import", str(plain))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "imported 4 outcomes (1 failed) of 2 devices, 2015-01-01 to 2015-01-02: 4 new, "
        "0 already recorded (replaced)"
    )
    stored = _outcomes(db_engine)
    assert [(d, day, f) for d, day, f, _ in stored] == [
        ("S1F0\xe9A", "2015-01-01", False), ("S1F0\xe9A", "2015-01-02", True),
        ("W1F0B", "2015-01-01", False), ("W1F0B", "2015-01-02", False),
    ]  # fmt: skip
    assert stored[1][3] == datetime(2015, 1, 2, tzinfo=UTC)  # the date, 00:00 UTC
    again = _cli(db_url, "outcomes", "import", str(_file(tmp_path / "o.csv.gz", rows, gz=True)))
    assert again.returncode == 0 and "0 new, 4 already recorded" in again.stdout
    assert _outcomes(db_engine) == stored
    # A prediction observed at a row's date gets that row's label, and only that one.
    day = datetime(2015, 1, 2, tzinfo=UTC)
    seed_predictions(
        db_engine,
        active_model.id,
        [("S1F0\xe9A", day, 0.7), ("S1F0\xe9A", day - timedelta(days=1), 0.2)],
    )
    with session_scope(db_engine) as session:
        groups = np.concatenate(
            list(labeled_groups(session, active_model.id, None, day + timedelta(days=1), 1))
        )
    assert groups.tolist() == [[0.7, 1, 0, 1, 0], [0.2, 0, 1, 0, 0]]


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        (["2015-01-01,D1,2,0,0,0,0,0,0,0,0,0"], "line 2: failure '2' must be 0 or 1"),
        (["2015-01-01,D1,0,0,0,0,0,0,0,0,0,0", "2015-1-2,D1,0,0,0,0,0,0,0,0,0,0"], "line 3: date"),
        (["2015-01-01,,0,0,0,0,0,0,0,0,0,0"], "line 2: device"),
        (["2015-01-01,D1,0"], "line 2: expected 12 fields"),
    ],
)
def test_a_bad_row_imports_nothing_and_names_its_line(db_url, db_engine, tmp_path, rows, words):
    done = _cli(db_url, "outcomes", "import", str(_file(tmp_path / "bad.csv", rows)))
    assert done.returncode == 2 and words in done.stderr and "nothing was imported" in done.stderr
    assert _outcomes(db_engine) == []


def test_outcomes_import_refuses_files_without_the_columns(db_url, db_engine, tmp_path):
    (tmp_path / "x.csv").write_text("day,device,failed\n2015-01-01,D1,0\n")
    done = _cli(db_url, "outcomes", "import", str(tmp_path / "x.csv"))
    assert done.returncode == 2 and "missing column(s): date, failure" in done.stderr
    assert _cli(db_url, "outcomes", "import", str(tmp_path / "none.csv")).returncode == 2


def _evaluate(
    db_url: str, version: str, data: Path, *extra: str
) -> tuple[int, dict[str, Any], str]:
    done = _cli(db_url, "evaluate", version, "--data", str(data), *extra)
    result = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, result, done.stderr


def _degraded_copy(engine: Engine, version: str, name: str, threshold: float) -> None:
    """The same estimator, registered with another threshold and the good version's claims."""
    with session_scope(engine) as session:
        row = ModelVersionRepository(session).get(version, with_artifact=True)
        estimator = load_artifact(row.artifact, row.artifact_sha256).estimator
        metadata = ArtifactMetadata(row.algorithm, tuple(row.feature_names), threshold, row.params)
        artifact = dump_artifact(estimator, metadata)
        changed = {"version": name, "artifact": artifact, "threshold": threshold,
                   "artifact_sha256": sha256_hex(artifact), "is_active": False}  # fmt: skip
        copy = ModelVersion(**{**row.model_dump(exclude={"id"}), **changed})
        ModelVersionRepository(session).add(copy)


def _stored_runs(engine: Engine) -> list[ModelEvaluation]:
    with session_scope(engine) as session:
        return list(
            session.execute(sa.select(ModelEvaluation).order_by(ModelEvaluation.id)).scalars()
        )


def _held_out_gate(db_url: str, engine: Engine, data: Path, outcome: Any) -> None:
    """`outcome`: a training of `data` whose version is registered in `engine`."""
    code, result, err = _evaluate(db_url, outcome.version, data, "--held-out")
    assert code == 0, err
    test = outcome.metrics["test"]
    for name in ("rows", "failures", "tp", "fp", "tn", "fn"):
        assert result["metrics"][name] == test[name], name
    for name in ("precision", "recall", "f1", "roc_auc", "pr_auc", "false_positive_rate"):
        assert result["metrics"][name] == pytest.approx(test[name], abs=1e-9), name
    assert result["held_out"] and result["same_data_as_training"]
    assert result["gate"]["passed"] and result["gate"]["findings"] == []
    never = float(np.nextafter(1.0, 2.0))  # a threshold no score reaches: it never says FAILURE
    _degraded_copy(engine, outcome.version, "worse-1", never)
    code, worse, err = _evaluate(db_url, "worse-1", data, "--held-out")
    assert code == 1, err
    assert worse["metrics"]["recall"] == 0.0 < test["recall"] - 0.1
    assert not worse["gate"]["passed"] and "worse-1 fails the gate: recall" in err
    runs = _stored_runs(engine)
    assert [r.passed for r in runs] == [True, False] and runs[1].findings == worse["gate"][
        "findings"
    ]
    assert runs[0].data_rows == test["rows"] and runs[0].same_data_as_training
    assert "held-out test devices, seed" in runs[0].data_source and runs[0].tolerance == 0.1


def test_a_refitted_real_version_has_no_held_out_devices_and_is_scored_on_the_file(
    db_url, db_engine, real_training
):
    # The session's real-data version (history features, calibrated, 1-day horizon, refitted on
    # every device), copied into this database: evaluate recomputes features and labels.
    copy_version(real_training.row, db_engine)
    version = real_training.outcome.version
    code, _, err = _evaluate(db_url, version, REAL_DATA, "--held-out")
    assert code == 2 and "refitted on every device" in err and "--no-refit" in err
    code, result, err = _evaluate(db_url, version, REAL_DATA)
    assert code == 0, err
    assert result["metrics"]["rows"] == 124_165 and not result["held_out"]
    # every device was learned from: the whole file ranks at least as well as the test devices
    assert result["metrics"]["pr_auc"] >= real_training.outcome.metrics["test"]["pr_auc"]
    assert len(_stored_runs(db_engine)) == 1  # the refused run is not stored


def test_evaluate_gate_on_synthetic_data_files(db_url, db_engine, tmp_path):
    data = write_dataset_csv(generate_synthetic(400, 90, seed=3), tmp_path / "fleet.csv")
    options = TrainOptions(data_path=data, algorithm="decision_tree", cv_folds=0,
                           validation_curve=False, report_dir=tmp_path / "reports")  # fmt: skip
    _held_out_gate(db_url, db_engine, data, train(options, db_engine, lambda _: None))
    other = write_dataset_csv(generate_synthetic(60, 30, seed=9), tmp_path / "other.csv")
    code, _, err = _evaluate(db_url, "worse-1", other, "--held-out")
    assert code == 2 and "must be the file it was trained on" in err
    code, result, _ = _evaluate(db_url, "worse-1", other, "--tolerance", "1")
    assert code == 0 and result["gate"]["tolerance"] == 1.0 and not result["held_out"]
    assert _evaluate(db_url, "worse-1", other, "--tolerance", "2")[0] == 2
    assert _evaluate(db_url, "nope-1", other)[0] == 2
    assert len(_stored_runs(db_engine)) == 3  # refused runs are not stored
