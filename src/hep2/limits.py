"""The range of every numeric setting and the options of every choice, and the checks that read them:
shared by the presets, the image preprocessing and the estimators, so each value is checked where it is used."""

from __future__ import annotations

import numbers

from .errors import Hep2Error

# every numeric setting's range: (lowest, highest, what it is / what its ends mean); a tuple's values each
OFF = "0 turns it off"
LIMITS = {
    "size": (16, 2048, "pixels a side of the network's input"),
    "low_pct": (0, 100, "the percentile of the cell's grey levels mapped to black"),
    "high_pct": (0, 100, "the percentile mapped to white"),
    "scale": (0, 16, "0 fits each cell's longest side to size; 1 keeps its pixels' size"),
    "highpass": (0, 100, "pixels; " + OFF),
    "denoise": (0, 10, "a multiple of each image's estimated noise level; " + OFF),
    "widths": (1, 4096, "the maps of Conv 1..4"),
    "latent": (1, 65536, "Conv 5's maps"),
    "ae_epochs": (1, 100000, "epochs"),
    "mlp_epochs": (1, 100000, "epochs"),
    "ae_batch": (1, 65536, "images a step"),
    "mlp_batch": (1, 65536, "samples a step"),
    "ae_lr": (1e-7, 10, "Adam's learning rate"),
    "mlp_lr": (1e-7, 10, "Adam's learning rate"),
    "ae_weight_decay": (0, 10, OFF),
    "mlp_weight_decay": (0, 10, OFF),
    "ae_patience": (0, 100000, "epochs without a better held-out loss before stopping; 0: no early stopping"),
    "mlp_patience": (0, 100000, "epochs without a better held-out loss before stopping; 0: no early stopping"),
    "ae_val_fraction": (0, 0.9, "the part of the training images held out for early stopping; 0: none"),
    "mlp_val_fraction": (0, 0.9, "the part of the training cells held out for early stopping; 0: none"),
    "ae_ensemble": (1, 100, "autoencoders"),
    "mlp_ensemble": (1, 100, "classifiers per autoencoder"),
    "ae_views": (0, 100, "pixels; 0 is the unfiltered cell"),
    **{
        k: (0, top, OFF)
        for k, top in (
            ("ae_intensity", 2.0),
            ("ae_noise", 1.0),
            ("ae_zoom", 0.9),
            ("ae_rotation", 180.0),
            ("ae_mask", 0.9),
            ("ae_blur", 5.0),
            ("checkpoint_minutes", 1e6),
        )
    },
    "ae_crop": (0, 2048, "pixels a side; 0 trains on whole cells"),
    "ae_words": (2, 65536, "words in the codebook"),
    "ae_words_layer": (1, 4, "the Conv layer whose activations are coded"),
    "hidden": (1, 65536, "units of each hidden layer (none: hidden=)"),
    "dropout": (0, 0.95, "the probability of zeroing a unit while training"),
    "cnn_epochs": (0, 100000, "0: the method's own"),
    "cnn_patience": (-1, 100000, "-1: the method's own; 0: no early stopping"),
    "seed": (0, 2**32 - 1, "any whole number"),
    "threads": (0, 4096, "0 keeps PyTorch's default"),
    "cv_folds": (2, 100, "folds"),
}
CHOICES = {
    "ae_schedule": ("constant", "cosine"),  # the learning rate over the epochs (training.fit)
    "head": ("mlp", "logistic"),  # the dcae-mlp method's classifier
    "features": ("conv5", "pooled", "both", "words"),
    "latent_activation": ("relu", "linear"),
    "output": ("sigmoid", "linear"),
    "channel": ("mean", "red", "green", "blue"),
    "adapt": ("none", "standardize"),  # pipeline.runner.adapt_features
}  # data.images.CHANNELS


def check_range(name: str, value, key: str | None = None) -> None:
    """``value`` (each value, for a tuple) within setting ``key``'s LIMITS (``key`` defaults to ``name``, the name
    the error gives: an estimator's parameter may stand for a setting of another name)."""
    low, high, note = LIMITS[key or name]
    values = value if isinstance(value, tuple) else (value,)
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and low <= v <= high for v in values):
        raise Hep2Error(
            f"{name}={as_setting(value)}: {'each value ' if isinstance(value, tuple) else ''}must lie in "
            f"[{low}, {high}] ({note})"
        )


def as_setting(value) -> str:
    """A setting's value as --set takes it (a tuple as comma-separated values)."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


__all__ = ["CHOICES", "LIMITS", "as_setting", "check_range"]
