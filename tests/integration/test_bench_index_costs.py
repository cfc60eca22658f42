"""`python -m bench.index_costs` weighs every index of `prediction` against the table as
migrated, and leaves the table as it found it: run here on a real SQLite file and on the
PostgreSQL test server, with the product's own write path."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import PG_SKIP, PG_URL

from bench.index_costs import (
    ALL,
    NO_TRIGGER,
    TABLE_ALONE,
    TRIGGER,
    Database,
    Template,
    main,
    seed,
    variants,
)
from bench.stack import PostgresAdmin
from persistence import Prediction


def _indexes(engine: sa.Engine) -> set[str]:
    return {str(ix["name"]) for ix in sa.inspect(engine).get_indexes("prediction")}


def _trigger_enabled(engine: sa.Engine) -> bool | None:
    """Whether the references' trigger fires (None: SQLite, which has no such trigger)."""
    if engine.dialect.name == "sqlite":
        return None
    with engine.connect() as connection:
        state = connection.execute(
            sa.text("SELECT tgenabled FROM pg_trigger WHERE tgname = :name"), {"name": TRIGGER}
        ).scalar_one()
    return bool(state == "O")


def test_every_index_of_the_table_is_weighed_alone_and_all_together() -> None:
    indexes = {str(index.name) for index in Prediction.__table__.indexes}
    for sqlite in (True, False):
        found = {name: (set(map(str, (i.name for i in dropped))), trigger)
                 for name, dropped, trigger in variants(sqlite)}  # fmt: skip
        assert next(iter(found)) == ALL and found[ALL] == (set(), False)
        assert found[TABLE_ALONE] == (indexes, False)
        for index in indexes:
            assert found[f"without {index}"] == ({index}, False)
        assert (NO_TRIGGER in found) is not sqlite
        assert len(found) == len(indexes) + 2 + (0 if sqlite else 1)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=PG_SKIP)),
    ]
)
def template(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Template]:
    """A template on SQLite, or a database of the PostgreSQL test server (as an admin URL)."""
    admin = PostgresAdmin(PG_URL) if request.param == "postgresql" and PG_URL else None
    yield Template(admin, tmp_path)
    if admin is not None:
        admin.drop_all()


def _count(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM prediction")).scalar_one())
    finally:
        engine.dispose()


def test_each_variant_writes_into_a_fresh_copy_that_lacks_only_what_it_drops(template) -> None:
    fleet = seed(template, devices=5, seed_blocks=2)
    seeded = Database(template.url, template.admin)
    try:
        before, enabled = _indexes(seeded.engine), _trigger_enabled(seeded.engine)
    finally:
        seeded.engine.dispose()
    assert len(before) == len(Prediction.__table__.indexes) and enabled in (None, True)
    weighed = [v for v in variants(template.admin is None) if v[0] in (TABLE_ALONE, NO_TRIGGER)]
    assert len(weighed) == (1 if template.admin is None else 2)
    for _, dropped, trigger in weighed:
        with template.copy() as url:
            database = Database(url, template.admin)
            try:
                assert _indexes(database.engine) == before
                database.change(dropped, trigger)
                assert _indexes(database.engine) == before - {str(i.name) for i in dropped}
                assert _trigger_enabled(database.engine) in (None, not trigger)
                cpu, process, wall = database.write([fleet.block()])
            finally:
                database.engine.dispose()
            assert cpu >= 0 and process > 0 and wall > 0
            assert _count(url) == 15  # the 10 seeded, then the block
        if template.admin is None:
            assert not (template.directory / "copy.db").exists()
        else:
            assert template.admin.created == [sa.make_url(template.url).database]
    assert _count(template.url) == 10  # the template itself is left as seeded
    database = Database(template.url, template.admin)
    try:
        assert _indexes(database.engine) == before
        assert _trigger_enabled(database.engine) == enabled
    finally:
        database.engine.dispose()


def test_the_bench_prints_a_row_per_variant_with_its_ratio_to_the_baseline() -> None:
    printed: list[str] = []
    args = ["--devices", "20", "--seed-blocks", "3", "--blocks", "2", "--rounds", "2"]
    assert main(args, out=printed.append) == 0
    lines = printed[0].splitlines()
    assert lines[0] == "## SQLite: 60 predictions seeded, 2 blocks of 20 per variant and round"
    rows = [line for line in lines if line.startswith("| ") and "variant" not in line]
    assert [row.split(" | ")[0][2:] for row in rows] == [name for name, _, _ in variants(True)]
    assert "| 1.000 [1.000-1.000] |" in rows[0]  # the baseline, against itself in each round
