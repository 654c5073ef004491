"""Saving a trained pipeline (features + classifier) and classifying new cell images with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import __version__
from ..data.images import (
    IMAGE_EXTENSIONS,
    IMAGE_FORMATS,
    image_shape,
    plain_view,
    preprocess_array,
    preprocess_image,
)
from ..errors import Hep2Error
from ..training import load_checkpoint, save_checkpoint

FORMAT = 2


def save_model(folder, method, clf, classes: list[str], masks: bool | None = None, naming: str | None = None) -> None:
    """``folder/pipeline.pt``: the fitted method (with the DCAE weights), the classifier, the class
    names, the settings, ``masks`` (whether its training cells were read with masks) and ``naming`` (the class
    naming of its training data, where a reader changed one), in one file written atomically. Load only files you
    trust (pickle)."""
    save_checkpoint(
        Path(folder) / "pipeline.pt",
        {
            "format": FORMAT,
            "hep2": __version__,
            "method": method.name,
            "preset": method.cfg.to_dict(),
            "features": method.for_prediction(),
            "classifier": clf,
            "classes": list(classes),
            "masks": masks,
            "naming": naming,
        },
    )


def save_ensemble(folder, members: list[dict], classes: list[str], neighbours=None) -> None:
    """``folder/pipeline.pt`` for an ensemble: the members' saved pipelines (each a dict as
    `save_model` writes it), whose probabilities `Predictor` averages with equal weights; with
    ``neighbours`` (a fitted `hep2.pipeline.neighbours.BatchNeighbours`) then smooths over each batch."""
    save_checkpoint(
        Path(folder) / "pipeline.pt",
        {
            "format": FORMAT,
            "hep2": __version__,
            "method": "ensemble",
            "classes": list(classes),
            "members": [
                {
                    "method": m["method"],
                    "preset": m["preset"],
                    "features": m["features"].for_prediction(),
                    "classifier": m["classifier"],
                    "masks": m.get("masks"),
                }
                for m in members
            ],
            "neighbours": neighbours,
        },
    )


def comparison_folder(d: Path) -> None:
    """A Hep2Error naming the run folders inside ``d`` when it is a folder of `hep2 compare`, whose runs are
    its subfolders (given where one run folder is wanted)."""
    if (d / "comparison.json").is_file():
        runs = sorted(str(r) for r in d.iterdir() if (r / "model" / "pipeline.pt").is_file())
        raise Hep2Error(
            f"{d} is a comparison of `hep2 compare`, not one run: give one of its run folders ("
            + (", ".join(runs) or "none has finished")
            + ")"
        )


def full_proba(clf, X, n_classes: int) -> np.ndarray:
    """Probabilities over all dataset classes from a classifier fitted on class indices (a class
    absent from its training split gets 0)."""
    p = clf.predict_proba(X)
    full = np.zeros((len(X), n_classes), np.float32)
    full[:, np.asarray(clf.classes_).astype(int)] = p
    return full


def legacy_precision(method) -> None:
    """A model saved by hep2 0.1.0 holds ``infer_amp=True``, that version's default for every machine: it extracts
    as ``auto`` does now (bf16 only where the machine computes it natively), not in bf16 emulated hundreds of
    times slower on an AVX2-only CPU."""
    cfgs = [method] + [ae for ae in getattr(method, "aes_", []) if hasattr(ae, "config_")]
    for holder in cfgs:
        for attr in ("cfg", "config_"):
            cfg = getattr(holder, attr, None)
            if cfg is not None and getattr(cfg, "infer_amp", None) is True:
                setattr(holder, attr, cfg.override({"infer_amp": "auto"}))


def old_naming_note(run_folder: Path, state: dict) -> str | None:
    """A line for a model trained on SNPHEp-2 under the names of hep2 before 0.3.0 (labels 1 and 3 the other way
    round), else None."""
    from ..data.readers import SNPHEP2_OLD_NAMES

    try:
        dataset = json.loads((Path(run_folder) / "config.json").read_text()).get("dataset")
    except (OSError, ValueError):
        return None
    if state.get("naming") or "snphep2:" not in str(dataset) or state.get("method") == "ensemble":
        return None
    return (
        f"{run_folder} was trained on SNPHEp-2 under the names of hep2 before 0.3.0: its "
        + " and its ".join(f"{k} means SNPHEp-2's {v}" for k, v in SNPHEP2_OLD_NAMES.items())
        + "; train it again for the current names"
    )


ADAPT_MIN_CELLS = 30  # a batch of this many cells or more sets its own feature statistics (setting adapt)


class Predictor:
    """A trained pipeline loaded from a run folder (or its ``model/`` subfolder); for an ensemble
    (`hep2 ensemble`), its members' pipelines, whose probabilities are averaged.

    Parameters
    ----------
    model_dir : str or Path
        A run folder of `hep2 run`, `hep2 ensemble` or `hep2 demo`'s runs, its ``model/`` folder or its
        ``model/pipeline.pt``. Load only files you trust (pickle).

    Attributes
    ----------
    classes : list of str
        The patterns, in the order of the probabilities' columns.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from hep2.data import open_dataset
    >>> from hep2.pipeline.predict import Predictor
    >>> from hep2.pipeline.runner import run
    >>> from hep2.presets import get_preset
    >>> out = Path(tempfile.mkdtemp()) / "run"
    >>> _ = run("synthetic:6", protocol="cv", cfg=get_preset("tiny"), out=out, method="shape-index", verbose=False)
    >>> pred = Predictor(out)
    >>> files = [cell.path for cell in open_dataset("synthetic:6").cells[:3]]
    >>> rows, skipped = pred.predict_files(files)
    >>> [(Path(path).name, pattern in pred.classes, proba.shape) for path, pattern, proba in rows]
    [('s05_0001.png', True, (5,)), ('s05_0002.png', True, (5,)), ('s10_0001.png', True, (5,))]
    """

    def __init__(self, model_dir):
        d = Path(model_dir)
        if d.is_file() and d.suffix != ".pt":
            raise Hep2Error(
                f"--model {d} is a file, not a model: give the run folder that `hep2 run` wrote (or its "
                "model/pipeline.pt)"
            )
        if d.is_file():  # the model file itself
            d = d.parent.parent if d.parent.name == "model" else d.parent
            f = Path(model_dir)
        else:
            f = d / "pipeline.pt" if (d / "pipeline.pt").is_file() else d / "model" / "pipeline.pt"  # model/ or a run
            d = d.parent if f.parent == d and d.name == "model" else d
        if not d.exists():
            raise Hep2Error(f"--model {d} does not exist: give the run folder that `hep2 run` wrote")
        self.model_dir = d  # the run folder (its metrics and settings), however the model was named
        if not f.exists():
            unfinished = (d / "config.json").is_file()
            comparison_folder(d)
            raise Hep2Error(
                f"{d} holds no model ({f.relative_to(d)}): "
                + (
                    "its run did not finish; continue it with `hep2 run ... --resume` and the same --out"
                    if unfinished
                    else "--model must be a run folder written by `hep2 run`, `hep2 compare` or `hep2 ensemble`"
                )
            )
        state = load_checkpoint(f, fix="train the model again with `hep2 run`")
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise Hep2Error(f"{f} is not a model of this hep2 version (format {FORMAT}): retrain it with `hep2 run`")
        self.members = [(m["features"], m["classifier"]) for m in state.get("members", [state])]
        if str(state.get("hep2", "0.1.0")).startswith("0.1."):
            for method, _ in self.members:
                legacy_precision(method)
        # True / False: its training cells were / were not read with masks; None: a model saved before that was kept
        masks = {m.get("masks") for m in state.get("members", [state])}
        self.masks = masks.pop() if len(masks) == 1 else None
        # transductive (`hep2 ensemble --neighbours`): a batch's cells smoothed over their nearest in it
        self.neighbours = state.get("neighbours")
        self.method, self.classifier = self.members[0]  # the first (the only one, but for an ensemble)
        self.classes, self.method_name = state["classes"], state["method"]
        self.config = self.method.cfg
        self.prep = self.method.preprocess()
        # the distinct preprocessings the members ask for, the first member's first
        self.preps = list(dict.fromkeys(m.preprocess() for m, _ in self.members))
        self.naming_note = old_naming_note(d, state)
        # adapt=standardize: each batch of ADAPT_MIN_CELLS or more sets its own feature statistics (no labels)
        self.adapts = any(getattr(clf, "standardises", False) for _, clf in self.members)
        self.transductive = self.neighbours is not None or self.adapts

    def predict_images(self, images: np.ndarray) -> np.ndarray:
        """Preprocessed uint8 images (N, S, S), or (N, V, S, S) for a model whose autoencoders read
        several views (setting ae_views) -> class probabilities (N, len(classes))."""
        if len(self.preps) > 1:
            raise Hep2Error(
                f"the ensemble in {self.model_dir} has members that preprocess images differently "
                "("
                + "; ".join(
                    f"size {p.size}, scale {p.scale}, highpass {p.views or p.highpass}, equalize {p.equalize}, "
                    f"denoise {p.denoise}, channel {p.channel}"
                    for p in self.preps
                )
                + "): classify image files (predict_files / classify), not preprocessed arrays"
            )
        images, want = np.asarray(images), image_shape(self.prep)
        if images.ndim != len(want) + 1 or images.shape[1:] != want:
            raise Hep2Error(
                f"images of shape {images.shape} given; this model reads (N, {', '.join(map(str, want))}): "
                "preprocess them as the model's `prep` says (load_files does), or give image files"
            )
        return self._average({self.prep: images})

    def _average(self, by_prep: dict) -> np.ndarray:
        n = len(by_prep[self.prep])
        if n == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        from .neighbours import cell_features

        proba, blocks = 0, []
        for i, (m, clf) in enumerate(self.members):
            F = m.transform(by_prep[m.preprocess()])
            if getattr(clf, "standardises", False) and len(F) >= ADAPT_MIN_CELLS:  # a batch's own statistics
                F, clf = clf.own_batch(F)
            proba = proba + full_proba(clf, F, len(self.classes))
            if self.neighbours is not None and self.neighbours.uses(i):
                blocks.append(cell_features(m, F))
        proba = proba / len(self.members)
        return self.neighbours.smooth(proba, blocks) if self.neighbours is not None else proba

    def predict_crops(self, crops) -> np.ndarray:
        """Cells cut from a field, ``(grey, mask)`` pairs of raw grey levels and a bool mask -> class
        probabilities (N, len(classes)); masks are applied as in training (not where the model was trained
        without them)."""
        by_prep = {}
        for prep in self.preps:
            use = prep.use_mask and self.masks is not False
            by_prep[prep] = (
                np.stack(
                    [np.round(preprocess_array(g, prep, m if use else None) * 255).astype(np.uint8) for g, m in crops]
                )
                if len(crops)
                else np.zeros((0, *image_shape(prep)), np.uint8)
            )
        return self._average(by_prep)

    def classify(self, paths, *, skip_bad: bool = False):
        """Files -> (class probabilities (N, C), the images as the first member sees them (N, S, S)
        uint8 (its unfiltered view where it reads several), the paths read, list of skipped 'file: reason')."""
        if isinstance(paths, (str, Path)):
            raise Hep2Error(f"paths={str(paths)!r}: give a list of image files (expand_inputs lists a folder's)")
        groups = by_folder(paths)
        if self.transductive and len(groups) > 1:  # each folder (well) a batch of its own
            parts = [self.classify([paths[i] for i in idx], skip_bad=skip_bad) for idx in groups.values()]
            ok, position = [q for part in parts for q in part[2]], {Path(x): i for i, x in enumerate(paths)}
            order = np.argsort([position[q] for q in ok], kind="stable")  # back to the order given
            return (
                np.concatenate([part[0] for part in parts])[order],
                np.concatenate([part[1] for part in parts])[order],
                [ok[i] for i in order],
                [b for part in parts for b in part[3]],
            )
        by_prep, ok, bad = {}, [Path(p) for p in paths], []
        for prep in self.preps:
            images, kept, more = self.load_files(ok, skip_bad=skip_bad, prep=prep)
            if len(kept) < len(ok):  # unreadable under this preprocessing: drop it from the earlier ones too
                left, idx = iter(enumerate(ok)), []
                for p in kept:
                    idx.append(next(i for i, q in left if q == p))
                by_prep = {k: v[idx] for k, v in by_prep.items()}
            by_prep[prep], ok, bad = images, kept, bad + more
        first = by_prep[self.prep]  # with several views, the unfiltered one
        return self._average(by_prep), first[:, plain_view(self.prep)] if first.ndim == 4 else first, ok, bad

    def load_files(self, paths, *, skip_bad: bool = False, prep=None):
        """Files -> (uint8 images (N, S, S) preprocessed as in training (or as ``prep`` says; a file's mask
        ``NAME_mask.EXT`` beside it applied where the model's settings use masks), the paths read, list of
        skipped 'file: reason'); without ``skip_bad`` the first unreadable file raises Hep2Error."""
        from ..data.readers import find_mask

        prep = prep or self.prep
        images, ok, bad = [], [], []
        for p in paths:
            try:
                # with its mask (NAME_mask.EXT beside it) as in training, rounded to 8 bits as `hep2 run` stores them
                mask = find_mask(Path(p)) if prep.use_mask and self.masks is not False else None
                images.append(np.round(preprocess_image(p, prep, mask) * 255).astype(np.uint8))
                ok.append(Path(p))
            except Hep2Error as e:
                if not skip_bad:
                    raise
                bad.append(str(e))
        return (np.stack(images) if images else np.zeros((0, *image_shape(prep)), np.uint8)), ok, bad

    def mask_notes(self, paths) -> list[str]:
        """Where the files' masks (``NAME_mask.EXT`` beside them) differ from the training cells': a line to
        show. A model trained without masks does not apply them; one trained with them reads a file without
        one unmasked."""
        from ..data.readers import find_mask

        if self.masks is None or not any(p.use_mask for p in self.preps):
            return []
        found = sum(find_mask(Path(p)) is not None for p in paths)
        if self.masks and found < len(paths):
            return [
                f"{len(paths) - found} of {len(paths)} cells have no mask beside them (NAME_mask.EXT) and are "
                "classified unmasked, though the model was trained on masked cells"
            ]
        if not self.masks and found:
            return [
                f"{found} of {len(paths)} cells have a mask beside them, which is not applied: the model was "
                "trained on cells without masks"
            ]
        return []

    def predict_files(self, paths, *, skip_bad: bool = False):
        """Files -> (rows of (path, pattern, probabilities), list of skipped 'file: reason')."""
        proba, _, ok, bad = self.classify(paths, skip_bad=skip_bad)
        rows = [(p, self.classes[int(pr.argmax())], pr) for p, pr in zip(ok, proba)]
        return rows, bad


def by_folder(paths) -> dict[Path, list[int]]:
    """The positions of ``paths`` grouped by the folder each file is in (one folder, one well, one
    specimen), folders in order of first appearance."""
    groups = {}
    for i, path in enumerate(paths):
        groups.setdefault(Path(path).parent, []).append(i)
    return groups


def folder_summaries(rows, classes: list[str]) -> list[tuple[Path, dict]]:
    """`predict_files` rows grouped `by_folder`: (folder, `hep2.pipeline.evaluation.batch_summary` of its cells)."""
    from .evaluation import batch_summary

    return [
        (folder, batch_summary(np.stack([rows[i][2] for i in idx]), classes))
        for folder, idx in by_folder([r[0] for r in rows]).items()
    ]


def expand_inputs(items, skipped: list | None = None) -> list[Path]:
    """Files and folders (searched recursively for images) -> image files, in a stable order; a cell's
    mask (``NAME_mask.EXT`` beside ``NAME.EXT``) is not a cell: it is read with its image. A file given
    that is not an image is an error, or with ``skipped`` (a list) is left out and added to it."""
    import glob

    from ..data.readers import files_under, is_cell_image, is_mask

    out, masks = [], []
    for item in items:
        p = Path(item)
        if p.is_dir():  # the images `hep2 run` would read in a class folder (no masks, hidden or system files)
            found = [f for f in files_under(p) if is_cell_image(f)]
            if not found:
                raise Hep2Error(f"folder {p} holds no images ({IMAGE_FORMATS})")
            out += found
        elif not p.exists():
            raise Hep2Error(f"{p} does not exist: give image files or folders of images")
        elif p.suffix.lower() not in IMAGE_EXTENSIONS:
            msg = f"{p} is not a cell image ({IMAGE_FORMATS})"
            if skipped is None:
                raise Hep2Error(msg + ": leave it out, or pass --skip-bad")
            skipped.append(msg)
        elif is_mask(p) and any(
            f.suffix.lower() in IMAGE_EXTENSIONS and not is_mask(f)
            for f in p.parent.glob(glob.escape(p.stem[:-5]) + ".*")
        ):
            masks.append(p)  # a cell's mask: read with the cell
        else:
            out.append(p)
    for m in masks:  # given beside its cell (a shell glob): fine; alone: say so
        if not any(c.parent == m.parent and c.stem == m.stem[:-5] for c in out):
            msg = f"{m} is the mask of a cell image beside it, not a cell: give the cell image, which is read with it"
            if skipped is None:
                raise Hep2Error(msg)
            skipped.append(msg)
    return out


__all__ = [
    "FORMAT",
    "Predictor",
    "by_folder",
    "comparison_folder",
    "expand_inputs",
    "folder_summaries",
    "full_proba",
    "save_ensemble",
    "save_model",
]
