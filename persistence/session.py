"""The unit of work: one session, one commit, database errors translated to our own."""

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Engine
from sqlmodel import Session

from persistence.errors import Conflict, DatabaseUnavailable


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver errors into persistence errors that carry a stable code and no SQL."""
    try:
        yield
    except exc.IntegrityError as error:
        raise Conflict("the write conflicts with stored data") from error
    except (exc.OperationalError, exc.InterfaceError, exc.DatabaseError) as error:
        raise DatabaseUnavailable("the database is unavailable") from error
    except exc.TimeoutError as error:  # pool exhausted
        raise DatabaseUnavailable("no database connection available") from error


@contextmanager
def driver_errors(dialect: sa.Dialect) -> Iterator[None]:
    """The driver's errors of a statement run past SQLAlchemy, as persistence errors."""
    try:
        yield
    except dialect.loaded_dbapi.IntegrityError as error:
        raise Conflict("the write conflicts with stored data") from error
    except dialect.loaded_dbapi.Error as error:
        raise DatabaseUnavailable("the database is unavailable") from error


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """Open a session, commit once on success, roll back on any error."""
    with translate_errors(), Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
