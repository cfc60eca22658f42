"""Alembic is the only schema source: the models and the migrations must agree."""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from test_seal_digests import PINNED_DIGEST, PINNED_ROW

from alembic import command
from failcast.migrations import alembic_config, upgrade
from persistence import AuditEvent, AuditSeal, metadata, verify_seals
from persistence.sealing import GENESIS, block_digest
from persistence.tables import in_schema_of

ADDED_BY_0005 = {"client_request_id", "auth_failure"}


def test_models_and_migrations_agree(session_engine):
    assert _schema_diff(session_engine) == []


def test_database_is_at_head(session_engine):
    from alembic.script import ScriptDirectory

    from failcast.migrations import current_revision

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with session_engine.connect() as connection:
        assert current_revision(connection) == head


def _schema_diff(engine: sa.Engine) -> list:
    with engine.connect() as connection:
        opts = {"compare_type": True, "include_object": in_schema_of(connection.dialect.name)}
        context = MigrationContext.configure(connection, opts=opts)
        return compare_metadata(context, metadata)


def _seal_pinned_row_at_0004(engine: sa.Engine) -> None:
    """Store the pinned row and a seal holding its digest, as the code before 0005 made them."""
    digests = {str(PINNED_ROW["id"]): PINNED_DIGEST}
    seal = {
        "sequence": 1, "sealed_at": datetime.now(UTC), "event_count": 1,
        "first_event_id": PINNED_ROW["id"], "last_event_id": PINNED_ROW["id"],
        "row_digests": digests, "prev_digest": GENESIS, "digest": block_digest(GENESIS, digests),
    }  # fmt: skip
    with engine.begin() as connection:
        connection.execute(sa.insert(AuditEvent.__table__).values(PINNED_ROW))
        connection.execute(sa.insert(AuditSeal.__table__).values(seal))


def test_a_seal_made_before_0005_verifies_after_it(scratch_url, scratch_engine):
    upgrade(scratch_url, "0004")
    _seal_pinned_row_at_0004(scratch_engine)
    upgrade(scratch_url, "head")
    report = verify_seals(scratch_engine)
    assert report.ok and report.events == 1


def test_downgrade_of_0005_removes_what_it_added_and_keeps_the_rows(scratch_url, scratch_engine):
    upgrade(scratch_url, "0004")
    _seal_pinned_row_at_0004(scratch_engine)
    before = _audit_event_shape(scratch_engine)
    upgrade(scratch_url, "head")
    command.downgrade(alembic_config(scratch_url), "0004")
    assert _audit_event_shape(scratch_engine) == before
    assert "refusal_tally" not in sa.inspect(scratch_engine).get_table_names()
    with scratch_engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT id, subject FROM audit_event")).one()
    assert stored.subject == PINNED_ROW["subject"]


def test_upgrade_after_a_downgrade_matches_the_models_again(scratch_url, scratch_engine):
    upgrade(scratch_url, "0004")
    _seal_pinned_row_at_0004(scratch_engine)
    upgrade(scratch_url, "head")
    command.downgrade(alembic_config(scratch_url), "0004")
    upgrade(scratch_url, "head")
    assert _schema_diff(scratch_engine) == []
    assert verify_seals(scratch_engine).ok


def _audit_event_shape(engine: sa.Engine) -> dict:
    """Columns, indexes and check constraints of audit_event (batch mode on SQLite rebuilds it)."""
    inspector = sa.inspect(engine)
    return {
        "columns": [c["name"] for c in inspector.get_columns("audit_event")],
        "indexes": sorted(i["name"] for i in inspector.get_indexes("audit_event")),
        "checks": sorted(c["name"] for c in inspector.get_check_constraints("audit_event")),
        "foreign_keys": sorted(fk["name"] for fk in inspector.get_foreign_keys("prediction")),
    }


def test_versions_registered_before_0011_have_a_one_day_horizon(scratch_url, scratch_engine):
    upgrade(scratch_url, "0010")
    row = {
        "version": "old-1", "algorithm": "decision_tree", "params": "{}", "feature_names": "[]",
        "threshold": 0.5, "metrics": "{}", "trained_on_synthetic_data": True,
        "data_sha256": "synthetic:test", "data_rows": 1, "data_failures": 1,
        "data_source": "test", "lineage": "{}", "artifact_sha256": "0" * 64, "artifact": b"",
        "created_at": datetime.now(UTC), "is_active": False,
    }  # fmt: skip
    columns = ", ".join(row)
    values = ", ".join(f":{name}" for name in row)
    with scratch_engine.begin() as connection:
        connection.execute(sa.text(f"INSERT INTO model_version ({columns}) VALUES ({values})"), row)
    upgrade(scratch_url, "head")
    with scratch_engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT version, horizon_days FROM model_version"))
        assert stored.one() == ("old-1", 1)
