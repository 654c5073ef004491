"""Classification methods that `hep2 run --method` and `hep2 compare` evaluate on identical splits.

A method is an optional unsupervised stage that turns images into features (fitted on the
training images only, without labels), then a classifier fitted per split. Add one by subclassing
``Method`` and decorating it with ``@register_method("name")``, in any module:

    @register_method("my-method")
    class MyMethod(Method):
        paper_accuracy = None
        def transform(self, images): ...          # uint8 (N, S, S) -> (N, D) features
        def classifier(self): ...                 # a fresh scikit-learn classifier
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import Hep2Error
from ..presets import Preset, as_setting

METHODS: dict[str, type["Method"]] = {}
# what only the autoencoder and its classifier read: a method without them ignores these settings
DCAE_SETTINGS = frozenset(
    {"widths", "latent", "latent_activation", "output", "features", "tta", "tta_samples", "head", "hidden", "dropout"}
    | {k for k in Preset.__dataclass_fields__ if k.startswith(("ae_", "mlp_"))}
)
# the baselines (cnn5, lbp-svm, texture-svm) keep their published input: each cell fitted to the size, unfiltered
PUBLISHED_INPUT = {"scale": 0.0, "highpass": 0.0, "equalize": False, "denoise": 0.0}


def logistic_head():
    """Standardised features, then multinomial logistic regression (C 0.01, chosen on SNPHEp-2 train/ for `bow`
    and for the autoencoders' bag of words; docs/record.md)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000))


def register_method(name: str):
    """Add a :class:`Method` subclass to the registry under ``name``, for `hep2 run --method`, `hep2 compare
    --methods` and :func:`get_method`.

    Parameters
    ----------
    name : str
        The method's name on the command line and in run folders.

    Returns
    -------
    callable
        A class decorator that sets ``cls.name`` and registers the class.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from hep2.pipeline.methods import METHODS, Method, get_method, register_method
    >>> from hep2.presets import get_preset
    >>> @register_method("mean-grey")
    ... class MeanGrey(Method):
    ...     description = "each cell's mean grey level, logistic regression"
    ...     def transform(self, images):
    ...         return images.reshape(len(images), -1).mean(1, keepdims=True)
    ...     def classifier(self):
    ...         return LogisticRegression()
    >>> method = get_method("mean-grey", get_preset("tiny"))
    >>> method.name, method.transform(np.full((2, 4, 4), 7, np.uint8)).ravel().tolist()
    ('mean-grey', [7.0, 7.0])
    >>> del METHODS["mean-grey"]
    """

    def deco(cls):
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


def get_method(name: str, cfg: Preset) -> "Method":
    if name not in METHODS:
        raise Hep2Error(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    return METHODS[name](cfg)


class Method:
    """The default: no feature stage; the classifier works on the preprocessed images."""

    name = ""
    paper_accuracy: float | None = None  # the DCAE paper's Table II figure on SNPHEp-2
    unsupervised = False  # True when fit_features learns from images
    ignores: frozenset = frozenset()  # settings it never reads (`hep2 compare --resume` lets them differ)
    description = ""

    def __init__(self, cfg: Preset):
        self.cfg = cfg
        self.history_: list[dict] = []

    def preprocess(self):
        return self.cfg.preprocess()

    def fit_features(self, images: np.ndarray, *, checkpoint=None, resume=False, verbose=False) -> "Method":
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        return images

    def classifier(self):
        raise NotImplementedError

    def reconstruct(self, images: np.ndarray) -> np.ndarray | None:
        return None

    def for_prediction(self) -> "Method":
        """What a saved model keeps (`hep2.pipeline.predict.save_model`): by default all of it."""
        return self

    def _cnn_settings(self) -> dict:
        """The preset's cnn_epochs / cnn_patience where set (for the CNN methods)."""
        out = {"seed": self.cfg.seed, "device": self.cfg.device}
        if self.cfg.cnn_epochs:
            out["epochs"] = self.cfg.cnn_epochs
        if self.cfg.cnn_patience >= 0:
            out["patience"] = self.cfg.cnn_patience
        return out


@register_method("dcae-mlp")
class DCAEMLP(Method):
    paper_accuracy = 0.8808
    unsupervised = True
    description = "DCAE (Table I) Conv 5 features + fully connected classifier (the paper)"

    def __init__(self, cfg: Preset):
        super().__init__(cfg)
        if cfg.size % 16:  # checked before any work (the other methods take other sides)
            raise Hep2Error(
                f"size={cfg.size}: the autoencoder halves its maps four times, so the side must be a "
                f"multiple of 16 (e.g. {-(-cfg.size // 16) * 16})"
            )

    def fit_features(self, images, *, checkpoint=None, resume=False, verbose=False):
        from ..estimators import DCAEFeatures

        n = self.cfg.ae_ensemble
        self.aes_ = []
        for k in range(n):  # autoencoder k: seed + k, its own checkpoint, input view k % V
            ckpt = checkpoint
            if n > 1 and checkpoint is not None:
                p = Path(checkpoint)
                ckpt = str(p.with_name(f"{p.stem}-{k + 1}{p.suffix}"))
            cfg = self.cfg.override({"seed": self.cfg.seed + k, **self._view_setting(k)})
            if verbose and n > 1:
                view = f", the cell high-pass filtered at sigma {cfg.highpass}" if cfg.highpass else ""
                print(f"autoencoder {k + 1} of {n} (seed {cfg.seed}{view})", flush=True)
            self.aes_.append(
                DCAEFeatures(cfg, checkpoint=ckpt, resume=resume, verbose=verbose).fit(self._view(images, k))
            )
        self.ae_ = self.aes_[0]
        self.history_ = self.ae_.history_
        return self

    @property
    def autoencoders(self) -> list:
        return getattr(self, "aes_", None) or [self.ae_]

    def preprocess(self):
        return replace(self.cfg.preprocess(), views=tuple(self.cfg.ae_views))

    def _view_setting(self, k: int) -> dict:
        """Autoencoder k's own input filter, where ae_views gives several (its settings then describe its input)."""
        views = self.cfg.ae_views
        return {"highpass": views[k % len(views)], "ae_views": ()} if views else {}

    def _view(self, images, k: int):
        """Autoencoder k's view of the images: (N, V, S, S) stacked views -> (N, S, S); image files pass
        as they are (each autoencoder preprocesses them with its own filter)."""
        from ..estimators import is_paths

        views = self.cfg.ae_views
        if not views or is_paths(images):
            return images
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1] != len(views):
            raise Hep2Error(
                f"ae_views={as_setting(views)} asks for images of shape (N, {len(views)}, S, S), "
                f"one per view, got {images.shape}: preprocess them as the model's `preprocess()` "
                "says (hep2.pipeline.predict.Predictor.load_files does), or give image files"
            )
        return images[:, k % len(views)]

    def transform(self, images):
        # the autoencoders' codes side by side; the classifier keeps them apart (MLPHead groups)
        return np.concatenate([ae.transform(self._view(images, k)) for k, ae in enumerate(self.autoencoders)], axis=1)

    def classifier(self):
        from ..estimators import MLPHead

        if self.cfg.head == "logistic":
            return logistic_head()
        return MLPHead.from_preset(self.cfg, groups=self.cfg.ae_ensemble)

    def reconstruct(self, images):
        return self.ae_.reconstruct(self._view(images, 0))

    def for_prediction(self):
        out = copy.copy(self)
        out.aes_ = [ae.for_prediction() for ae in self.autoencoders]
        out.ae_ = out.aes_[0]
        return out


@register_method("lbp-svm")
class LBPSVM(Method):
    paper_accuracy = 0.8571
    fixed_input = PUBLISHED_INPUT  # input settings kept whatever the preset says
    ignores = DCAE_SETTINGS | frozenset(fixed_input)
    description = "multi-scale rotation-invariant uniform LBP histograms + RBF SVM (C, gamma by inner cv)"

    def preprocess(self):
        from ..features.handcrafted import PREFERRED_SIZE

        return self.cfg.override({"size": PREFERRED_SIZE, **self.fixed_input}).preprocess()

    def transform(self, images):
        from ..features.handcrafted import LBPFeatures

        return LBPFeatures().transform(images)

    def classifier(self):
        from ..features.handcrafted import SVMClassifier

        return SVMClassifier(seed=self.cfg.seed)


@register_method("texture-svm")
class TextureSVM(LBPSVM):
    paper_accuracy = 0.8090
    description = "grey-level co-occurrence (Haralick) statistics + intensity statistics + RBF SVM"

    def transform(self, images):
        from ..features.handcrafted import TextureFeatures

        return TextureFeatures().transform(images)


@register_method("shape-index")
class ShapeIndex(LBPSVM):
    paper_accuracy = None
    fixed_input = {k: v for k, v in PUBLISHED_INPUT.items() if k != "denoise"}  # denoised where `denoise` asks
    ignores = DCAE_SETTINGS | frozenset(fixed_input)
    description = (
        "joint shape-index / curvedness histograms at 5 scales over the cell and four concentric bands "
        "(Larsen et al. 2014's family) + RBF SVM (C 10, gamma 1 / features), Platt probabilities"
    )

    def transform(self, images):
        from ..features.handcrafted import ShapeIndexFeatures

        return ShapeIndexFeatures().transform(images)

    def classifier(self):
        from ..features.handcrafted import ShapeIndexFeatures, SVMClassifier

        return SVMClassifier(C_grid=(10.0,), gamma_grid=(1.0 / ShapeIndexFeatures().n_features(),), seed=self.cfg.seed)


@register_method("bow")
class BoW(LBPSVM):
    paper_accuracy = None
    fixed_input, ignores = ShapeIndex.fixed_input, ShapeIndex.ignores  # denoised where `denoise` asks
    unsupervised = True
    description = (
        "a bag of visual words: dense DAISY descriptors, a 1024-word codebook learnt from the training "
        "images without labels, counted over the whole cell and four concentric bands, 8 flips / rotations averaged; "
        "logistic regression"
    )

    def fit_features(self, images, *, checkpoint=None, resume=False, verbose=False):
        from ..features.handcrafted import BoWFeatures

        self.bow_ = BoWFeatures(seed=self.cfg.seed, progress=verbose).fit(images)
        return self

    def transform(self, images):
        if not hasattr(self, "bow_"):
            raise Hep2Error("the bow method's codebook is learnt by fit_features(training images) first")
        return self.bow_.transform(images)

    def for_prediction(self):
        out = copy.copy(self)
        if hasattr(self, "bow_"):
            out.bow_ = copy.copy(self.bow_)
            out.bow_.progress = False  # no progress bars where the model serves
        return out

    def classifier(self):
        return logistic_head()


@register_method("cnn5")
class CNN5(Method):
    paper_accuracy = 0.8620
    ignores = DCAE_SETTINGS | frozenset(PUBLISHED_INPUT)
    description = "the 5-layer CNN of Gao et al. (IEEE JBHI 2017), trained from scratch with rotation/flip augmentation"

    def preprocess(self):
        return self.cfg.override({"size": 78, **PUBLISHED_INPUT}).preprocess()

    def classifier(self):
        from ..cnn_estimator import CNNClassifier

        return CNNClassifier(**self._cnn_settings())


@register_method("resnet")
class ResNet(Method):
    ignores = DCAE_SETTINGS
    description = (
        "a small residual CNN trained from scratch with strong augmentation (any-angle rotation, flips, "
        "zoom, gamma / gain), probabilities averaged over 8 flips / rotations"
    )

    def classifier(self):
        from ..cnn_estimator import CNNClassifier

        return CNNClassifier(
            **(
                {
                    "size": self.cfg.size,
                    "arch": "resnet",
                    "widths": (32, 64, 128),
                    "dropout": 0.2,
                    "epochs": 100,
                    "batch_size": 32,
                    "lr": 1e-3,
                    "weight_decay": 1e-4,
                    "patience": 25,
                    "rotation": 45.0,
                    "scale": 0.1,
                    "intensity": 0.3,
                }
                | self._cnn_settings()
            )
        )


__all__ = [
    "BoW",
    "CNN5",
    "DCAEMLP",
    "DCAE_SETTINGS",
    "LBPSVM",
    "Method",
    "PUBLISHED_INPUT",
    "ResNet",
    "ShapeIndex",
    "TextureSVM",
    "get_method",
    "logistic_head",
    "register_method",
]
