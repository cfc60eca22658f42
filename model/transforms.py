"""Input transforms that fitted pipelines reference, in numpy only.

A pipeline pickles its FunctionTransformer's function by import path, so the function lives here,
where a process without scikit-learn can import it (model.compiled evaluates it by name).
"""

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def signed_log1p(x: FloatArray) -> FloatArray:
    """sign(x) * log1p(|x|): log1p's compression of heavy tails, made odd so that negative values
    (history deltas) stay finite where log1p gives NaN below -1. Equal to np.log1p, bit for bit,
    on values >= 0 (copysign only sets the sign of log1p's result)."""
    return np.asarray(np.copysign(np.log1p(np.abs(x)), x), dtype=np.float64)
