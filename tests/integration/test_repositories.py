"""Repositories on real databases, each test inside a rolled-back transaction."""

from datetime import date

import pytest
from support import register_version

from persistence import Conflict, ModelVersionRepository, NotFound, session_scope


def test_activation_leaves_exactly_one_active_version(db_engine, demo_artifact):
    register_version(db_engine, demo_artifact, "v-1")
    register_version(db_engine, demo_artifact, "v-2")
    with session_scope(db_engine) as session:
        repo = ModelVersionRepository(session)
        repo.activate("v-1")
    with session_scope(db_engine) as session:
        active = [v.version for v in ModelVersionRepository(session).list_all() if v.is_active]
    assert active == ["v-1"]


def test_two_active_versions_are_refused_by_the_database(db_engine, demo_artifact):
    import sqlalchemy as sa

    register_version(db_engine, demo_artifact, "v-1")
    register_version(db_engine, demo_artifact, "v-2", activate=False)
    with pytest.raises(Conflict), session_scope(db_engine) as session:
        session.execute(sa.text("UPDATE model_version SET is_active = true"))


def test_activating_an_unknown_version_is_not_found(db_session):
    with pytest.raises(NotFound):
        ModelVersionRepository(db_session).activate("nope")


def test_version_names_count_up_per_day(db_engine, demo_artifact):
    with session_scope(db_engine) as session:
        assert ModelVersionRepository(session).next_version_name(date(2026, 1, 2)) == "2026.01.02-1"
    register_version(db_engine, demo_artifact, "2026.01.02-1")
    with session_scope(db_engine) as session:
        assert ModelVersionRepository(session).next_version_name(date(2026, 1, 2)) == "2026.01.02-2"
