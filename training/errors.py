"""Errors of the training package, each with a stable code."""


class TrainingError(Exception):
    """Base of every training error."""

    code = "TRAINING_ERROR"


class DataNotFoundError(TrainingError):
    """The data file does not exist or cannot be read."""

    code = "DATA_NOT_FOUND"


class UnreadableDataError(TrainingError):
    """The file is not a (gzipped) CSV we can decode."""

    code = "DATA_UNREADABLE"


class EmptyDatasetError(TrainingError):
    """The file has no header, or a header and no rows."""

    code = "DATA_EMPTY"


class MissingColumnsError(TrainingError):
    """The header lacks columns the public format requires."""

    code = "DATA_MISSING_COLUMNS"

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"missing required column(s): {', '.join(missing)}")
        self.missing = missing


class MalformedRowError(TrainingError):
    """A data row cannot be parsed; `line` is its 1-based line number in the file."""

    code = "DATA_MALFORMED_ROW"

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class NoFailuresError(TrainingError):
    """The data holds no failure rows, so there is nothing to learn or score."""

    code = "DATA_NO_FAILURES"


class InsufficientDataError(TrainingError):
    """Too few failing devices to put failures on every side of a split."""

    code = "DATA_INSUFFICIENT"


class InvalidOptionsError(TrainingError):
    """The training options are inconsistent or name something unknown."""

    code = "TRAINING_INVALID_OPTIONS"


class VersionNotFoundError(TrainingError):
    """No registered model version has the requested name."""

    code = "VERSION_NOT_FOUND"
