"""Running the Alembic migrations from code: the only way the schema is created."""

import os
from pathlib import Path

from alembic.config import Config
from sqlalchemy.engine import Connection

from alembic import command

_REPO_ROOT = Path(__file__).resolve().parents[1]


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the project's migrations, with the caller's database."""
    root = Path(os.environ.get("FAILCAST_HOME", _REPO_ROOT))
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "alembic"))
    if url is not None:
        # ConfigParser treats % as interpolation: escape it in passwords.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision`."""
    command.upgrade(alembic_config(url), revision)


def current_revision(connection: Connection) -> str | None:
    """The revision the connected database is at, or None when unmigrated."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
