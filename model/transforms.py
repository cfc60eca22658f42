"""Input transforms a model pipeline may apply, in numpy only (serving evaluates them too)."""

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def signed_log1p(values: FloatArray) -> FloatArray:
    """sign(x) * log1p(|x|): log1p's compression of heavy tails, for values of either sign
    (history deltas are negative when a counter falls). Equal to log1p, bit for bit, on x >= 0."""
    return np.asarray(np.sign(values) * np.log1p(np.abs(values)), dtype=np.float64)
