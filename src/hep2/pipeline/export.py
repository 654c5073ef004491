"""Export a trained run's model as one graph (ONNX or TorchScript) with a model card.

The graph's single input is the preprocessed image batch, float32 (N, 1, S, S) in [0, 1] (hep2's
preprocessing: per-image percentile normalisation, mask, aspect-preserving resize to S (or one
fixed magnification, centred), zero padding; see the model card), or (N, V, S, S) where the
autoencoders read V views of each cell (setting ``ae_views``: channel v high-pass filtered at its
sigma before that preprocessing; with ``denoise``, each raw image is first denoised, see the model card);
its output is the class probabilities (N, C) in the run's class order. The batch size is dynamic. The export
is checked against hep2's own prediction before it is kept: a model whose exported probabilities differ by
more than 1e-4 is an error.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import Hep2Error
from ..estimators import dihedral
from ..training import use_bf16
from .predict import Predictor

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4


class _DCAEGraph(nn.Module):
    """For each autoencoder: its features of its input channel (autoencoder g reads channel g % channels):
    Conv 5 or the pooled maps (their mean over the 8 flips / rotations when the run used tta; with
    tta_samples each view's own), or the bag of words of its local activations (the 8 views counted
    together). Then either each autoencoder's standardised features through its classifier networks,
    the mean of all their probabilities; or (head=logistic) all of them standardised together, one
    logistic regression."""

    def __init__(self, aes, views: int, clf, mapping, channels: int = 1):
        super().__init__()
        cfg = aes[0].config_
        self.encoders, self.views, self.kind = nn.ModuleList(ae.model_ for ae in aes), views, cfg.features
        self.samples, self.channels, self.layer = cfg.tta_samples, channels, cfg.ae_words_layer
        self.logistic = cfg.head == "logistic"
        if self.kind == "words":
            for g, ae in enumerate(aes):
                self.register_buffer(f"codebook{g}", ae.codebook_.float())
        if self.logistic:  # scikit-learn Pipeline(StandardScaler, LogisticRegression)
            scaler, lr = clf.named_steps["standardscaler"], clf.named_steps["logisticregression"]
            blocks = [(scaler, [])]
            coef, intercept = (
                torch.as_tensor(lr.coef_, dtype=torch.float32),
                torch.as_tensor(lr.intercept_, dtype=torch.float32),
            )
            if len(coef) == 1:  # two classes: P(second) = sigmoid(d), the softmax of (0, d)
                coef, intercept = torch.cat([torch.zeros_like(coef), coef]), torch.cat([torch.zeros(1), intercept])
            self.register_buffer("coef", coef)
            self.register_buffer("intercept", intercept)
        else:
            blocks = clf.blocks_
        self.nets = nn.ModuleList(nn.ModuleList(nets) for _, nets in blocks)
        for g, (scaler, _) in enumerate(blocks):
            self.register_buffer(f"mean{g}", torch.as_tensor(scaler.mean_, dtype=torch.float32))
            self.register_buffer(f"scale{g}", torch.as_tensor(scaler.scale_, dtype=torch.float32))
        self.register_buffer("mapping", mapping)

    def _features(self, g: int, xg):
        encoder = self.encoders[g]
        if self.kind == "words":
            return [
                encoder.words([dihedral(xg, k) for k in range(self.views)], getattr(self, f"codebook{g}"), self.layer)
            ]
        zs = [encoder.features(dihedral(xg, k), self.kind) for k in range(self.views)]
        return zs if self.samples else [sum(zs) / self.views]  # tta_samples: each view's own probabilities

    def forward(self, x):
        feats = [self._features(g, x[:, g % self.channels : g % self.channels + 1]) for g in range(len(self.encoders))]
        if self.logistic:
            z = (torch.cat([zs[0] for zs in feats], 1) - self.mean0) / self.scale0
            return torch.softmax(z @ self.coef.T + self.intercept, dim=1) @ self.mapping
        probs = []
        for g, (zs, nets) in enumerate(zip(feats, self.nets)):
            for z in zs:
                z = (z - getattr(self, f"mean{g}")) / getattr(self, f"scale{g}")
                probs += [torch.softmax(net(z), dim=1) for net in nets]
        return (sum(probs) / len(probs)) @ self.mapping


class _CNNGraph(nn.Module):
    """The CNN's probabilities, averaged over the 8 flips / rotations when the run used tta."""

    def __init__(self, net, views: int, mean: float, std: float, mapping):
        super().__init__()
        self.net, self.views, self.mean, self.std = net, views, float(mean), float(std)
        self.register_buffer("mapping", mapping)

    def forward(self, x):
        x = (x - self.mean) / self.std
        p = sum(torch.softmax(self.net(dihedral(x, k)), dim=1) for k in range(self.views)) / self.views
        return p @ self.mapping


def build_graph(pred: Predictor) -> nn.Module:
    """The run's whole classifier as one module: (N, V, S, S) in [0, 1] -> (N, C) probabilities
    (V = 1 but where the autoencoders read several views)."""
    clf, method = pred.classifier, pred.method
    if pred.method_name == "ensemble":
        raise Hep2Error(
            f"the model in {pred.model_dir} is an ensemble of {len(pred.members)} runs (`hep2 ensemble`): "
            "it has no single graph; export its member runs one by one and average their outputs"
        )
    if pred.method_name not in ("dcae-mlp", "cnn5", "resnet"):
        raise Hep2Error(
            f"the model in {pred.model_dir} uses method {pred.method_name!r}, whose features "
            "(scikit-image) and scikit-learn classifier have no ONNX / TorchScript form: export works for "
            "dcae-mlp, cnn5 and resnet runs"
        )
    # the classifier knows only the classes it was trained on; the run's list may be longer
    mapping = torch.zeros(len(clf.classes_), len(pred.classes))
    mapping[torch.arange(len(clf.classes_)), torch.as_tensor(np.asarray(clf.classes_).astype(int))] = 1
    if pred.method_name == "dcae-mlp":
        aes = method.autoencoders
        g = _DCAEGraph(aes, 8 if aes[0].config_.tta else 1, clf, mapping, channels=_channels(pred))
    else:
        g = _CNNGraph(clf.net_, 8 if clf.tta else 1, clf.mean_, clf.std_, mapping)
    return g.float().eval()


SUFFIXES = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
}


def export_format(fmt: str | None, out: Path) -> str:
    """The format asked for, or the one the file name says; a name that says another is an error."""
    said = SUFFIXES.get(out.suffix.lower())
    if fmt is None:
        if said is None:
            raise Hep2Error(f"--out {out}: name the file .onnx (ONNX) or .pt (TorchScript), or give --format")
        return said
    if fmt not in FORMATS:
        raise Hep2Error(f"unknown export format {fmt!r}: choose onnx or torchscript")
    if said is not None and said != fmt:
        raise Hep2Error(
            f"--format {fmt} with --out {out}: a {out.suffix} file would be read as {said}; name it "
            f"{out.with_suffix('.onnx' if fmt == 'onnx' else '.pt').name}, or drop --format"
        )
    return fmt


def export(model_dir, fmt: str | None, out) -> dict:
    """Write the graph to ``out`` and its model card beside it (``out`` with ``.md``); return what
    was checked."""
    out = Path(out)
    if out.exists() and out.is_dir():
        raise Hep2Error(
            f"--out {out} is a folder: give a file name, e.g. {out}/model.{'pt' if fmt == 'torchscript' else 'onnx'}"
        )
    fmt = export_format(fmt, out)
    pred = Predictor(model_dir)
    graph = build_graph(pred)
    size = pred.prep.size
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    example = torch.rand(2, _channels(pred), size, size)
    try:
        # the graph is traced at one input size: what the tracer warns of (shapes read as numbers, the bands of the
        # bag of words made constants) holds for every batch of that size, and the check below runs other batches
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            if fmt == "onnx":
                _export_onnx(graph, example, tmp, pred)
            else:
                with warnings.catch_warnings():  # TorchScript is deprecated upstream, still widely read
                    warnings.simplefilter("ignore", DeprecationWarning)
                    torch.jit.trace(graph, example).save(str(tmp))
        check = verify(tmp, fmt, pred)
        if check["max_abs_diff"] > TOLERANCE:
            raise Hep2Error(
                f"the exported {fmt} model differs from hep2's prediction by "
                f"{check['max_abs_diff']:.2e} (more than {TOLERANCE}): not written"
            )
        os.replace(tmp, out)
    except OSError as e:  # named by the file the user asked for, not the temporary one
        raise OSError(e.errno, e.strerror, str(out)) from None
    finally:
        tmp.unlink(missing_ok=True)
    card = out.with_name(out.name + ".md")
    card.write_text(model_card(pred, pred.model_dir, fmt, out, check))  # the run folder, however --model named it
    return {
        "model": str(out),
        "card": str(card),
        "format": fmt,
        "input": [None, _channels(pred), size, size],
        "classes": list(pred.classes),
        **check,
    }


def _export_onnx(graph, example, path: Path, pred: Predictor) -> None:
    try:
        import onnx
    except ImportError:
        raise Hep2Error("ONNX export needs the onnx package: pip install onnx onnxruntime") from None
    with warnings.catch_warnings():  # the TorchScript-based exporter: deprecated upstream, stable here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    m = onnx.load(str(path))
    meta = {
        "hep2_classes": json.dumps(list(pred.classes)),
        "hep2_method": pred.method_name,
        "hep2_preprocessing": json.dumps(_preprocessing(pred)),
    }
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, str(path))


def _channels(pred: Predictor) -> int:
    """The graph's input channels: one a view of the cell (1 but with ae_views)."""
    return max(1, len(pred.prep.views))


def _preprocessing(pred: Predictor) -> dict:
    p = pred.prep
    filt = "the image minus its Gaussian blur of sigma {} px (scipy.ndimage gaussian_filter, mode nearest, truncate 4)"
    return {
        "grey_from_colour": "the mean of R, G and B" if p.channel == "mean" else f"the {p.channel} channel alone",
        "size": p.size,
        "low_percentile": p.low_pct,
        "high_percentile": p.high_pct,
        "use_mask": p.use_mask,
        "magnification": p.scale,
        "highpass_sigma": list(p.views) if p.views else p.highpass,
        **(
            {
                "denoise": f"before anything else, on the raw grey levels: non-local means (scikit-image "
                f"denoise_nl_means, patch_size 3, patch_distance 4, fast_mode) with h = {p.denoise} x the "
                "image's noise std from estimate_sigma, sigma = that std (hep2.data.images.denoise_image)"
            }
            if p.denoise > 0
            else {}
        ),
        **({"highpass": "first, " + filt.format(p.highpass)} if p.highpass > 0 and not p.views else {}),
        **(
            {
                "views": f"{len(p.views)} input channels, the same cell preprocessed {len(p.views)} ways: "
                + "; ".join(
                    f"channel {v}: " + (("first, " + filt.format(s)) if s > 0 else "unfiltered")
                    for v, s in enumerate(p.views)
                )
            }
            if p.views
            else {}
        ),
        "scale": (
            "per image: histogram equalisation of its intensities (inside the mask; scikit-image "
            "exposure.equalize_hist, 256 bins), the percentiles unused"
        )
        if p.equalize
        else "per image: the low..high percentile of its intensities (inside the mask) -> 0..1, clipped",
        "resize": (
            f"every image by the factor {p.scale} (bilinear), centred: zero padding to size x size, the "
            "centre cropped where larger"
        )
        if p.scale > 0
        else "keep the aspect ratio, longer side to size, zero padding to a square",
        "quantisation": "hep2 rounds the preprocessed image to 1/255 steps before the model",
    }


def run_exported(path, fmt: str, x: np.ndarray) -> np.ndarray:
    """Class probabilities of an exported file for float32 images (N, V, S, S) (V = 1 but with ae_views)."""
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise Hep2Error("checking an ONNX export needs onnxruntime: pip install onnxruntime") from None
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(None, {"image": x.astype(np.float32)})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        m = torch.jit.load(str(path))
    with torch.no_grad():
        return m(torch.from_numpy(x.astype(np.float32))).numpy()


def verify(path, fmt: str, pred: Predictor, n: int = 5) -> dict:
    """Run the exported file and hep2's Predictor on the same images (a batch size other than the
    one traced); the largest absolute difference of the probabilities."""
    size = pred.prep.size
    rng = np.random.default_rng(0)
    imgs = np.zeros((n, _channels(pred), size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):  # bright discs with texture, like a cell; random noise alone is not one
        r = size * rng.uniform(0.25, 0.45)
        disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r
        imgs[i] = np.where(disc, rng.integers(60, 256, imgs.shape[1:]), 0)
    # the graph computes in fp32: compare with hep2's fp32 path (its extraction may run in bf16)
    aes = pred.method.autoencoders if pred.method_name == "dcae-mlp" else []
    saved = [ae.config_ for ae in aes]
    for ae in aes:
        ae.config_ = ae.config_.override({"infer_amp": False})
    try:
        ours = pred.predict_images(imgs if pred.prep.views else imgs[:, 0])
    finally:
        for ae, cfg in zip(aes, saved):
            ae.config_ = cfg
    theirs = run_exported(path, fmt, imgs.astype(np.float32) / 255)
    return {
        "max_abs_diff": float(np.abs(ours - theirs).max()),
        "checked_images": n,
        "hep2_in_bf16": any(use_bf16(cfg.infer_amp, "cpu") for cfg in saved),
    }


def model_card(pred: Predictor, run: Path, fmt: str, out: Path, check: dict) -> str:
    def load(name):
        try:
            return json.loads((run / name).read_text())
        except (OSError, ValueError):
            return {}

    config, metrics, data = load("config.json"), load("metrics.json"), load("data.json")
    acc, mca = metrics.get("accuracy", {}), metrics.get("mca", {})
    proto = metrics.get("protocol", config.get("protocol", "?"))
    lines = [
        f"# Model card: {out.name}",
        "",
        f"Exported {_dt.date.today().isoformat()} by hep2 from the run folder `{run}` as {fmt}.",
        "",
        "## Model",
        f"- Method: `{pred.method_name}`: {config.get('method_description', '')}",
        f"- Preset: `{pred.config.name}` ({pred.config.description})",
        f"- Input `image`: float32 (N, {_channels(pred)}, {pred.prep.size}, {pred.prep.size}), values in [0, 1], "
        "N dynamic" + (" (channels: the views under Preprocessing)." if pred.prep.views else "."),
        f"- Output `probabilities`: float32 (N, {len(pred.classes)}), columns in this order: "
        + ", ".join(f"`{c}`" for c in pred.classes)
        + ".",
        f"- Checked at export: largest absolute difference from hep2's own fp32 prediction "
        f"{check['max_abs_diff']:.1e} on {check['checked_images']} images (limit {TOLERANCE}). The graph "
        "computes in fp32; hep2 itself may extract features in bf16 (setting `infer_amp`), whose "
        "predictions agree with fp32 on 99.6% of SNPHEp-2 cells.",
        "",
        "## Preprocessing (do this before the model)",
        *[f"- {k}: {v}" for k, v in _preprocessing(pred).items()],
        "",
        "## Training data",
        f"- Dataset: `{config.get('dataset', '?')}`; fingerprint `{data.get('fingerprint', '?')}`",
        f"- Cells: {data.get('n_cells', '?')}; classes: {', '.join(pred.classes)}",
        "",
        "## Evaluation",
        f"- Protocol: **{proto}**"
        + (
            " (cell-level cross-validation: cells of one specimen fall on both sides of a fold, so it is "
            "optimistic for new specimens)"
            if proto == "cv"
            else " (specimen-disjoint splits: the figure to expect on new specimens)"
            if proto in ("official", "grouped")
            else ""
        ),
        f"- Accuracy: {acc.get('mean', float('nan')):.4f} ± {acc.get('std', float('nan')):.4f}; "
        f"mean class accuracy: {mca.get('mean', float('nan')):.4f} ± {mca.get('std', float('nan')):.4f}",
        *(
            [
                f"- Specimen level (each test specimen's dominant pattern against its label): "
                f"{metrics['specimens']['accuracy']['mean']:.4f} ± {metrics['specimens']['accuracy']['std']:.4f}"
            ]
            if metrics.get("specimens")
            else []
        ),
        "",
        "## Intended use and limits",
        "- Research use: studying and comparing HEp-2 staining-pattern classifiers. It is **not a "
        "diagnostic device** and must not be used to report patient results.",
        "- Trained on one laboratory's images of one imaging set-up; accuracy on other microscopes, "
        "staining kits or specimen populations is unknown until measured there.",
        "- It classifies single segmented cells into the classes above only; other patterns (mitotic, "
        "mixed, negative) get one of these labels regardless.",
        "",
    ]
    return "\n".join(lines)


__all__ = ["FORMATS", "export_format", "build_graph", "export", "run_exported", "verify", "model_card"]
