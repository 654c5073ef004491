"""What hep2's scikit-learn estimators share beyond scikit-learn's own base classes."""

from __future__ import annotations

import inspect


def init_defaults(est) -> dict:
    """An estimator's constructor defaults: what a model pickled before a parameter existed was
    trained with, so unpickling fills them in (``__setstate__``)."""
    return {
        k: p.default
        for k, p in inspect.signature(type(est).__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


__all__ = ["init_defaults"]
