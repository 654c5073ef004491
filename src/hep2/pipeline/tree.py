"""Labels at several depths of the pattern tree (`hep2.data.patterns`): learning them, and scoring at a shared depth.

- `TreeClassifier` learns from cells labelled at different depths (I3A's ``speckled`` beside SNPHEp-2's
  ``fine_speckled`` and ``coarse_speckled``): the model's classes are the leaves; a cell with a parent label
  counts for the child its parent allows that the model finds most probable (hard expectation-maximisation of
  the likelihood in which a parent's probability is the sum of its children's).
- `Scoring` scores a model's probabilities against labels at the depth both share: the model's classes and the
  labels are folded (`hep2.data.patterns.shared_depth`), cells whose folded label the model cannot give are
  left out and counted, and calls of a class the labels never name stay in the confusion as errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from ..data.patterns import fold_proba, leaf_sets, shared_depth, with_icap
from .predict import full_proba


def nested(classes) -> bool:
    """True when one of ``classes`` holds another (``speckled`` and ``fine_speckled``)."""
    leaves, _ = leaf_sets(classes)
    return len(leaves) < len(list(classes))


class TreeClassifier(ClassifierMixin, BaseEstimator):
    """A classifier of the leaves of ``classes`` that also learns from cells labelled by a parent.

    Parameters
    ----------
    estimator : classifier
        The classifier to fit (cloned), on class indices.
    classes : list of str
        The names of the class indices ``y`` holds (the dataset's classes).
    rounds : int
        Expectation-maximisation rounds: fit on the leaf-labelled cells, give each parent-labelled cell its most
        probable allowed leaf, refit on all; repeated ``rounds`` times.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [0.1], [1.0], [1.1], [2.0], [2.1], [1.05], [2.05]])
    >>> y = np.array([0, 0, 1, 1, 2, 2, 3, 3])  # the last two say only "speckled"
    >>> clf = TreeClassifier(LogisticRegression(), ["homogeneous", "fine_speckled", "coarse_speckled", "speckled"])
    >>> clf.fit(X, y).classes_.tolist(), clf.predict(np.array([[2.05]])).tolist()
    ([0, 1, 2], [2])
    """

    def __init__(self, estimator=None, classes=(), rounds: int = 2):
        self.estimator, self.classes, self.rounds = estimator, classes, rounds

    def fit(self, X, y):
        y = np.asarray(y)
        names = list(self.classes)
        present = [names[i] for i in np.unique(y)]
        leaves, allowed = leaf_sets(present)
        leaf_idx = np.array([names.index(c) for c in leaves])
        is_leaf = np.isin(y, leaf_idx)
        est = clone(self.estimator).fit(X[is_leaf], y[is_leaf])
        for _ in range(self.rounds if not is_leaf.all() else 0):
            p = full_proba(est, X[~is_leaf], len(names))
            mask = np.zeros_like(p, dtype=bool)
            for row, label in enumerate(y[~is_leaf]):
                mask[row, [names.index(c) for c in allowed[names[label]]]] = True
            y_all = y.copy()
            y_all[~is_leaf] = np.where(mask, p + 1e-12, -1).argmax(1)
            est = clone(self.estimator).fit(X, y_all)
        self.estimator_, self.classes_ = est, est.classes_
        return self

    def predict_proba(self, X):
        return self.estimator_.predict_proba(X)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]


class StandardisedClassifier(ClassifierMixin, BaseEstimator):
    """A fitted classifier of features standardised by ``mean`` and ``std`` (setting ``adapt=standardize``):
    new features are standardised the same way first. `hep2.pipeline.predict.Predictor` standardises a batch of
    30 cells or more (a folder, a field) by its own statistics instead: a new lab's cells, without labels."""

    standardises = True

    def __init__(self, classifier=None, mean=None, std=None):
        self.classifier, self.mean, self.std = classifier, mean, std

    @staticmethod
    def statistics(F) -> tuple[np.ndarray, np.ndarray]:
        """The mean and std (never 0) of features (N, F) that standardise them."""
        return F.mean(0), F.std(0) + 1e-6

    def own_batch(self, F):
        """Features (N, F) standardised by their own statistics, and the classifier that reads them."""
        mean, std = self.statistics(F)
        return (F - mean) / std, self.classifier

    @property
    def classes_(self):
        return self.classifier.classes_

    def predict_proba(self, X):
        return self.classifier.predict_proba((np.asarray(X, dtype=np.float64) - self.mean) / self.std)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]


def fit_classifier(make, X, y, classes):
    """``make()`` fitted on ``(X, y)``; through a `TreeClassifier` where the labels present nest."""
    present = [classes[i] for i in np.unique(y)]
    if nested(present):
        return TreeClassifier(make(), list(classes)).fit(X, y)
    return make().fit(X, y)


@dataclass
class Scoring:
    """How test cells are scored: at the depth the model's classes and the labels share.

    ``classes`` are the scored classes: the shared ones first, then the classes only the model gives (its calls
    of them are errors). ``model_fold`` / ``label_fold`` map a model class / a label to its scored class;
    a label outside the shared classes maps to None (the cell is left out, and counted)."""

    classes: list[str]
    model_fold: dict[str, str]
    label_fold: dict[str, str | None]
    shared: list[str]
    notes: list[str] = field(default_factory=list)

    @classmethod
    def between(cls, model_classes, label_classes) -> "Scoring":
        fa, fb, shared = shared_depth(list(model_classes), list(label_classes))
        classes = shared + [c for c in dict.fromkeys(fa.values()) if c not in shared]
        label_fold = {c: (fb[c] if fb[c] in shared else None) for c in label_classes}
        notes = [f"{a} -> {b}" for a, b in {**fa, **fb}.items() if a != b]
        return cls(classes, fa, label_fold, shared, list(dict.fromkeys(notes)))

    def is_identity(self, classes) -> bool:
        """True when scoring changes nothing for a model and labels over ``classes``."""
        return self.classes == list(classes) and all(v == k for k, v in {**self.model_fold, **self.label_fold}.items())

    def apply(self, proba, classes, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Probabilities (N, C) over ``classes`` and the cells' label names -> (the probabilities over the scored
        classes, the scored labels' indices, the mask of the cells scored)."""
        folded, names = fold_proba(np.asarray(proba), list(classes), self.model_fold)
        out = np.zeros((len(folded), len(self.classes)))
        for j, c in enumerate(names):
            if c in self.classes:
                out[:, self.classes.index(c)] += folded[:, j]
        target = [self.label_fold.get(c) for c in labels]
        keep = np.array([t is not None for t in target], dtype=bool)
        y = np.array([self.classes.index(t) if t is not None else -1 for t in target], dtype=np.int64)
        return out, y, keep

    def description(self, left_out: dict[str, int]) -> str:
        """One sentence for metrics.json and the report: the depth and what was left out."""
        text = "scored at the depth the model and the labels share: " + ", ".join(with_icap(c) for c in self.shared)
        if self.notes:
            text += f" (folded: {'; '.join(self.notes)})"
        if left_out:
            text += "; left out, a class the model does not know: " + ", ".join(
                f"{c} ({n} cells)" for c, n in left_out.items()
            )
        return text


__all__ = ["Scoring", "StandardisedClassifier", "TreeClassifier", "fit_classifier", "nested"]
