"""A loaded model: features in, failure probabilities out, one row or many through one path."""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from model.compiled import Evaluator, Explanation
from model.history import HistoryFeatures

FloatArray = npt.NDArray[np.float64]


class Predictor:
    """Predicts P(failure) for rows of features in `feature_names` order."""

    def __init__(
        self,
        feature_names: Sequence[str],
        threshold: float,
        algorithm: str,
        fast: Evaluator | None,
        load_estimator: Callable[[], Any],
    ) -> None:
        self.feature_names = tuple(feature_names)
        # How the features are made from telemetry (ValueError for a name that is neither a
        # counter nor a history feature), and how many earlier observations they read.
        self.features = HistoryFeatures(self.feature_names)
        self.threshold = float(threshold)
        self.algorithm = algorithm
        self._fast = fast
        self._load_estimator = load_estimator
        self._estimator: Any = None

    @property
    def compiled(self) -> bool:
        """Whether predictions bypass scikit-learn entirely."""
        return self._fast is not None

    @property
    def estimator(self) -> Any:
        """The scikit-learn estimator, unpickled (and sklearn imported) on first use only."""
        if self._estimator is None:
            self._estimator = self._load_estimator()
        return self._estimator

    def predict_proba(self, matrix: FloatArray) -> FloatArray:
        """Return P(failure) for each row of an (n, features) float64 array."""
        self._check_shape(matrix)
        if self._fast is not None:
            return self._fast(matrix)
        return self.reference_proba(matrix)

    def explain(self, matrix: FloatArray) -> tuple[FloatArray, list[Explanation] | None]:
        """P(failure) of each row and, in the same pass, why (model.compiled's explanations);
        None instead of explanations for a model scikit-learn answers (not compiled)."""
        self._check_shape(matrix)
        if self._fast is not None:
            return self._fast.explain(matrix, self.feature_names)
        return self.reference_proba(matrix), None

    def _check_shape(self, matrix: FloatArray) -> None:
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise ValueError(f"expected an (n, {len(self.feature_names)}) array")

    def reference_proba(self, matrix: FloatArray) -> FloatArray:
        """P(failure) through scikit-learn's own predict_proba (the slow, reference path)."""
        estimator = self.estimator
        positive = [int(c) for c in estimator.classes_].index(1)
        return np.asarray(estimator.predict_proba(matrix)[:, positive], dtype=np.float64)

    def is_failure(self, probabilities: FloatArray) -> npt.NDArray[np.bool_]:
        """Apply the decision threshold chosen at training time."""
        return probabilities >= self.threshold

    def matrix(self, rows: Sequence[Mapping[str, float]]) -> FloatArray:
        """Arrange mappings of feature name to value into a float64 matrix."""
        names = self.feature_names
        return np.array([[row[name] for name in names] for row in rows], dtype=np.float64)
