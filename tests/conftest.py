"""Fixtures shared by every suite: real databases built by the migrations, and a real model.

Every database test runs on SQLite, and on PostgreSQL when FAILCAST_TEST_DATABASE_URL is set
(.ci/run always sets it); without it the PostgreSQL runs are skipped with that reason.
"""

import fcntl
import os
import pickle
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session
from support import PG_SKIP, PG_URL, REAL_DATA, RealTraining, empty_tables, register_version

from failcast.migrations import upgrade
from model import DEVICE_FEATURES, ArtifactMetadata, dump_artifact
from persistence import (
    ModelVersion,
    ModelVersionRepository,
    create_db_engine,
    session_scope,
)

if os.environ.get("FAILCAST_REQUIRE_POSTGRES") and not PG_URL:
    raise RuntimeError("FAILCAST_REQUIRE_POSTGRES is set but FAILCAST_TEST_DATABASE_URL is not")


def reset_postgres(url: str) -> None:
    """Drop and recreate the public schema, so the migrations start from nothing."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(
    scope="session",
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=PG_SKIP)),
    ],
)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a freshly migrated database (one per backend per test session)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'failcast-test.db'}"
    else:
        assert PG_URL is not None
        url = PG_URL
        reset_postgres(url)
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def session_engine(db_url: str) -> Iterator[Engine]:
    """One engine per backend for the whole session."""
    engine = create_db_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db_engine(session_engine: Engine) -> Iterator[Engine]:
    """A migrated database for code that commits; emptied after the test."""
    yield session_engine
    empty_tables(session_engine)


@pytest.fixture
def db_session(session_engine: Engine) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back after the test."""
    connection = session_engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    yield session
    session.close()
    outer.rollback()
    connection.close()


@pytest.fixture(scope="session")
def demo_estimator() -> object:
    """A depth-4 balanced decision tree trained on the project's synthetic fleet."""
    from training import generate_synthetic
    from training.estimators import build_estimator

    data = generate_synthetic(devices=300, days=60, seed=7)
    return build_estimator("decision_tree", seed=7).fit(data.X, data.y)


@pytest.fixture(scope="session")
def demo_artifact(demo_estimator: object) -> bytes:
    """Artifact bytes of the demo estimator."""
    metadata = ArtifactMetadata("decision_tree", DEVICE_FEATURES, 0.5, {"max_depth": 4})
    return dump_artifact(demo_estimator, metadata)


@pytest.fixture
def active_model(db_engine: Engine, demo_artifact: bytes) -> ModelVersion:
    """The demo model, registered and active in the test database."""
    return register_version(db_engine, demo_artifact)


@pytest.fixture(scope="session")
def real_training(tmp_path_factory: pytest.TempPathFactory) -> RealTraining:
    """The real dataset trained once per session with the defaults of `failcast train --data`
    (about a minute and a half), registered in a SQLite registry of its own; tests that need
    the version elsewhere copy it (support.copy_version). Under pytest-xdist the workers share
    one run: the first to need it trains and leaves it (pickled) in the run's base temp
    directory, under a file lock the others wait on. Skipped visibly without the data."""
    if not REAL_DATA.is_file():
        pytest.skip(f"real dataset absent: {REAL_DATA} (set FAILCAST_TEST_DATA)")
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _train_real(tmp_path_factory.mktemp("real-training"))
    shared = tmp_path_factory.getbasetemp().parent  # this run's, shared by its workers
    with open(shared / "real-training.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "real-training.pickle"
        if done.is_file():
            loaded: RealTraining = pickle.loads(done.read_bytes())
            return loaded
        trained = _train_real(shared / "real-training")
        done.write_bytes(pickle.dumps(trained))
        return trained


def _train_real(directory: Path) -> RealTraining:
    from training import TrainOptions, train

    directory.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{directory / 'registry.db'}"
    upgrade(url)
    engine = create_db_engine(url)
    options = TrainOptions(data_path=REAL_DATA, report_dir=directory / "reports")
    started = time.perf_counter()
    outcome = train(options, engine, lambda _: None)
    seconds = time.perf_counter() - started
    with session_scope(engine) as session:
        row = ModelVersionRepository(session).get(outcome.version, with_artifact=True)
        session.expunge(row)
    engine.dispose()
    return RealTraining(outcome, row, seconds)


_SCRATCH_SCHEMA = "fc_migration_scratch"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=PG_SKIP)),
    ]
)
def scratch_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database for one test: a new SQLite file, or a schema of the PostgreSQL one."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {_SCRATCH_SCHEMA} CASCADE"))
        connection.execute(sa.text(f"CREATE SCHEMA {_SCRATCH_SCHEMA}"))
    # Everything the migrations make, and the version table, lands in the scratch schema.
    url = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={_SCRATCH_SCHEMA}"})
    yield url.render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(sa.text(f"DROP SCHEMA {_SCRATCH_SCHEMA} CASCADE"))
    admin.dispose()


@pytest.fixture
def scratch_engine(scratch_url: str) -> Iterator[sa.Engine]:
    """An engine on the scratch database."""
    engine = create_db_engine(scratch_url)
    yield engine
    engine.dispose()
