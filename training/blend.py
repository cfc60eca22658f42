"""A blend of the boosted model and the logistic regression: the mean of their standardised
log-odds.

Gradient boosting finds interactions and thresholds in the history features; the logistic
regression (log-transformed, scaled inputs) ranks smoothly where the boosted model's few,
shallow trees put many rows on one leaf. On the public data's unseen devices each wins some
splits (bench.quality); their blend ranks better than either (the README's "Training and model
quality"). The blend's score is

    score(x) = w_b f_b(x) + w_l f_l(x),   w = 1 / (2 std of f on the training rows)

where f_b is the boosted model's raw log-odds and f_l the regression's decision function: each
member's score is put on a unit spread (the regression's balanced class weights make its
log-odds several times wider than the boosted model's) and the two are averaged. The score is
not a probability: `CalibratedClassifierCV` maps it to one (training.calibration), as it does the
others' scores. model.compiled evaluates it without scikit-learn, with its explanation: each
feature's contribution is the weighted sum of its contributions to the members' scores.
"""

from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from training.dataset import FloatArray


class ScoreBlend(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """The mean of two binary classifiers' standardised decision functions."""

    def __init__(self, boosted: Any = None, linear: Any = None) -> None:
        self.boosted = boosted
        self.linear = linear

    def fit(self, X: FloatArray, y: Any) -> "ScoreBlend":
        """Fit both members on all of (X, y), then weigh their scores to a unit spread each."""
        members = [clone(self.boosted).fit(X, y), clone(self.linear).fit(X, y)]
        weights = []
        for member in members:
            spread = float(np.std(member.decision_function(X)))
            weights.append(0.5 / spread if spread > 0 else 0.0)
        if not any(weights):
            weights = [0.5, 0.5]  # both constant: any weights give the same constant score
        self.members_ = members
        self.weights_ = np.asarray(weights, dtype=np.float64)
        self.classes_ = members[0].classes_
        return self

    def decision_function(self, X: FloatArray) -> FloatArray:
        """The blended score (higher: more likely to fail)."""
        score = self.weights_[0] * self.members_[0].decision_function(X)
        score = score + self.weights_[1] * self.members_[1].decision_function(X)
        return np.asarray(score, dtype=np.float64)

    def predict_proba(self, X: FloatArray) -> FloatArray:
        """expit(score): a rank, not a probability, until it is calibrated."""
        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: FloatArray) -> Any:
        """The class whose side of 0 the score is on."""
        return self.classes_[(self.decision_function(X) > 0).astype(int)]
