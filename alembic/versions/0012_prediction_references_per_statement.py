"""prediction's references checked once per statement on PostgreSQL

On PostgreSQL a foreign key is checked row by row: for each inserted prediction its trigger
looks the audit row and the model version up and locks them (FOR KEY SHARE), 1,000 lookups of
the same two rows for a 1,000-row batch, about a third of its COPY. Triggers that run once per
statement over the statement's new rows (a transition table) check and lock each distinct key
once instead. Every guarantee of the two foreign keys is kept, with the same SQLSTATE (23503,
foreign_key_violation), so the same error reaches the code:

- a prediction (inserted or updated) must name an audit row and a model version that exist;
- the rows it names are locked FOR KEY SHARE until its transaction ends, so that a concurrent
  DELETE of them waits, and then fails (its own check sees the committed prediction);
- an audit row or a model version that a prediction names cannot be deleted, have its id
  changed, or be truncated while predictions remain (TRUNCATE of both tables together works).

SQLite keeps its foreign keys: its check is a cheap index probe in the same B-tree pass.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 08:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (foreign key's name, prediction's column, referenced table, the type of its id)
REFERENCES = (
    ("fk_prediction_audit_event_id_audit_event", "audit_event_id", "audit_event", "uuid"),
    ("fk_prediction_model_version_id_model_version", "model_version_id", "model_version", "integer"),
)


def _missing_check(name: str, column: str, table: str, id_type: str) -> str:
    """PL/pgSQL: for each distinct key of the statement's new predictions, lock its row (as a
    foreign key does, FOR KEY SHARE) or refuse the statement if there is none.

    One primary-key lookup per key, as a foreign key's own query: a set-wise join of the
    transition table with `table` could be planned as a scan of the whole table (a plan made
    while the table was young is kept by the session), which cost ~2 ms per statement."""
    return f"""
  FOR key IN SELECT DISTINCT {column}::text FROM new_rows LOOP
    PERFORM 1 FROM {table} r WHERE r.id = key::{id_type} FOR KEY SHARE OF r;
    IF NOT FOUND THEN
      RAISE foreign_key_violation USING
        MESSAGE = 'insert or update on table "prediction" violates foreign key constraint '
                  '"{name}"',
        DETAIL = format('Key ({column})=(%s) is not present in table "{table}".', key),
        TABLE = 'prediction', CONSTRAINT = '{name}';
    END IF;
  END LOOP;"""


def _referenced_function(name: str, column: str, table: str, id_type: str) -> str:
    """PL/pgSQL: refuse a DELETE, an id change or a TRUNCATE of `table` rows that predictions
    still name (one index lookup per key gone, as a foreign key's own check)."""
    gone = {
        "DELETE": "SELECT id::text FROM old_rows",
        "UPDATE": "SELECT id::text FROM old_rows EXCEPT SELECT id::text FROM new_rows",
    }
    message = (
        f"'update or delete on table \"{table}\" violates foreign key constraint \"{name}\" "
        f"on table \"prediction\"'"
    )
    return f"""
CREATE FUNCTION {table}_kept_while_predictions_name_it() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  key text;
  keys refcursor;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    IF EXISTS (SELECT 1 FROM prediction) THEN
      RAISE feature_not_supported USING
        MESSAGE = 'cannot truncate a table referenced in a foreign key constraint',
        DETAIL = 'Table "prediction" references "{table}".',
        HINT = 'Truncate table "prediction" at the same time.';
    END IF;
    RETURN NULL;
  ELSIF TG_OP = 'DELETE' THEN
    OPEN keys FOR {gone["DELETE"]};
  ELSE
    OPEN keys FOR {gone["UPDATE"]};
  END IF;
  LOOP
    FETCH keys INTO key;
    EXIT WHEN NOT FOUND;
    PERFORM 1 FROM prediction p WHERE p.{column} = key::{id_type} LIMIT 1;
    IF FOUND THEN
      RAISE foreign_key_violation USING
        MESSAGE = {message},
        DETAIL = format('Key (id)=(%s) is still referenced from table "prediction".', key),
        TABLE = '{table}', CONSTRAINT = '{name}';
    END IF;
  END LOOP;
  CLOSE keys;
  RETURN NULL;
END $$"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    checks = "".join(_missing_check(*reference) for reference in REFERENCES)
    op.execute(f"""
CREATE FUNCTION prediction_references_exist() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  key text;
BEGIN{checks}
  RETURN NULL;
END $$""")
    for event in ("INSERT", "UPDATE"):
        op.execute(
            f"CREATE TRIGGER prediction_references_on_{event.lower()} AFTER {event} ON prediction"
            " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
            " EXECUTE FUNCTION prediction_references_exist()"
        )
    for name, column, table, id_type in REFERENCES:
        op.drop_constraint(name, "prediction", type_="foreignkey")
        op.execute(_referenced_function(name, column, table, id_type))
        function = f"{table}_kept_while_predictions_name_it()"
        op.execute(
            f"CREATE TRIGGER {table}_referenced_on_delete AFTER DELETE ON {table}"
            f" REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}"
        )
        op.execute(
            f"CREATE TRIGGER {table}_referenced_on_update AFTER UPDATE ON {table}"
            " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {function}"
        )
        op.execute(
            f"CREATE TRIGGER {table}_referenced_on_truncate AFTER TRUNCATE ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {function}"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, column, table, _ in REFERENCES:
        for event in ("delete", "update", "truncate"):
            op.execute(f"DROP TRIGGER {table}_referenced_on_{event} ON {table}")
        op.execute(f"DROP FUNCTION {table}_kept_while_predictions_name_it()")
        op.create_foreign_key(name, "prediction", table, [column], ["id"])
    for event in ("insert", "update"):
        op.execute(f"DROP TRIGGER prediction_references_on_{event} ON prediction")
    op.execute("DROP FUNCTION prediction_references_exist()")
