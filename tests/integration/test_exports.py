"""persistence.exports on real databases: values as Python writes them, the index walked, batches."""

import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select
from support import seed_predictions

from persistence import METRIC_COLUMNS, Prediction, PredictionFilter
from persistence.exports import CREATION_ORDER_INDEX, EXPORT_COLUMNS, export_batch

T0 = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture
def stored(db_engine, active_model) -> list[Prediction]:
    """Predictions of three requests (ties in creation time), read back through the ORM."""
    rng = random.Random(3)
    for n in range(3):
        rows = [(f"dev-{rng.randrange(5)}" if i % 4 else None,
                 T0 + timedelta(seconds=rng.randrange(10**6), microseconds=rng.choice([0, 1, rng.randrange(10**6)])),
                 rng.random()) for i in range(40)]  # fmt: skip
        made = T0 + timedelta(days=10 + n, microseconds=n * 500_000)
        seed_predictions(db_engine, active_model.id, rows, "s", made)
    with Session(db_engine) as session:
        query = select(Prediction).order_by(col(Prediction.created_at), col(Prediction.id))
        return list(session.exec(query))


def _as_python_writes_it(row: Prediction) -> tuple:
    values = [getattr(row, name) for name in EXPORT_COLUMNS]
    values[:3] = [str(row.id), row.created_at.isoformat(), row.observed_at.isoformat()]
    return tuple(values)


def test_rows_hold_ids_and_times_as_python_writes_them(db_engine, stored):
    batch = export_batch(db_engine, PredictionFilter(), 1000)
    exported = [(*row[:4], bool(row[4]), *row[5:]) for row in batch.rows]
    assert exported == [_as_python_writes_it(row) for row in stored]
    assert any(row[2].endswith(".000001+00:00") for row in batch.rows)
    assert any("." not in row[2] for row in batch.rows)  # no fraction when it is .000000
    assert all(
        isinstance(row[8 + i], float) for row in batch.rows for i in range(len(METRIC_COLUMNS))
    )


@pytest.mark.parametrize("size", [1, 7, 40, 120, 500])
def test_batches_visit_every_row_once_in_creation_order(db_engine, stored, size):
    ids, after = [], None
    while True:
        batch = export_batch(db_engine, PredictionFilter(subject="s"), size, after)
        ids += [row[0] for row in batch.rows]
        after = batch.after
        if len(batch.rows) < size:
            break
    assert ids == [str(row.id) for row in stored]


FILTERS = [
    PredictionFilter(),
    PredictionFilter(model_version="test-1"),
    PredictionFilter(device_id="dev-1"),
    PredictionFilter(subject="s", device_id_prefix="dev"),
    PredictionFilter(observed_from=T0, observed_to=T0 + timedelta(days=3), is_failure=True),
]


@pytest.mark.parametrize("where", FILTERS, ids=range(len(FILTERS)))
def test_every_batch_walks_the_creation_order_index_whatever_the_filter(db_engine, stored, where):
    plans: list[str] = []

    def explain(conn, cursor, statement, parameters, context, many) -> None:
        if "FROM prediction" in statement and not statement.startswith("EXPLAIN"):
            prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
            explained = cursor.connection.cursor()
            explained.execute(prefix + statement, parameters)
            plans.append("\n".join(str(line) for line in explained.fetchall()))

    sa.event.listen(db_engine, "before_cursor_execute", explain)
    try:
        first = export_batch(db_engine, where, 10)
        export_batch(db_engine, where, 10, first.after)
    finally:
        sa.event.remove(db_engine, "before_cursor_execute", explain)
    assert len(plans) == 2
    for plan in plans:
        assert CREATION_ORDER_INDEX in plan, plan
        assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan


def test_the_sqlite_index_hint_stays_with_the_export(db_engine, stored):
    export_batch(db_engine, PredictionFilter(device_id="dev-1"), 10)
    seen: list[str] = []

    def note(conn, cursor, statement, *args) -> None:
        seen.append(statement)

    sa.event.listen(db_engine, "before_cursor_execute", note)
    try:
        with db_engine.connect() as connection:  # the pool's last connection: the export's
            connection.execute(sa.select(sa.func.count()).select_from(Prediction))
    finally:
        sa.event.remove(db_engine, "before_cursor_execute", note)
    assert seen and "INDEXED BY" not in seen[-1]
