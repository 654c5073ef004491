"""Named configurations: every setting of a run in one dataclass, overridable from the command line
(``--set key=value``) and from a JSON or YAML file (``--config FILE``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from .errors import Hep2Error
from .limits import CHOICES, LIMITS, as_setting, check_range  # noqa: F401  (check_range: also the API's)

FLOAT_TUPLES = ("ae_views",)  # the other tuple settings hold whole numbers
AUTO_BOOLS = ("amp", "infer_amp")  # true, false, or auto: decided by the machine (training.use_bf16)


@dataclass(frozen=True)
class Preset:
    """All settings of a run. Values the paper does not give are our documented choices."""

    name: str = "cpu"
    description: str = ""
    # preprocessing: per-image percentile normalisation, aspect-preserving resize, zero padding
    size: int = 64
    low_pct: float = 1.0
    high_pct: float = 99.5
    use_mask: bool = True
    channel: str = "mean"  # a colour image's grey: mean of R, G, B | red | green | blue (FITC: green)
    scale: float = 0.0  # 0: each cell's longest side fitted to size; > 0: one magnification for all
    fit_cell: bool = False  # crop each image to its cell (mask, else Otsu foreground) before fitting it to size
    adapt: str = "none"  # standardize: each dataset's features by its own cells' mean and std (no labels)
    highpass: float = 0.0  # > 0: each image minus its Gaussian blur of this sigma (native pixels)
    equalize: bool = False  # histogram equalisation in place of low_pct / high_pct (blind to brightness,
    # contrast and gamma)
    denoise: float = 0.0  # > 0: non-local means on each raw image first, its strength h this many times
    # the image's own estimated noise std (dim cells get more, bright ones less)
    # the autoencoder (Table I design; widths are the Conv 1..4 map counts)
    widths: tuple = (32, 64, 128, 256)
    latent: int = 4096
    latent_activation: str = "relu"  # activation of Conv 5, whose output is the feature vector
    output: str = "sigmoid"  # output activation (inputs are in [0, 1])
    ae_epochs: int = 30
    ae_batch: int = 32
    ae_lr: float = 1e-3
    ae_schedule: str = "constant"  # constant | cosine (ae_lr decayed to 0 over ae_epochs along a half cosine)
    ae_weight_decay: float = 0.0
    ae_patience: int = 5  # early stopping on held-out reconstruction loss
    ae_val_fraction: float = 0.1  # part of the training images held out for that
    ae_ensemble: int = 1  # autoencoders trained with seeds seed..seed+n-1; each feeds its own classifiers
    ae_views: tuple = ()  # input views: autoencoder k reads the cell high-pass filtered at sigma
    # ae_views[k % V] (native pixels; 0: unfiltered); () : the preprocessed cell
    ae_augment: bool = False  # a random flip / 90-degree rotation of each image while training
    ae_intensity: float = (
        0.0  # random gamma / gain of that strength on each training image (estimators.random_intensity)
    )
    ae_restore: bool = False  # ae_intensity / ae_blur on the input only, the original as target
    ae_blur: float = 0.0  # a Gaussian blur of random sigma in U(0, this) on each training image
    ae_rotation: float = 0.0  # any-angle rotation (up to this many degrees) of each training image
    ae_zoom: float = 0.0  # random zoom in [1 - z, 1 + z] of each training image
    ae_noise: float = 0.0  # denoising autoencoder: Gaussian noise of this std on the input while training
    ae_mask: float = 0.0  # masked autoencoder: this fraction of 8x8 squares of the input zeroed while training
    ae_crop: int = 0  # > 0: the autoencoder trains on random crops of this side (a patch model of
    # the texture); the pooled features read the whole cell
    tta: bool = False  # features = their mean over the 8 flips / 90-degree rotations of a cell
    tta_samples: bool = False  # with tta: each flip / rotation's features a training sample of its own for the
    # classifier, its probabilities averaged over the 8 (instead of their mean features)
    features: str = "conv5"  # conv5 (the paper) | pooled (Conv 1..4 maps, mean + max) | both |
    # words (a bag of words of Conv ae_words_layer's local activations)
    ae_words: int = 1024  # features=words: the codebook's size (k-means on the training cells, no labels)
    ae_words_layer: int = 3  # features=words: the Conv layer (1..4) whose activations are coded
    # the classifier: fully connected network on standardised features (head=mlp), or logistic regression
    head: str = "mlp"  # mlp (the paper's, the settings below) | logistic (scikit-learn, C 0.01, on
    # all the autoencoders' standardised features together)
    hidden: tuple = (250, 50)
    dropout: float = 0.5
    mlp_epochs: int = 300
    mlp_batch: int = 64
    mlp_lr: float = 1e-3
    mlp_weight_decay: float = 1e-4
    mlp_patience: int = 30
    mlp_val_fraction: float = 0.15
    mlp_ensemble: int = 1  # classifiers trained with seeds seed..seed+n-1, probabilities averaged
    # execution
    cnn_epochs: int = 0  # methods cnn5 / resnet: most epochs (0: the method's own, 300 / 100)
    cnn_patience: int = -1  # methods cnn5 / resnet: early-stopping patience (-1: the method's own, 60 / 25)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool | str = "auto"  # bf16 autocast while training: auto (where bf16 is native: a GPU, a CPU
    # with AVX-512 BF16 or AMX; training.bf16_is_native) | true | false
    channels_last: bool = False  # NHWC layout for the autoencoder's 3x3 layers while training
    infer_amp: bool | str = "auto"  # bf16 autocast for feature extraction and prediction: auto | true | false
    infer_channels_last: bool = False  # NHWC layout for feature extraction and prediction
    fused_adam: bool = True  # the fused Adam kernel (same update as the plain loop)
    deterministic: bool = True  # GPU: cuDNN's deterministic kernels for the autoencoder (same seed, same
    # model; exact resume); the classifiers always use them
    checkpoint_minutes: float = 0.0  # the autoencoder's resumable checkpoint at most this often (0: every epoch)
    threads: int = 0  # torch threads; 0 keeps PyTorch's default
    cv_folds: int = 5

    def __post_init__(self):
        for f in fields(self):  # a list given through the Python API is kept as the tuple it stands for
            if isinstance(f.default, tuple) and isinstance(getattr(self, f.name), list):
                kind = float if f.name in FLOAT_TUPLES else (lambda v: v)
                object.__setattr__(self, f.name, tuple(kind(v) for v in getattr(self, f.name)))
        # checked here, where every method's settings pass (NaN fails the comparison too)
        for key in LIMITS:
            check_range(key, getattr(self, key))
        for key in AUTO_BOOLS:
            if not isinstance(getattr(self, key), bool) and getattr(self, key) != "auto":
                raise Hep2Error(f"{key}={getattr(self, key)}: choose auto, true or false")
        for key, options in CHOICES.items():
            if getattr(self, key) not in options:
                raise Hep2Error(f"{key}={getattr(self, key)}: choose {', '.join(options[:-1])} or {options[-1]}")
        if len(self.widths) != 4:
            raise Hep2Error(f"widths={as_setting(self.widths)}: give the 4 map counts of Conv 1..4, e.g. 32,64,128,256")
        self.preprocess()  # its own checks: the percentiles' order
        if self.ae_crop and (self.ae_crop % 16 or self.ae_crop >= self.size or self.size % self.ae_crop):
            raise Hep2Error(
                f"ae_crop={self.ae_crop}: the crop side must be a multiple of 16 that divides size={self.size} "
                f"and is smaller (e.g. {self.size // 2}), or 0 to train on whole cells"
            )
        if self.ae_crop and self.features != "pooled":
            raise Hep2Error(
                f"ae_crop={self.ae_crop} with features={self.features}: an autoencoder trained on crops has a Conv 5 "
                "for crops only; its features are the pooled Conv 1..4 maps: set features=pooled"
            )
        if self.features == "words" and self.tta_samples:
            raise Hep2Error(
                "features=words counts the words of a cell's 8 flips / rotations together (tta): set tta_samples=false"
            )
        if self.head == "logistic" and self.tta_samples:
            raise Hep2Error("head=logistic reads one feature vector per cell: set tta_samples=false")
        if self.tta_samples and not self.tta:
            raise Hep2Error(
                "tta_samples=true trains the classifier on the 8 flips / rotations that tta reads: set tta=true "
                "too (or leave tta_samples off)"
            )
        if self.ae_views and self.highpass:
            raise Hep2Error(
                f"ae_views={as_setting(self.ae_views)} and highpass={self.highpass}: the views "
                f"set each autoencoder's high-pass filter; put {self.highpass} among ae_views, or set "
                "highpass=0"
            )
        if len(self.ae_views) > max(self.ae_ensemble, 1):
            raise Hep2Error(
                f"ae_views={as_setting(self.ae_views)} names {len(self.ae_views)} views but "
                f"ae_ensemble={self.ae_ensemble} autoencoders would read only the first "
                f"{max(self.ae_ensemble, 1)}: set ae_ensemble to at least {len(self.ae_views)}"
            )

    def override(self, values: dict) -> "Preset":
        """A copy with some values replaced; unknown names and wrong types are errors."""
        known = {f.name: f for f in fields(self)}
        out = {}
        for key, value in values.items():
            k = key.replace("-", "_")
            if k not in known:
                raise Hep2Error(f"unknown setting {key!r}: valid settings are {', '.join(sorted(known))}")
            out[k] = _coerce(k, value, getattr(self, k))
        return replace(self, **out)

    def preprocess(self):
        """The image preprocessing these settings ask for."""
        from .data.images import Preprocess

        return Preprocess(
            self.size,
            self.low_pct,
            self.high_pct,
            self.use_mask,
            scale=self.scale,
            highpass=self.highpass,
            equalize=self.equalize,
            denoise=self.denoise,
            channel=self.channel,
            fit_cell=self.fit_cell,
        )

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def check_preset(cfg) -> None:
    """What the API's ``cfg`` arguments take."""
    if not isinstance(cfg, Preset):
        raise Hep2Error(
            f"cfg={cfg!r}: give a Preset, e.g. hep2.presets.get_preset('cpu', overrides={{'ae_epochs': 10}})"
        )


def _coerce(key: str, value, current):
    raw = value
    try:
        if key in AUTO_BOOLS:
            if isinstance(value, str) and value.lower() == "auto":
                return "auto"
            current = False  # otherwise a boolean, read as any other
        if isinstance(current, bool):
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(current, tuple):
            if isinstance(value, str):
                value = [v for v in value.strip("()[] ").replace(" ", "").split(",") if v]
            elif key in FLOAT_TUPLES and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = [value]  # one view
            if isinstance(value, (bool, str)) or any(isinstance(v, bool) for v in value):
                raise ValueError
            if key not in FLOAT_TUPLES and any(isinstance(v, float) and not v.is_integer() for v in value):
                raise ValueError  # 8.5 maps is a mistake, not 8
            return tuple((float if key in FLOAT_TUPLES else int)(v) for v in value)
        if isinstance(current, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(current, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        like = (
            (as_setting(current) or ("0,5" if key in FLOAT_TUPLES else "250,50"))
            if isinstance(current, tuple)
            else "auto, true or false"
            if key in AUTO_BOOLS
            else repr(current)
        )
        raise Hep2Error(f"setting {key}={raw!r}: expected a value like {like}") from None


_CPU = Preset(
    name="cpu",
    description="The Table I design scaled for a 2-core CPU: 64x64 input, 32-64-128-256 maps, "
    "Conv 5 4x4 -> 4096 features, the 4096-250-50-5 classifier; flips / 90-degree rotations "
    "while training the autoencoder, features averaged over the 8 flips / rotations of a cell; "
    "3 autoencoders (seeds), each with 2 classifiers (seeds), probabilities averaged.",
    size=64,
    widths=(32, 64, 128, 256),
    latent=4096,
    ae_augment=True,
    tta=True,
    ae_ensemble=3,
    mlp_ensemble=2,
    # training in fp32 on every machine: bf16 training of these small networks was no faster on an AVX-512 BF16 CPU
    # (benchmarks/run.py: 98.8 vs 103.8 images/s), and fp32 keeps a run's figures the same across CPU kinds
    amp=False,
    channels_last=True,
    infer_channels_last=True,
)

# the cpu design, every other setting equal: levers chosen on train/ only (README, issue 6; docs/record.md)
_IMPROVED = replace(
    _CPU,
    name="improved",
    description="The cpu preset's design with levers chosen on train/ only: autoencoders trained to give back "
    "each image from a copy with randomly jittered gamma / gain; two of them, one reading the cell "
    "as it is and one the cell high-pass filtered (minus its Gaussian blur of sigma 5 px), in place "
    "of three of the first; each of Conv 1..4's maps averaged and max-pooled over the cell (960 "
    "values per autoencoder) instead of the Conv 5 code; the paper's 250-50 classifier on them, "
    "trained on each of the 8 flips / rotations' features as a sample of its own, its probabilities "
    "averaged over the 8.",
    ae_intensity=0.3,
    ae_restore=True,
    ae_ensemble=2,
    ae_views=(0.0, 5.0),
    features="pooled",
    tta_samples=True,
)

PRESETS = {
    "paper": Preset(
        name="paper",
        description="Table I exactly: 224x224 input, 64-128-256-512 maps, Conv 5 14x14 -> 4096, "
        "about 0.83 billion parameters (a 10 GB checkpoint, written every 10 minutes). Needs a GPU to "
        "train in reasonable time.",
        size=224,
        widths=(64, 128, 256, 512),
        latent=4096,
        ae_batch=32,
        ae_epochs=30,
        checkpoint_minutes=10.0,
        channels_last=True,
        infer_channels_last=True,
    ),
    "cpu": _CPU,
    "improved": _IMPROVED,
    "words": replace(
        _IMPROVED,
        name="words",
        description="The improved preset's two autoencoders, each read as a bag of 1024 words of its Conv 3 "
        "activations (k-means on the training cells, no labels; counted over the cell and four "
        "concentric bands, the 8 flips / rotations together), logistic regression on them; chosen on "
        "train/ only (docs/record.md). Alone it matches improved under official; averaged with bow it is "
        "the project's best method on SNPHEp-2 (README).",
        features="words",
        tta_samples=False,
        head="logistic",
    ),
    "tiny": Preset(
        name="tiny",
        description="For tests and the demo: 32x32 input, 16-32-64-128 maps, Conv 5 2x2 -> 1024 features, "
        "a higher learning rate and up to 40 epochs; fp32 on every machine, so its figures match across CPU kinds.",
        size=32,
        widths=(16, 32, 64, 128),
        latent=1024,
        ae_lr=3e-3,
        ae_epochs=40,
        ae_patience=8,
        mlp_epochs=200,
        mlp_patience=30,
        amp=False,
        infer_amp=False,
    ),
}


def get_preset(name: str = "cpu", config: str | Path | None = None, overrides: dict | None = None) -> Preset:
    """A named preset, then the values of a JSON/YAML file, then explicit overrides."""
    if name not in PRESETS:
        raise Hep2Error(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    # the file's values, then the explicit ones, checked together (a pair may be valid only as a whole)
    values = (load_config(config) if config else {}) | {k.replace("-", "_"): v for k, v in (overrides or {}).items()}
    return PRESETS[name].override(values) if values else PRESETS[name]


def load_config(path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise Hep2Error(f"cannot read config file {path}: {e.strerror}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:
        raise Hep2Error(
            f"config file {path} is not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {e}"
        ) from None
    if not isinstance(data, dict):
        raise Hep2Error(f"config file {path} must hold a mapping of setting names to values")
    return {k: v for k, v in data.items() if k not in ("name", "description")} | (
        {"name": data["name"]} if "name" in data else {}
    )


def parse_overrides(items) -> dict:
    """['ae_epochs=5', 'widths=16,32,64,128'] -> {'ae_epochs': '5', 'widths': '16,32,64,128'}."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise Hep2Error(f"--set {item!r}: write NAME=VALUE, e.g. --set ae_epochs=10")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


__all__ = ["Preset", "PRESETS", "check_preset", "get_preset", "load_config", "parse_overrides"]
