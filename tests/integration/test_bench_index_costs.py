"""`python -m bench.index_costs` weighs every index of `prediction` against the table as
migrated, and leaves the table as it found it: run here on a real SQLite file and on the
PostgreSQL test server, with the product's own write path."""

import sqlalchemy as sa

from bench.index_costs import ALL, NO_TRIGGER, TABLE_ALONE, TRIGGER, Database, Fleet, main, variants
from bench.seeding import placeholder_version
from failcast.migrations import upgrade
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


def test_a_variant_drops_what_it_names_and_leaves_the_table_as_it_found_it(scratch_url) -> None:
    upgrade(scratch_url)
    database = Database(scratch_url)
    try:
        before, enabled = _indexes(database.engine), _trigger_enabled(database.engine)
        assert len(before) == len(Prediction.__table__.indexes) and enabled in (None, True)
        fleet = Fleet(placeholder_version(database.engine, "t-1", "tests"), devices=5)
        weighed = [v for v in variants(database.sqlite) if v[0] in (TABLE_ALONE, NO_TRIGGER)]
        assert len(weighed) == (1 if database.sqlite else 2)
        for _, dropped, trigger in weighed:
            with database.without(dropped, trigger):
                assert _indexes(database.engine) == before - {str(i.name) for i in dropped}
                assert _trigger_enabled(database.engine) in (None, not trigger)
                cpu, process, wall = database.write([fleet.block()])
            assert cpu >= 0 and process > 0 and wall > 0
            assert _indexes(database.engine) == before
            assert _trigger_enabled(database.engine) == enabled
        with database.engine.connect() as connection:
            stored = connection.execute(sa.text("SELECT count(*) FROM prediction")).scalar_one()
        assert stored == 5 * len(weighed)
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
