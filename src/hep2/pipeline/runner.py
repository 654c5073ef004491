"""`hep2 run`: from a dataset to a trained model, honest figures and a report in one run folder."""

from __future__ import annotations

import io
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .. import distributed as dd
from ..data import load_images, open_dataset
from ..data.images import atomic_write_bytes
from ..errors import Hep2Error
from ..presets import Preset, check_preset
from ..training import bf16_is_native, precision, resolve_device
from .evaluation import (
    SPECIMEN_PROTOCOLS,
    classification_metrics,
    protocol_splits,
    specimen_figure,
    split_figures,
    split_metrics,
    summarize_protocol,
)
from .methods import get_method
from .predict import full_proba, save_model
from .runfolder import check_disk_space, check_same_run, environment, prepare_out, run_subset, write_csv, write_json


def run(
    dataset: str,
    *,
    protocol: str = "cv",
    cfg: Preset,
    out,
    subset: str = "train",
    resume: bool = False,
    skip_bad: bool = False,
    verbose: bool = True,
    ae_on_test: bool = False,
    method: str = "dcae-mlp",
) -> dict:
    """Fit the method's unsupervised stage (the DCAE, no labels), extract features, evaluate the
    classifier under ``protocol``, train the final classifier on all labelled training cells, and
    write the run folder."""
    t_start = time.perf_counter()
    check_preset(cfg)
    out = Path(out)
    device = resolve_device(cfg.device)  # a device that is not there stops before anything is written
    main = dd.is_main()  # under torchrun every process computes, rank 0 writes and reports
    verbose = verbose and main
    say = print if verbose else (lambda *a, **k: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    m = get_method(method, cfg)
    if ae_on_test and protocol != "official":
        raise Hep2Error(
            f"--ae-on-test is for --protocol official; under {protocol} the autoencoder already reads "
            "every cell of the subset (no labels): drop it"
        )
    cells = open_dataset(dataset, skip_bad=skip_bad)
    if main and m.preprocess().channel == "mean":  # colour cells mixing two stains: said, from a sample
        from ..data.images import read_image
        from ..data.summary import colour_problem, colour_share, mixed

        sample = cells.cells[:: max(len(cells) // 20, 1)][:20]
        shares = []
        for c in sample:
            try:
                share = colour_share(read_image(c.path, "rgb"))
            except Hep2Error:  # an unreadable file: named below, where the images are read
                continue
            if share is not None:
                shares.append(share)
        if shares and mixed(np.mean(shares, axis=0)):
            cells.problems.append(colour_problem(shares, f" among {len(sample)} cells sampled"))
    for problem in cells.problems if main else ():
        print(f"hep2: warning: {problem}", file=sys.stderr)
    subset = run_subset(cells, protocol, subset)
    splits, ae_idx = protocol_splits(cells, protocol, subset=subset, folds=cfg.cv_folds, seed=cfg.seed)
    if m.unsupervised and dd.is_main():
        check_disk_space(out, cfg)
    prepare_out(out, resume)  # after the checks of data, protocol and disk: a refused run writes nothing
    prep = m.preprocess()
    say(f"hep2 run: {cells.name}, method {method}, protocol {protocol}, preset {cfg.name}, {len(cells)} cells -> {out}")
    images, kept = load_images(cells, prep, skip_bad=skip_bad, progress=verbose)
    if len(kept) != len(cells):  # --skip-bad dropped images: recompute the splits on what is left
        say(f"skipped {len(cells) - len(kept)} unreadable images (listed in data.json)")
        cells = kept
        splits, ae_idx = protocol_splits(cells, protocol, subset=subset, folds=cfg.cv_folds, seed=cfg.seed)
    if ae_on_test and protocol == "official":
        ae_idx = np.arange(len(cells))
    # the cells that get features: the autoencoder's, every split's, and all of test/ for `full`
    split_k = protocol == "official" and bool(cells.official_splits())  # else official is train/ -> test/ once
    full_test = [cells.subsets["test"]] if split_k else []
    used = np.unique(np.concatenate([ae_idx, *full_test] + [np.concatenate([a, b]) for _, a, b in splits]))
    y = cells.y
    config = {
        "dataset": dataset,
        "protocol": protocol,
        "subset": subset,
        "method": method,
        "method_description": m.description,
        "input_size": prep.size,
        "preprocess": asdict(prep),
        "autoencoder_saw_test_images": bool(m.unsupervised and (protocol != "official" or ae_on_test)),
        "preset": cfg.to_dict(),
        "command": " ".join(sys.argv),
    }
    if resume and (out / "config.json").exists():
        check_same_run(out, config)
    if main:
        write_json(out / "config.json", config)
        write_json(
            out / "environment.json",
            environment()
            | {
                "device": str(device),
                "processes": dd.world(),
                "bf16_native": bf16_is_native(device.type),
                "precision": precision(cfg, device),
            },
        )
        write_json(
            out / "data.json",
            {
                "dataset": cells.name,
                "fingerprint": cells.fingerprint(),
                "n_cells": len(cells),
                "classes": cells.classes,
                "subsets": {k: len(v) for k, v in cells.subsets.items()},
                "skipped": {"count": len(cells.skipped), "files": cells.skipped},
            },
        )

    # 1. the unsupervised stage (the autoencoder), without labels
    t0 = time.perf_counter()
    if m.unsupervised and main:
        (out / "checkpoints").mkdir(exist_ok=True)
    m.fit_features(
        images[ae_idx],
        checkpoint=str(out / "checkpoints" / f"{method}.pt") if m.unsupervised else None,
        resume=resume,
        verbose=verbose,
    )
    t_ae = time.perf_counter() - t0
    # 2. features of every cell the protocol uses
    t0 = time.perf_counter()
    f_used = dd.map_rows(m.transform, images[used]) if m.unsupervised else m.transform(images[used])
    feats = np.zeros((len(cells), *f_used.shape[1:]), f_used.dtype)
    feats[used] = f_used
    t_feat = time.perf_counter() - t0
    if f_used.ndim == 2 and main:  # a feature vector per cell (not images, as for the CNN)
        buf = io.BytesIO()
        np.save(buf, f_used.astype(np.float32))
        atomic_write_bytes(out / "features.npy", buf.getvalue())
        write_csv(
            out / "features_ids.csv",
            ["row", "id", "label"],
            [[r, cells.cells[i].id, cells.cells[i].label] for r, i in enumerate(used)],
        )
        say(f"features: {len(used)} x {f_used.shape[1]} in {t_feat:.1f}s")

    # 3. the classifier under the protocol
    t0 = time.perf_counter()
    per_split, rows, all_true, all_pred = {}, [], [], []

    # each test specimen's call too, where the protocol holds whole specimens out and the cells name theirs
    specimens = cells.specimens if protocol in SPECIMEN_PROTOCOLS else None

    def prediction_rows(split, idx, proba, pred):
        return [
            [
                split,
                cells.cells[i].id,
                *([cells.cells[i].specimen] if specimens is not None else []),
                cells.classes[y[i]],
                cells.classes[p],
                *np.round(pr, 5),
            ]
            for i, p, pr in zip(idx, pred, proba)
        ]

    def evaluate(idx, proba):
        return split_metrics(y[idx], proba, cells.classes, None if specimens is None else specimens[idx])

    for name, a, b in splits:
        clf = m.classifier().fit(feats[a], y[a])
        proba = full_proba(clf, feats[b], len(cells.classes))
        pred = proba.argmax(1)
        per_split[name] = evaluate(b, proba)
        all_true.append(y[b])
        all_pred.append(pred)
        rows += prediction_rows(name, b, proba, pred)
        say(f"  {name}: {split_figures(per_split[name])}  (train {len(a)}, test {len(b)})")
    pooled = classification_metrics(np.concatenate(all_true), np.concatenate(all_pred), cells.classes)
    extra = {}
    train_idx = cells.subsets["train"] if protocol == "official" else ae_idx
    # official on a layout's own train/ -> test/: its one split's classifier is the final one
    final = clf if protocol == "official" and not split_k else m.classifier().fit(feats[train_idx], y[train_idx])
    if split_k:  # also all of train/ against all of test/
        test = cells.subsets["test"]
        full_p = full_proba(final, feats[test], len(cells.classes))
        full_pred = full_p.argmax(1)
        extra["full"] = evaluate(test, full_p)
        rows += prediction_rows("full", test, full_p, full_pred)
        say(f"  full (train/ -> test/): {split_figures(extra['full'])}")
    t_clf = time.perf_counter() - t0
    extra |= {
        "dataset": cells.name,
        "preset": cfg.name,
        "method": method,
        # the paper's figure is on SNPHEp-2: beside another dataset's it would compare nothing
        "paper_accuracy": m.paper_accuracy if cells.name.startswith("snphep2:") else None,
        "n_splits": len(splits),
        "autoencoder_saw_test_images": config["autoencoder_saw_test_images"],
        # the held-out loss of the model kept (the best epoch), not of the last epoch
        "reconstruction_mse": min(h["val_loss"] for h in m.history_) if m.history_ else None,
        "seconds": {
            "autoencoder": round(t_ae, 1),
            "features": round(t_feat, 1),
            "classifier": round(t_clf, 1),
            "total": round(time.perf_counter() - t_start, 1),
        },
    }
    metrics = summarize_protocol(protocol, per_split, pooled, extra)
    history = {"autoencoder": m.history_, "classifier": getattr(final, "history_", [])}
    if not main:
        return metrics
    write_json(out / "metrics.json", metrics)
    write_csv(
        out / "predictions.csv",
        ["split", "id", *(["specimen"] if specimens is not None else []), "true", "predicted"]
        + [f"p_{c}" for c in cells.classes],
        rows,
    )
    save_model(out / "model", m, final, cells.classes, masks=prep.use_mask and any(c.mask for c in cells.cells))
    write_json(out / "history.json", history)

    # 4. figures and the report
    from .report import write_report

    recon_idx = ae_idx[np.linspace(0, len(ae_idx) - 1, min(8, len(ae_idx))).astype(int)]
    originals = images[recon_idx]  # with several views, the first autoencoder's (the one reconstructed)
    write_report(
        out,
        metrics=metrics,
        config=config,
        cells=cells,
        history=history,
        originals=(originals[:, 0] if originals.ndim == 4 else originals) / 255.0,
        reconstructions=m.reconstruct(images[recon_idx]),
    )
    metrics["seconds"]["total"] = round(time.perf_counter() - t_start, 1)
    write_json(out / "metrics.json", metrics)
    say(
        f"accuracy {metrics['accuracy']['mean']:.4f} ± {metrics['accuracy']['std']:.4f}, "
        f"MCA {metrics['mca']['mean']:.4f}{specimen_figure(metrics)} ({protocol}, preset {cfg.name}, {cells.name}); "
        f"{metrics['seconds']['total']:.0f}s"
    )
    say(f"report: {out / 'report.html'}")
    return metrics


__all__ = ["run"]
