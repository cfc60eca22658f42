"""Errors of the persistence package, each with a stable code."""


class PersistenceError(Exception):
    """Base of every persistence error."""

    code = "PERSISTENCE_ERROR"


class DatabaseUnavailable(PersistenceError):
    """The database could not be reached or refused the write; nothing was stored."""

    code = "SERVICE_UNAVAILABLE"


class NotFound(PersistenceError):
    """The row asked for does not exist."""

    code = "NOT_FOUND"


class Conflict(PersistenceError):
    """The write breaks a uniqueness or integrity rule."""

    code = "CONFLICT"
