"""`failcast train --from-database` on the real data, as the service would have stored it.

Once per database (a module fixture): the public dataset (tests/support.REAL_DATA; skipped
visibly without it) is replayed through `predictBatch` of the real app, with a real token, in
date order, in batches of 1,000 rows, each row with its deviceId and observedAt = its date at
00:00 UTC; its failures are then recorded with `failcast outcomes import` (the CLI's entry
point, in this process), from a file of the failure rows. How long both take is printed.

The dataset built from the database must then be the file's own rows: the same devices, days,
metrics and labels, sorted by device and day. The file holds one device-day twice (S1F0R4Q8,
2015-07-10, the same row twice); the service keeps one row per device-day, so it is compared
with the file less that copy (checked to be an exact copy). Training from the database must
give the cross-validated scores of the same pipeline, seed and folds on those file rows.
"""

import csv
import gzip
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient
from support import REAL_DATA, empty_tables, gql, needs_real_data, register_version

from auth import Scope, mint_token
from failcast.cli import main
from graph.app import create_app
from graph.settings import Settings
from model import DEVICE_FEATURES
from persistence import ModelVersionRepository, session_scope
from training import Dataset, TrainOptions, load_dataset, train
from training.database import load_database_dataset, rows_digest
from training.estimators import LOGISTIC_REGRESSION
from training.experiment import run_experiment
from training.features import COUNTERS

pytestmark = needs_real_data

BATCH = "mutation B($rows: [PredictInput!]!) { predictBatch(inputs: $rows) { id } }"
BATCH_ROWS = 1000
SEED = 0
FOLDS = 5


def _file_rows() -> list[dict]:
    """The file's rows as predictBatch inputs, read with the csv module, in date order."""
    with gzip.open(REAL_DATA, "rt", encoding="latin-1", newline="") as handle:
        rows = [
            {
                "deviceId": line["device"],
                "observedAt": f"{line['date']}T00:00:00Z",
                **{name: float(line[name]) for name in DEVICE_FEATURES},
            }
            for line in csv.DictReader(handle)
        ]
    return sorted(rows, key=lambda row: row["observedAt"])  # stable: a day keeps file order


def _failures_file(directory: Path) -> Path:
    """The file's header and its failure rows (an outcomes file in the public format)."""
    with gzip.open(REAL_DATA, "rt", encoding="latin-1", newline="") as handle:
        lines = handle.read().splitlines()
    header = lines[0].split(",")
    failure = header.index("failure")
    failed = [line for line in lines[1:] if line.split(",")[failure] == "1"]
    path = directory / "failures.csv"
    path.write_text("\n".join([lines[0], *failed]) + "\n", encoding="latin-1")
    return path


def _say(config: pytest.Config, message: str) -> None:
    """Print past pytest's capture, so the figure shows in every run's output."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(message, file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def replayed(
    request: pytest.FixtureRequest,
    db_url: str,
    session_engine: Engine,
    demo_artifact: bytes,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Engine]:
    """The real data replayed through predictBatch and its failures imported as outcomes."""
    engine = session_engine
    empty_tables(engine)
    register_version(engine, demo_artifact)  # any serving model: its scores are not used
    settings = Settings(
        database_url=db_url,
        jwt_secret="replay-secret-" + "x" * 40,
        rate_limits={"predict": (1e6, 1e6)},  # 124 batches of 1,000 in a row
    )
    token = mint_token(settings.auth_config(), "replay", [Scope.PREDICT], timedelta(hours=1))
    headers = {"Authorization": f"Bearer {token}"}
    rows = _file_rows()
    kind = engine.dialect.name
    try:
        started = time.perf_counter()
        with TestClient(create_app(settings)) as client:
            for start in range(0, len(rows), BATCH_ROWS):
                body = gql(client, BATCH, {"rows": rows[start : start + BATCH_ROWS]}, headers)
                assert "errors" not in body, body["errors"][:1]
        replay = time.perf_counter() - started
        failures = _failures_file(tmp_path_factory.mktemp("outcomes"))
        started = time.perf_counter()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("FAILCAST_DATABASE_URL", db_url)
            assert main(["outcomes", "import", str(failures)]) == 0
        imported = time.perf_counter() - started
        _say(
            request.config,
            f"\n[{kind}] replayed {len(rows):,} real rows through predictBatch in {replay:.1f} s;"
            f" imported the failures as outcomes in {imported:.2f} s",
        )
        yield engine
    finally:
        empty_tables(engine)


@pytest.fixture(scope="module")
def from_file() -> Dataset:
    return load_dataset(REAL_DATA)


@pytest.fixture(scope="module")
def file_once_per_day(from_file: Dataset) -> Dataset:
    """The file's rows sorted by device and day, its one repeated device-day kept once."""
    rows = from_file.subset(np.lexsort((from_file.dates, from_file.devices)))
    same = (rows.devices[1:] == rows.devices[:-1]) & (rows.dates[1:] == rows.dates[:-1])
    [repeat] = np.flatnonzero(same) + 1  # the file holds exactly one
    assert (rows.devices[repeat], str(rows.dates[repeat])) == ("S1F0R4Q8", "2015-07-10")
    np.testing.assert_array_equal(rows.X[repeat], rows.X[repeat - 1])  # an exact copy
    assert rows.y[repeat] == rows.y[repeat - 1]
    return rows.subset(np.flatnonzero(np.append(True, ~same)))


def test_the_database_holds_the_files_rows(replayed, file_once_per_day):
    stored = load_database_dataset(replayed)
    expected = file_once_per_day
    np.testing.assert_array_equal(stored.devices, expected.devices)
    np.testing.assert_array_equal(stored.dates, expected.dates)
    np.testing.assert_array_equal(stored.X, expected.X)
    np.testing.assert_array_equal(stored.y, expected.y)
    digest = rows_digest(expected.devices, expected.dates, expected.X, expected.y)
    assert stored.fingerprint.sha256 == f"database:{digest}"
    selection = stored.fingerprint.database
    assert (selection.predictions, selection.rows, selection.duplicates_dropped) == (
        124_165,
        124_164,
        1,
    )
    assert (selection.devices, selection.failures) == (1_163, 106)
    assert selection.rows_without_outcome == 124_164 - 106  # only failures were imported
    assert (str(stored.fingerprint.date_from), str(stored.fingerprint.date_to)) == (
        "2015-01-01",
        "2015-11-02",
    )


def _options(report_dir: Path, from_database: bool) -> TrainOptions:
    return TrainOptions(
        from_database=from_database,
        algorithm=LOGISTIC_REGRESSION,
        feature_set=COUNTERS,  # one candidate set: the point is the data, not the search
        seed=SEED,
        cv_folds=FOLDS,
        validation_curve=False,
        report_dir=report_dir,
    )


@pytest.fixture(scope="module")
def file_scores(file_once_per_day: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same training run's cross-validation on the file's rows (in the file's order)."""
    rows = file_once_per_day.subset(np.argsort(file_once_per_day.dates, kind="stable"))
    options = _options(tmp_path_factory.mktemp("file-report"), from_database=False)
    return run_experiment(options, rows, lambda _: None).metrics()["cross_validation"]


def test_training_from_the_database_scores_as_training_from_the_file(
    replayed, file_scores, tmp_path
):
    outcome = train(_options(tmp_path, from_database=True), replayed, lambda _: None)
    stored = outcome.metrics["cross_validation"]
    assert stored["folds"] == file_scores["folds"] == FOLDS
    for metric in ("roc_auc", "pr_auc"):
        assert stored[metric]["per_fold"] == pytest.approx(
            file_scores[metric]["per_fold"], abs=1e-9
        ), metric
    assert stored["roc_auc"]["mean"] > 0.8  # the reference pipeline's figure (SOURCE.md)
    with session_scope(replayed) as session:
        row = ModelVersionRepository(session).get(outcome.version)
    assert (row.data_rows, row.data_failures) == (124_164, 106)
    assert row.lineage["data_origin"] == "database"
    assert row.lineage["data"]["database"]["duplicates_dropped"] == 1
