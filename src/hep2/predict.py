"""Saving a trained pipeline (DCAE + classifier) and classifying new cell images with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data.images import IMAGE_EXTENSIONS, preprocess_image
from .errors import Hep2Error
from .estimators import DCAEFeatures, MLPHead
from .models import DCAE, MLP
from .presets import PRESETS, Preset
from .training import load_checkpoint, save_checkpoint

FORMAT = 1


def save_model(folder, ae: DCAEFeatures, clf: MLPHead, classes: list[str], cfg: Preset) -> None:
    """``folder/dcae.pt`` and ``folder/classifier.pt``: weights plus what is needed to rebuild them."""
    folder = Path(folder)
    save_checkpoint(folder / "dcae.pt", {"format": FORMAT, "preset": cfg.to_dict(),
                                         "state_dict": ae.model_.state_dict()})
    save_checkpoint(folder / "classifier.pt", {
        "format": FORMAT, "state_dict": clf.net_.state_dict(), "hidden": list(clf.hidden), "dropout": clf.dropout,
        "n_features": clf.n_features_in_, "scaler_mean": clf.scaler_.mean_, "scaler_scale": clf.scaler_.scale_,
        "label_indices": clf.classes_.tolist(), "classes": list(classes)})


class Predictor:
    """A trained pipeline loaded from a run folder (or its ``model/`` subfolder)."""

    def __init__(self, model_dir):
        d = Path(model_dir)
        if (d / "model" / "dcae.pt").exists():
            d = d / "model"
        for f in ("dcae.pt", "classifier.pt"):
            if not (d / f).exists():
                raise Hep2Error(f"{d / f} not found: --model must be a run folder written by `hep2 run` "
                                "(it holds model/dcae.pt and model/classifier.pt)")
        a, c = load_checkpoint(d / "dcae.pt"), load_checkpoint(d / "classifier.pt")
        known = {k: v for k, v in a["preset"].items()}
        self.config = PRESETS["cpu"].override({k: v for k, v in known.items() if k != "description"})
        cfg = self.config
        self.dcae = DCAE(cfg.size, cfg.widths, cfg.latent, latent_activation=cfg.latent_activation, output=cfg.output)
        self.dcae.load_state_dict(a["state_dict"])
        self.dcae.eval()
        self.mlp = MLP(c["n_features"], tuple(c["hidden"]), len(c["label_indices"]), c["dropout"])
        self.mlp.load_state_dict(c["state_dict"])
        self.mlp.eval()
        self.mean = torch.as_tensor(np.asarray(c["scaler_mean"]), dtype=torch.float32)
        self.scale = torch.as_tensor(np.asarray(c["scaler_scale"]), dtype=torch.float32)
        self.classes = list(c["classes"])
        self.label_indices = list(c["label_indices"])
        self.prep = cfg.preprocess()

    @torch.inference_mode()
    def predict_images(self, images: np.ndarray) -> np.ndarray:
        """Preprocessed images (N, S, S) in [0, 1] -> class probabilities (N, len(classes))."""
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))[:, None]
        out = []
        for i in range(0, len(x), 256):
            f = self.dcae.encode(x[i:i + 256])
            p = torch.softmax(self.mlp((f - self.mean) / self.scale), dim=1)
            full = torch.zeros(len(p), len(self.classes))
            full[:, self.label_indices] = p
            out.append(full)
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes)), np.float32)

    def predict_files(self, paths, *, skip_bad: bool = False):
        """Files -> (rows of (path, pattern, probabilities), list of skipped 'file: reason')."""
        images, ok, bad = [], [], []
        for p in paths:
            try:
                # rounded to 8 bits, as `hep2 run` stores the images the model was trained on
                images.append(np.round(preprocess_image(p, self.prep) * 255) / 255)
                ok.append(Path(p))
            except Hep2Error as e:
                if not skip_bad:
                    raise
                bad.append(str(e))
        if bad and not images:
            raise Hep2Error(f"nothing to classify: none of the {len(bad)} files could be read (first: {bad[0]})")
        proba = self.predict_images(np.stack(images)) if images else np.zeros((0, len(self.classes)))
        rows = [(p, self.classes[int(pr.argmax())], pr) for p, pr in zip(ok, proba)]
        return rows, bad


def expand_inputs(items) -> list[Path]:
    """Files and folders (searched recursively for images) -> image files, in a stable order."""
    out = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS
                           and not f.stem.lower().endswith("_mask"))
            if not found:
                raise Hep2Error(f"folder {p} holds no images (PNG, TIFF, BMP or JPEG)")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise Hep2Error(f"{p} does not exist: give image files or folders of images")
    return out
