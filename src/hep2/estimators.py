"""scikit-learn compatible estimators: ``DCAEFeatures`` (fit/transform) and ``MLPHead`` (classifier).

    make_pipeline(DCAEFeatures(preset="cpu"), MLPHead(hidden=(250, 50)))

works with ``cross_val_score``, ``GroupKFold`` and ``clone``. Inputs ``X`` are preprocessed images
(uint8 0..255 or float 0..1, shape (N, S, S) or (N, 1, S, S), as ``hep2.data.load_images`` gives)
or a list of image file paths.
"""

from __future__ import annotations

import copy
import math
import numbers
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from .base import init_defaults
from .data.images import as_uint8_images
from .errors import Hep2Error
from .models import DCAE, MLP
from .presets import Preset, as_setting, check_range, get_preset
from .training import autocast, fit, resolve_device, torch_threads, use_bf16


def is_paths(X) -> bool:
    """Whether ``X`` is a list of image file paths (rather than an array of preprocessed images)."""
    return isinstance(X, (list, tuple)) and len(X) > 0 and isinstance(X[0], (str, Path))


def image_tensor(X, size: int | None = None, prep=None) -> torch.Tensor:
    """Images or paths -> uint8 tensor (N, 1, S, S); paths are preprocessed with ``prep``
    (a ``Preprocess``; by default its defaults at ``size``)."""
    if is_paths(X):
        from .data.images import Preprocess, preprocess_image

        if size is None:
            raise Hep2Error("image paths given but no input size known: fit the model first")
        prep = prep or Preprocess(size=size)
        X = np.stack([np.round(preprocess_image(p, prep) * 255) for p in X]).astype(np.uint8)
    X = as_uint8_images(X)  # uint8 0..255 or float 0..1, checked (a float 0..255 image is an error, not clipped)
    if X.shape[1] != X.shape[2]:
        raise Hep2Error(f"expected square images of shape (N, S, S) or (N, 1, S, S), got {X.shape}")
    if size is not None and X.shape[-1] != size:
        raise Hep2Error(
            f"images are {X.shape[-1]}x{X.shape[-1]} but the model takes {size}x{size}: "
            "preprocess them with the same size setting"
        )
    return torch.from_numpy(np.ascontiguousarray(X[:, None]))


def labels_and_validation_split(y, val_fraction: float, seed: int):
    """Class labels -> (classes, class indices, training rows, validation rows or None): a stratified
    held-out part for early stopping, where every class has enough samples for one."""
    classes, yi = np.unique(np.asarray(y), return_inverse=True)
    if len(classes) < 2:
        raise Hep2Error(f"the classifier needs at least two classes in its training data, got {list(classes)}")
    idx = np.arange(len(yi))
    if val_fraction and np.bincount(yi).min() >= 2 and len(yi) * val_fraction >= len(classes):
        tr, va = train_test_split(idx, test_size=val_fraction, stratify=yi, random_state=seed)
        return classes, yi, tr, va
    return classes, yi, idx, None


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th (0..7) of the 8 rotations/reflections of the square, on (N, C, S, S): k % 4 quarter
    turns (as ``torch.rot90``), then a left-right flip when k >= 4. Written with transpose and flip
    so that it also exports to ONNX."""
    r = k % 4
    if r == 1:
        x = x.transpose(2, 3).flip(2)
    elif r == 2:
        x = x.flip((2, 3))
    elif r == 3:
        x = x.transpose(2, 3).flip(3)
    return x.flip(3) if k >= 4 else x


def random_dihedral(x: torch.Tensor) -> torch.Tensor:
    """A random one of the 8 dihedral transforms for each image (cell patterns have no orientation)."""
    ks = torch.randint(0, 8, (len(x),))
    out = torch.empty_like(x)
    for k in ks.unique().tolist():
        sel = ks == k
        out[sel] = dihedral(x[sel], k)
    return out


def random_rotation(x: torch.Tensor, degrees: float, scale: float = 0.0) -> torch.Tensor:
    """Rotate each image by a uniform random angle in [-degrees, degrees] and, with ``scale`` > 0,
    zoom it by a random factor in [1 - scale, 1 + scale] (bilinear; the corners are filled with 0,
    the background of a preprocessed cell)."""
    a = (torch.rand(len(x), device=x.device) * 2 - 1) * math.radians(degrees)
    z = 1 + (torch.rand(len(x), device=x.device) * 2 - 1) * scale if scale else 1.0  # no draw: same stream as before
    cos, sin, zero = torch.cos(a) / z, torch.sin(a) / z, torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_intensity(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Jitter each image's grey levels in [0, 1]: a random gamma exp(U(-s, s)) and gain
    exp(U(-s/2, s/2)), clipped to [0, 1]. Specimens differ in brightness and contrast (positive vs
    intermediate intensity) even after percentile normalisation; s = 0 leaves x as it is."""
    if not strength:
        return x
    n = (len(x),) + (1,) * (x.dim() - 1)
    gamma = torch.exp((torch.rand(n, device=x.device) * 2 - 1) * strength)
    gain = torch.exp((torch.rand(n, device=x.device) * 2 - 1) * strength / 2)
    return (x.clamp(min=0) ** gamma * gain).clamp_(0, 1)


def random_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each image (N, 1, H, W) with a Gaussian of its own random sigma in U(0, sigma) pixels:
    specimens are imaged more or less in focus. sigma = 0 leaves x as it is."""
    if not sigma:
        return x
    n = len(x)
    r = max(1, math.ceil(3 * sigma))
    s = (torch.rand(n, 1, device=x.device) * sigma).clamp_(min=1e-3)
    g = torch.exp(-0.5 * (torch.arange(-r, r + 1, device=x.device, dtype=x.dtype) / s) ** 2)
    g = g / g.sum(1, keepdim=True)  # (N, 2r + 1), one kernel per image
    with torch.autocast(x.device.type, enabled=False):  # in x's precision, also under amp
        y = F.pad(x.transpose(0, 1), (r, r, r, r), mode="replicate")  # (1, N, H + 2r, W + 2r)
        y = F.conv2d(y, g[:, None, None, :], groups=n)  # along the rows
        y = F.conv2d(y, g[:, None, :, None], groups=n)  # along the columns
    return y.transpose(0, 1)


def random_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """A random size x size square of each image of a (N, C, S, S) batch, each at its own place."""
    top = torch.randint(0, x.shape[-2] - size + 1, (len(x),)).tolist()
    left = torch.randint(0, x.shape[-1] - size + 1, (len(x),)).tolist()
    return torch.stack([im[:, i : i + size, j : j + size] for im, i, j in zip(x, top, left)])


def random_mask(x: torch.Tensor, fraction: float, block: int = 8) -> torch.Tensor:
    """Masked autoencoding: each image with a random ``fraction`` of its ``block`` x ``block``
    squares set to 0 (the autoencoder is asked to reconstruct them from the rest)."""
    n, _, h, w = x.shape
    keep = (torch.rand(n, 1, -(-h // block), -(-w // block), device=x.device) >= fraction).to(x.dtype)
    return x * keep.repeat_interleave(block, 2).repeat_interleave(block, 3)[..., :h, :w]


class DCAEFeatures(TransformerMixin, BaseEstimator):
    """Train the Table I autoencoder without labels; transform images to its Conv 5 features.

    A scikit-learn transformer: ``fit`` learns from images alone (``y`` is ignored), so it can sit before any
    classifier in a ``Pipeline`` and be cross-validated with ``GroupKFold`` over specimens.

    Parameters
    ----------
    preset : str or Preset
        A preset's name (``paper``, ``cpu``, ``improved``, ``words``, ``tiny``) or a :class:`~hep2.presets.Preset`.
    settings : dict, optional
        Settings over the preset's, e.g. ``{"ae_epochs": 10}``.
    checkpoint : str, optional
        A file for the autoencoder's resumable checkpoint.
    resume : bool
        Continue from ``checkpoint``.
    verbose : bool
        Show training progress.

    Attributes
    ----------
    model_ : DCAE
        The trained autoencoder.
    history_ : list of dict
        Each epoch's training and held-out loss.
    n_features_out_ : int
        The length of a cell's feature vector.

    Examples
    --------
    >>> import numpy as np
    >>> from hep2.estimators import DCAEFeatures
    >>> images = np.random.default_rng(0).integers(0, 256, (40, 32, 32), dtype=np.uint8)
    >>> ae = DCAEFeatures("tiny", settings={"ae_epochs": 1}).fit(images)
    >>> ae.transform(images).shape
    (40, 1024)
    """

    def __init__(
        self,
        preset: str = "cpu",
        settings: dict | None = None,
        checkpoint: str | None = None,
        resume: bool = False,
        verbose: bool = False,
    ):
        self.preset = preset
        self.settings = settings
        self.checkpoint = checkpoint
        self.resume = resume
        self.verbose = verbose

    def _config(self) -> Preset:
        if self.settings is not None and not isinstance(self.settings, dict):
            raise Hep2Error(
                f"settings={self.settings!r}: give a dict of setting names to values, e.g. {{'ae_epochs': 10}}"
            )
        if isinstance(self.preset, Preset):  # a Preset object, with the settings on top as for a preset's name
            return self.preset.override(self.settings) if self.settings else self.preset
        return get_preset(self.preset, overrides=self.settings)

    def fit(self, X, y=None):
        cfg = self._config()
        if cfg.ae_views:
            raise Hep2Error(
                f"ae_views={as_setting(cfg.ae_views)}: one DCAEFeatures reads one view of the cell; "
                "the method dcae-mlp trains one autoencoder per view (hep2.pipeline.methods.get_method('dcae-mlp', "
                "preset)), or set highpass=SIGMA for this one"
            )
        if cfg.ae_restore and not (cfg.ae_intensity or cfg.ae_blur):
            raise Hep2Error(
                "ae_restore=true restores images from jittered or blurred copies: set ae_intensity "
                "and / or ae_blur too (or leave ae_restore off)"
            )
        if self.checkpoint is not None and Path(self.checkpoint).is_dir():
            raise Hep2Error(
                f"checkpoint={self.checkpoint}: a folder; give the checkpoint's file name, e.g. "
                f"{Path(self.checkpoint) / 'dcae.pt'}"
            )
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        x = image_tensor(X, cfg.size, cfg.preprocess())
        device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.model_ = DCAE(
            cfg.ae_crop or cfg.size, cfg.widths, cfg.latent, latent_activation=cfg.latent_activation, output=cfg.output
        )
        n_val = int(round(len(x) * cfg.ae_val_fraction)) if len(x) >= 10 else 0
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))
        train, val = x[perm[n_val:]], x[perm[:n_val]]

        self.model_.set_channels_last(cfg.channels_last)

        def loss(model, xb):
            xb = self._input(xb, cfg.channels_last)
            if cfg.ae_crop:  # a patch model: random crops while training, the central one for the held-out loss
                c0 = (cfg.size - cfg.ae_crop) // 2
                xb = (
                    random_crop(xb, cfg.ae_crop)
                    if model.training
                    else xb[..., c0 : c0 + cfg.ae_crop, c0 : c0 + cfg.ae_crop]
                )
            noisy = xb
            if model.training:
                if cfg.ae_augment:
                    xb = random_dihedral(xb)
                if cfg.ae_rotation or cfg.ae_zoom:
                    xb = random_rotation(xb, cfg.ae_rotation, cfg.ae_zoom)
                noisy = random_blur(random_intensity(xb, cfg.ae_intensity), cfg.ae_blur)
                if not cfg.ae_restore:  # the jittered / blurred image is also the target (else: restore the original)
                    xb = noisy
                if cfg.ae_noise:  # denoising: reconstruct the clean image
                    noisy = (noisy + cfg.ae_noise * torch.randn_like(noisy)).clamp_(0, 1)
                if cfg.ae_mask:  # masked: reconstruct the whole image from part of it
                    noisy = random_mask(noisy, cfg.ae_mask)
            rec = model(noisy)
            return torch.nn.functional.mse_loss(rec.float(), xb), len(xb)

        self.history_ = fit(
            self.model_,
            loss,
            (train,),
            (val,) if n_val else None,
            epochs=cfg.ae_epochs,
            batch_size=cfg.ae_batch,
            lr=cfg.ae_lr,
            schedule=cfg.ae_schedule,
            weight_decay=cfg.ae_weight_decay,
            patience=cfg.ae_patience if n_val else 0,
            seed=cfg.seed,
            device=device,
            amp=use_bf16(cfg.amp, device),
            fused=cfg.fused_adam,
            checkpoint=self.checkpoint,
            resume=self.resume,
            desc="autoencoder",
            checkpoint_every=60 * cfg.checkpoint_minutes,
            deterministic=cfg.deterministic,
            verbose=self.verbose,
        )
        self.config_ = cfg
        if cfg.features == "words":
            self.codebook_ = self._fit_codebook(x, cfg)
        self.n_features_out_ = self.model_.n_features(cfg.features, cfg.ae_words) * (8 if cfg.tta_samples else 1)
        return self

    @torch.inference_mode()
    def _fit_codebook(self, x: torch.Tensor, cfg: Preset) -> torch.Tensor:
        """The ``ae_words`` words of ``features=words``: ``learn_codebook`` (k-means, as `bow`'s) on the local
        descriptors (``DCAE.descriptors``) of Conv ``ae_words_layer`` at up to 60 random positions inside each
        training cell, as each is given; no labels."""
        from .features.handcrafted import learn_codebook

        device = next(self.model_.parameters()).device
        self.model_.eval()

        def cells():
            for i in range(0, len(x), 256):
                maps, mask = self.model_.activations(self._input(x[i : i + 256].to(device), False), cfg.ae_words_layer)
                for d, m in zip(self.model_.descriptors(maps).cpu().numpy(), mask.flatten(1).cpu().numpy()):
                    yield d[m]

        km = learn_codebook(
            cells(),
            cfg.ae_words,
            cfg.seed,
            60,
            f"features=words: {len(x)} training images give {{n}} local descriptors at Conv "
            f"{cfg.ae_words_layer}, fewer than ae_words={cfg.ae_words}: give more images or fewer words",
        )
        return torch.as_tensor(km.cluster_centers_, dtype=torch.float32)

    @staticmethod
    def _input(xb: torch.Tensor, channels_last: bool) -> torch.Tensor:
        """A uint8 batch -> float in [0, 1], in the memory layout asked for."""
        xb = xb.float().div_(255)
        return xb.contiguous(memory_format=torch.channels_last) if channels_last else xb

    @torch.inference_mode()
    def _batches(self, X, fn, batch_size: int = 64):  # 64: the fastest of 32..256 on 2-core CPUs (fp32, bf16)
        check_is_fitted(self, "model_")
        cfg = self.config_
        x = image_tensor(X, cfg.size, cfg.preprocess())
        if not len(x):
            raise Hep2Error("DCAEFeatures: no images given (an array of 0 images)")
        device = next(self.model_.parameters()).device
        self.model_.eval()
        cl, amp = cfg.infer_channels_last, use_bf16(cfg.infer_amp, device)
        self.model_.set_channels_last(cl)
        out = []
        try:
            for i in range(0, len(x), batch_size):
                xb = self._input(x[i : i + batch_size].to(device), cl)
                with autocast(device, amp):
                    out.append(fn(xb).float().cpu())
        finally:
            self.model_.set_channels_last(cfg.channels_last)
        return torch.cat(out).numpy()

    def _encode(self, xb: torch.Tensor) -> torch.Tensor:
        kind = self.config_.features
        if kind == "words":  # with tta, the words of the 8 views counted together
            views = [dihedral(xb, k) for k in range(8 if self.config_.tta else 1)]
            return self.model_.words(views, self.codebook_.to(xb.device), self.config_.ae_words_layer)
        if not self.config_.tta:
            return self.model_.features(xb, kind)
        if self.config_.tta_samples:  # the 8 views' features side by side; MLPHead(views=8) takes them apart
            return torch.cat([self.model_.features(dihedral(xb, k), kind).float() for k in range(8)], 1)
        return sum(self.model_.features(dihedral(xb, k), kind).float() for k in range(8)) / 8

    def transform(self, X) -> np.ndarray:
        """(N, n_features_out_) float32 features: the Conv 5 activations (the paper's), or with
        ``features`` = pooled / both the pooled Conv 1..4 maps; with ``tta`` their mean over the 8 flips
        and 90-degree rotations of each image (the features of a cell, whatever its orientation). With
        ``tta_samples`` the 8 views' features side by side instead (8 x as many values). With ``features``
        = words, the bag of words of Conv ``ae_words_layer``'s local activations (``DCAE.words``), counted
        over the 8 views together with ``tta``."""
        return self._batches(X, self._encode)

    def reconstruct(self, X) -> np.ndarray:
        """(N, S, S) reconstructions in [0, 1] (for inspection)."""
        check_is_fitted(self, "model_")
        if self.model_.deconv5 is None:
            raise Hep2Error(
                "this autoencoder was saved for prediction only, without its decoder: reconstructions "
                "are in the run folder's reconstructions.png"
            )
        return self._batches(X, self._reconstruct)[:, 0]

    def _reconstruct(self, xb: torch.Tensor) -> torch.Tensor:
        c = self.config_.ae_crop
        if not c:
            return self.model_(xb)
        out = torch.empty_like(xb)  # an autoencoder of crops gives back the cell tile by tile
        for i in range(0, xb.shape[-2], c):
            for j in range(0, xb.shape[-1], c):
                out[..., i : i + c, j : j + c] = self.model_(xb[..., i : i + c, j : j + c].contiguous())
        return out

    def for_prediction(self) -> "DCAEFeatures":
        """A copy for saved models, without what prediction never runs: the decoder (half the weights), and
        with ``features`` = pooled Conv 5 too (at 64x64 Conv 5 and the decoder are 97% of the weights). This
        object is unchanged."""
        slim = copy.copy(self.model_)
        slim._modules = dict(self.model_._modules)  # its own module table; the encoder's layers are shared
        slim.deconv5 = None
        slim.decoder = torch.nn.ModuleList()
        if self.config_.features == "pooled":
            slim.conv5 = None
        out = copy.copy(self)
        out.model_ = slim
        return out

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "model_")
        return np.array([f"{self.config_.features}_{i}" for i in range(self.n_features_out_)], dtype=object)


class MLPHead(ClassifierMixin, BaseEstimator):
    """The fully connected classifier (paper: 4096-250-50-5) on standardised features, trained with
    cross-entropy and early stopping on a stratified validation part of the training data.

    ``ensemble`` > 1 trains that many networks with seeds ``seed``, ``seed + 1``, ... (each with its
    own initialisation, batches and validation part) and averages their probabilities. ``groups``
    > 1 splits the features into that many equal column blocks (the codes of several autoencoders)
    and trains ``ensemble`` networks on each block, all probabilities averaged. ``views`` > 1: each block
    holds that many views of a cell side by side (``tta_samples``): every view is a training sample of its
    own, and a cell's probabilities are the mean over its views.

    Parameters
    ----------
    hidden : tuple of int
        The hidden layers' units (the paper's 250, 50; ``()``: a linear softmax classifier).
    dropout, epochs, batch_size, lr, weight_decay, patience, val_fraction
        Training: dropout after each hidden layer, Adam's settings, early stopping on a stratified
        ``val_fraction`` of the training data after ``patience`` epochs without a better loss.

    Attributes
    ----------
    classes_ : ndarray
        The labels seen in ``fit``, in the order of ``predict_proba``'s columns.

    Examples
    --------
    >>> import numpy as np
    >>> from hep2.estimators import MLPHead
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(90) % 3
    >>> X = (rng.normal(size=(90, 8)) + 3 * y[:, None]).astype(np.float32)
    >>> head = MLPHead(hidden=(16,), epochs=40, patience=0).fit(X, y)
    >>> head.predict_proba(X).shape, float((head.predict(X) == y).mean()) > 0.9
    ((90, 3), True)
    """

    def __init__(
        self,
        hidden=(250, 50),
        dropout: float = 0.5,
        epochs: int = 300,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int = 30,
        val_fraction: float = 0.15,
        ensemble: int = 1,
        groups: int = 1,
        views: int = 1,
        seed: int = 0,
        device: str = "auto",
        verbose: bool = False,
    ):
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.val_fraction = val_fraction
        self.ensemble = ensemble
        self.groups = groups
        self.views = views
        self.seed = seed
        self.device = device
        self.verbose = verbose

    @classmethod
    def from_preset(cls, cfg: Preset, **kw) -> "MLPHead":
        return cls(
            hidden=cfg.hidden,
            dropout=cfg.dropout,
            epochs=cfg.mlp_epochs,
            batch_size=cfg.mlp_batch,
            lr=cfg.mlp_lr,
            weight_decay=cfg.mlp_weight_decay,
            patience=cfg.mlp_patience,
            val_fraction=cfg.mlp_val_fraction,
            ensemble=cfg.mlp_ensemble,
            views=8 if cfg.tta_samples else 1,
            seed=cfg.seed,
            device=cfg.device,
            **kw,
        )

    def _features(self, X, fitted: bool = True) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or not len(X):
            raise Hep2Error(f"MLPHead needs features (N, F) with N >= 1, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise Hep2Error("MLPHead: the features hold NaN or infinite values: check the images and the feature step")
        if fitted and X.shape[1] != self.n_features_in_:
            raise Hep2Error(
                f"MLPHead was fitted on {self.n_features_in_} features, got {X.shape[1]}: give features "
                "made the same way"
            )
        return X

    def fit(self, X, y):
        X = self._features(X, fitted=False)
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise Hep2Error(f"MLPHead needs one label a row: features {X.shape}, labels {y.shape}")
        hidden = self.hidden if isinstance(self.hidden, (tuple, list)) else None
        if hidden is None or not all(isinstance(h, numbers.Integral) for h in hidden):
            raise Hep2Error(
                f"hidden={self.hidden!r}: give the hidden layers' sizes as a tuple of whole numbers, e.g. "
                "(250, 50), or () for none"
            )
        for name, key, value in (
            ("hidden", "hidden", tuple(hidden)),
            ("dropout", "dropout", self.dropout),
            ("epochs", "mlp_epochs", self.epochs),
            ("batch_size", "mlp_batch", self.batch_size),
            ("lr", "mlp_lr", self.lr),
            ("weight_decay", "mlp_weight_decay", self.weight_decay),
            ("patience", "mlp_patience", self.patience),
            ("val_fraction", "mlp_val_fraction", self.val_fraction),
            ("ensemble", "mlp_ensemble", self.ensemble),
            ("seed", "seed", self.seed),
        ):
            check_range(name, value, key)
        if int(self.groups) < 1 or int(self.views) < 1 or X.shape[1] % (int(self.groups) * int(self.views)):
            raise Hep2Error(
                f"groups={self.groups} x views={self.views}: must divide the {X.shape[1]} features into equal blocks"
            )
        self.classes_ = np.unique(y)
        y = np.repeat(y, int(self.views))  # each view of a cell a sample of its own (rows cell by cell)
        device = resolve_device(self.device)

        def loss(model, xb, yb):
            return torch.nn.functional.cross_entropy(model(xb).float(), yb), len(yb)

        width = X.shape[1] // int(self.groups)
        seeds = range(self.seed, self.seed + int(self.ensemble))
        # one validation split per seed, the same for every feature block
        splits = {seed: labels_and_validation_split(y, self.val_fraction, seed)[1:] for seed in seeds}
        self.blocks_, histories = [], []
        for g in range(int(self.groups)):
            Xg = self._rows(X, g, width)
            scaler = StandardScaler().fit(Xg)
            xt = torch.from_numpy(scaler.transform(Xg).astype(np.float32))
            nets = []
            for seed in seeds:
                yi, tr, va = splits[seed]
                yt = torch.from_numpy(yi.astype(np.int64))
                torch.manual_seed(seed)
                net = MLP(Xg.shape[1], tuple(self.hidden), len(self.classes_), self.dropout)
                with torch_threads(1 if device.type == "cpu" else torch.get_num_threads()):
                    histories.append(
                        fit(
                            net,
                            loss,
                            (xt[tr], yt[tr]),
                            (xt[va], yt[va]) if va is not None else None,
                            epochs=self.epochs,
                            batch_size=self.batch_size,
                            lr=self.lr,
                            weight_decay=self.weight_decay,
                            patience=self.patience if va is not None else 0,
                            seed=seed,
                            device=device,
                            desc="classifier",
                            verbose=self.verbose,
                        )
                    )
                nets.append(net.cpu())
            self.blocks_.append((scaler, nets))
        self.history_ = histories[0]  # the curves of the first network, for the report
        self.n_features_in_ = X.shape[1]
        return self

    def __setstate__(self, state):
        if "net_" in state:  # a model saved before ensembles: one network on one block
            state["blocks_"] = [(state.pop("scaler_"), [state.pop("net_")])]
            state["ensemble"], state["groups"] = 1, 1
        elif "nets_" in state:  # saved before feature blocks
            state["blocks_"] = [(state.pop("scaler_"), state.pop("nets_"))]
            state["groups"] = 1
        super().__setstate__(init_defaults(self) | state)

    def _rows(self, X: np.ndarray, g: int, width: int) -> np.ndarray:
        """Feature block g (columns g * width ...) as the networks' rows: with ``views`` > 1 each view of a
        cell a row of its own, cell by cell."""
        v = int(self.views)
        return X[:, g * width : (g + 1) * width].reshape(len(X) * v, width // v)

    @property
    def nets_(self) -> list:
        return [net for _, nets in self.blocks_ for net in nets]

    @torch.inference_mode()
    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "blocks_")
        X = self._features(X)
        width, v = X.shape[1] // len(self.blocks_), int(self.views)
        probs = []
        for g, (scaler, nets) in enumerate(self.blocks_):
            Xs = torch.from_numpy(scaler.transform(self._rows(X, g, width)).astype(np.float32))
            for net in nets:
                net.eval()
                probs.append(torch.softmax(net(Xs), dim=1).view(len(X), v, -1).mean(1))
        return (sum(probs) / len(probs)).numpy()

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)  # first: it checks that the classifier is fitted
        return self.classes_[proba.argmax(1)]


__all__ = [
    "DCAEFeatures",
    "MLPHead",
    "dihedral",
    "image_tensor",
    "is_paths",
    "labels_and_validation_split",
    "random_blur",
    "random_crop",
    "random_dihedral",
    "random_intensity",
    "random_mask",
    "random_rotation",
]
