"""Alembic is the only schema source: the models and the migrations must agree."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from persistence import metadata


def test_models_and_migrations_agree(session_engine):
    with session_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_database_is_at_head(session_engine):
    from alembic.script import ScriptDirectory

    from failcast.migrations import alembic_config, current_revision

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with session_engine.connect() as connection:
        assert current_revision(connection) == head
