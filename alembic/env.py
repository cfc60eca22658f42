"""Alembic environment: persistence metadata in, the URL or connection from the caller."""

import os

from sqlalchemy import engine_from_config, pool
from sqlalchemy.engine import Connection

from alembic import context
from persistence import metadata
from persistence.tables import in_schema_of

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("FAILCAST_DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: pass one, or set FAILCAST_DATABASE_URL")
    return url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
        include_object=in_schema_of(connection.dialect.name),
    )


def run_migrations_offline() -> None:
    """Emit SQL for a URL without connecting."""
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against a connection the caller gave, or one made from the URL."""
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        {"sqlalchemy.url": _url()}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
