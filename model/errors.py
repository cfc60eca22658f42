"""Errors of the model package, each with a stable code."""


class ModelError(Exception):
    """Base of every model-runtime error."""

    code = "MODEL_ERROR"


class ArtifactIntegrityError(ModelError):
    """The artifact bytes do not match the digest the registry recorded."""

    code = "MODEL_INTEGRITY"


class ArtifactFormatError(ModelError):
    """The artifact unpickled, but is not a failcast model of a known format."""

    code = "MODEL_FORMAT"


class ArtifactDependencyError(ModelError):
    """The artifact needs a module this process lacks (scikit-learn, for uncompiled models)."""

    code = "MODEL_DEPENDENCY"


class GoldenSetMismatch(ModelError):
    """The version's golden inputs no longer score as they did when it was registered."""

    code = "MODEL_GOLDEN_SET"
