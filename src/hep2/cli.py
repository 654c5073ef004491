"""The `hep2` command line: thin wrappers over the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import distributed as dd
from .errors import Hep2Error

DATASET_HELP = (
    "a dataset: snphep2:PATH, i3a:PATH, icpr2012:PATH, folder:PATH, manifest:FILE.csv, "
    "synthetic[:N] (N cells per class), or a bare PATH whose layout is recognised"
)


def cmd_data_summary(args) -> int:
    from .data import open_dataset
    from .data.summary import format_summary, summarize

    s = summarize(open_dataset(args.dataset, skip_bad=args.skip_bad), skip_bad=args.skip_bad)
    print(json.dumps(s, indent=2) if args.format == "json" else format_summary(s))
    return 0


def cmd_data_make_synthetic(args) -> int:
    from .data.synthetic import make_synthetic

    out = make_synthetic(args.out, per_class=args.per_class, specimens=args.specimens, seed=args.seed)
    print(
        f"wrote {args.per_class} cells per class from {args.specimens} specimens to {out} "
        f"(folder layout, specimens in {out / 'specimens.csv'}); read it as folder:{out}"
    )
    return 0


def _preset(args):
    from .presets import get_preset, parse_overrides

    overrides = parse_overrides(args.set)
    if getattr(args, "device", None):
        overrides["device"] = args.device
    return get_preset(args.preset, args.config, overrides)


def cmd_model_summary(args) -> int:
    from .models import layer_table

    cfg = _preset(args)
    t = layer_table(cfg.size, cfg.widths, cfg.latent)
    if args.format == "json":
        print(json.dumps(t, indent=2))
        return 0
    print(f"DCAE, preset {cfg.name}: input {cfg.size}x{cfg.size}, {t['features']} features (Conv 5)")
    print(f"{'layer':<10} {'output (C x H x W)':>20} {'parameters':>14}")
    for r in t["layers"]:
        print(f"{r['name']:<10} {' x '.join(map(str, r['output'])):>20} {r['params']:>14,}")
    print(f"{'total':<10} {'':>20} {t['total_params']:>14,}")
    return 0


def cmd_run(args) -> int:
    from .pipeline.runner import run

    run(
        args.dataset,
        protocol=args.protocol,
        cfg=_preset(args),
        out=args.out,
        subset=args.subset,
        resume=args.resume,
        skip_bad=args.skip_bad,
        verbose=not args.quiet,
        ae_on_test=args.ae_on_test,
        method=args.method,
    )
    return 0


def cmd_compare(args) -> int:
    from .pipeline.compare import compare
    from .pipeline.methods import METHODS

    methods = args.methods or [m for m, cls in METHODS.items() if cls.paper_accuracy is not None]
    result = compare(
        args.dataset,
        protocol=args.protocol,
        methods=methods,
        cfg=_preset(args),
        out=args.out,
        subset=args.subset,
        resume=args.resume,
        skip_bad=args.skip_bad,
        verbose=not args.quiet,
        ensemble=args.ensemble,
        neighbours=args.neighbours,
    )
    from .pipeline.compare import comparison_markdown

    if not dd.is_main():  # under torchrun: rank 0 reports
        return 0
    print(comparison_markdown(result))
    print(f"written: {args.out}/comparison.md, comparison.json, comparison.png")
    return 0


def cmd_demo(args) -> int:
    from .pipeline.runner import run
    from .presets import get_preset

    print(
        "hep2 demo: the whole method on the built-in synthetic HEp-2 set (5 patterns, 20 specimens), "
        "preset tiny, specimen-grouped 5-fold cross-validation"
    )
    run(
        f"synthetic:{args.per_class}",
        protocol="grouped",
        cfg=get_preset("tiny"),
        out=args.out,
        subset="all",
        resume=args.resume,
        verbose=True,
    )
    print(f"classify new images with: hep2 predict --model {args.out} IMAGE_OR_FOLDER...")
    return 0


def cmd_predict(args) -> int:
    from .pipeline.predict import Predictor, by_folder, expand_inputs, folder_summaries
    from .pipeline.runfolder import write_csv

    for opt, value, name in (("--out", args.out, "predictions.csv"), ("--summary", args.summary, "wells.csv")):
        if value and Path(value).is_dir():  # found before the classifying, not after it
            raise Hep2Error(f"{opt} {value} is a folder: give the CSV file to write, e.g. {Path(value) / name}")
    if args.out and args.summary and Path(args.out).resolve() == Path(args.summary).resolve():
        raise Hep2Error(f"--out and --summary name the same file {args.out}: give two files")
    pred = Predictor(args.model)
    not_images = [] if args.skip_bad else None
    paths = expand_inputs(args.inputs, not_images)
    for note in pred.mask_notes(paths) if dd.is_main() else ():
        print(f"hep2: warning: {note}", file=sys.stderr)
    if pred.neighbours is not None:
        if dd.world() > 1:
            raise Hep2Error(
                f"{args.model} smooths each cell over its nearest cells of the batch (--neighbours): "
                "classify the batch in one process, without torchrun"
            )
        rows, bad = pred.predict_files(paths, skip_bad=args.skip_bad)  # each folder's cells a batch of their own
        for folder, idx in by_folder([r[0] for r in rows]).items():
            k, n = pred.neighbours.k, len(idx)
            print(
                f"transductive model: {folder}: "
                + (
                    f"each of its {n} cells averaged with its {k} nearest of them"
                    if pred.neighbours.applies(n)
                    else f"{n} cell{'s' * (n != 1)}, not the {k + 1} a smoothing needs: the members' plain average"
                ),
                file=sys.stderr,
            )
        print(
            "transductive model: each folder's cells are a batch; keep each specimen's (each well's) cells in a "
            "folder of their own",
            file=sys.stderr,
        )
    else:  # under torchrun each process classifies every W-th file; rank 0 prints and writes, in input order
        rows, bad = pred.predict_files(paths[dd.rank() :: dd.world()], skip_bad=args.skip_bad)
    order = {p: i for i, p in enumerate(paths)}
    rows = sorted(dd.gather_lists(rows), key=lambda r: order[r[0]])
    bad = (not_images or []) + dd.gather_lists(bad)
    if not rows:
        raise Hep2Error(
            f"nothing to classify: none of the {len(bad)} files could be read (first: {bad[0]})"
            if bad
            else "nothing to classify: no cell image among the files given"
        )
    if not dd.is_main():
        return 0
    width = max([len(str(r[0])) for r in rows] + [4])
    print(f"{'file':<{width}}  {'pattern':<18} {'probability':>11}")
    for path, pattern, proba in rows:
        print(f"{str(path):<{width}}  {pattern:<18} {proba.max():>11.3f}")
    wells = folder_summaries(rows, pred.classes)
    if args.summary or any(s["n"] > 1 for _, s in wells):
        width = max(len(str(f)) for f, _ in wells + [("folder", None)])
        print(
            f"\nby folder (one well, one specimen): the dominant pattern, the share of its cells that show it\n"
            f"{'folder':<{width}}  {'cells':>5}  {'pattern':<18} {'agreement':>9}"
        )
        for folder, s in wells:
            print(f"{str(folder):<{width}}  {s['n']:>5}  {s['dominant']:<18} {s['agreement']:>9.3f}")
    for b in bad:
        print(f"skipped: {b}", file=sys.stderr)
    if args.out:
        write_csv(
            args.out,
            ["path", "predicted"] + [f"p_{c}" for c in pred.classes],
            [[str(p), c, *[f"{v:.5f}" for v in pr]] for p, c, pr in rows],
        )
        print(f"wrote {len(rows)} predictions to {args.out}" + (f" ({len(bad)} files skipped)" if bad else ""))
    if args.summary:
        write_csv(
            args.summary,
            ["folder", "cells", "pattern", "agreement"]
            + [f"n_{c}" for c in pred.classes]
            + [f"p_{c}" for c in pred.classes],
            [
                [
                    str(f),
                    s["n"],
                    s["dominant"],
                    f"{s['agreement']:.4f}",
                    *s["counts"].values(),
                    *[f"{v:.5f}" for v in s["mean_probability"].values()],
                ]
                for f, s in wells
            ],
        )
        print(f"wrote {len(wells)} folder summaries to {args.summary}")
    return 0


def cmd_ensemble(args) -> int:
    from .pipeline.ensemble import make_ensemble

    make_ensemble(args.runs, args.out, verbose=not args.quiet, neighbours=args.neighbours)
    if dd.is_main():
        print(f"classify new images with: hep2 predict --model {args.out} IMAGE_OR_FOLDER...")
    return 0


def cmd_export(args) -> int:
    from .pipeline.export import export

    info = export(args.model, args.format, args.out)
    print(
        f"wrote {info['model']} ({info['format']}: input (N, {', '.join(map(str, info['input'][1:4]))}) in [0, 1], "
        f"output probabilities of {', '.join(info['classes'])})"
    )
    print(
        f"checked against hep2's prediction: largest difference {info['max_abs_diff']:.1e} on "
        f"{info['checked_images']} made-up cells"
        + (
            "; hep2 extracts this model's features in bf16 (setting infer_amp) and the export computes in fp32, "
            "so the check used hep2's fp32 path: on real cells expect differences of a few 0.01 and rarely "
            "another call (see the model card)"
            if info["hep2_in_bf16"]
            else ""
        )
    )
    print(f"model card: {info['card']}")
    return 0


def cmd_serve(args) -> int:
    from .web import serve

    serve(args.model, host=args.host, port=args.port, workdir=args.workdir, runs_root=args.runs)
    return 0


def _add_preset_args(p) -> None:
    p.add_argument(
        "--preset",
        default="cpu",
        help="paper (Table I, 224x224), cpu (64x64, default), improved (the best autoencoder features, 64x64) or tiny",
    )
    p.add_argument("--config", help="a JSON or YAML file of settings that override the preset")
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="override one setting, e.g. --set ae_epochs=10 (repeatable)",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="where to train and predict (the preset's `device`; auto: a GPU when present)",
    )


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="hep2",
        description="HEp-2 cell staining-pattern classification with deep convolutional autoencoder features.",
    )
    p.add_argument("--version", action="version", version=f"hep2 {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="inspect datasets and make the built-in synthetic set")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    s = dsub.add_parser("summary", help="counts per split and class, image sizes, problems found")
    s.add_argument("dataset", help=DATASET_HELP)
    s.add_argument("--format", choices=["text", "json"], default="text")
    s.add_argument("--skip-bad", action="store_true", help="go on without unreadable images and list them")
    s.set_defaults(func=cmd_data_summary)
    m = dsub.add_parser("make-synthetic", help="write the built-in synthetic HEp-2 set in the folder layout")
    m.add_argument("out", help="a new folder to write")
    m.add_argument("--per-class", type=int, default=100, help="cells per class (default 100)")
    m.add_argument("--specimens", type=int, default=20, help="specimens in all, one pattern each (default 20)")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=cmd_data_make_synthetic)

    model = sub.add_parser("model", help="describe the networks")
    msub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    ms = msub.add_parser("summary", help="each DCAE layer's output shape and parameters (Table I)")
    _add_preset_args(ms)
    ms.add_argument("--format", choices=["text", "json"], default="text")
    ms.set_defaults(func=cmd_model_summary)

    r = sub.add_parser("run", help="train the DCAE and classifier, evaluate under a protocol, write a report")
    r.add_argument("dataset", help=DATASET_HELP)
    r.add_argument(
        "--protocol",
        choices=["official", "cv", "grouped", "blocked"],
        default="cv",
        help="official: SNPHEp-2 specimen-disjoint Split-50-K, or the dataset's own train/ -> test/; cv: "
        "cell-level stratified k-fold "
        "(optimistic); grouped: k-fold over specimens; blocked: k-fold over contiguous ID blocks "
        "of each class (data stored specimen by specimen, without specimen IDs: SNPHEp-2's train/)",
    )
    r.add_argument(
        "--subset",
        default="train",
        help="for cv/grouped/blocked: the subset to cross-validate "
        "(train, test or all; default train, or all where the dataset has no train split)",
    )
    _add_preset_args(r)
    r.add_argument("--out", required=True, help="the run folder to write")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    r.add_argument("--skip-bad", action="store_true", help="go on without unreadable images and list them")
    r.add_argument(
        "--ae-on-test",
        action="store_true",
        help="official protocol: also train the autoencoder (without labels) on the test images",
    )
    r.add_argument(
        "--method",
        default="dcae-mlp",
        help="dcae-mlp (the paper, default), lbp-svm, texture-svm, cnn5 (Table II's), resnet, bow (a bag "
        "of visual words) or shape-index (shape-index histograms)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress output")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("compare", help="several methods on identical splits, beside the paper's Table II")
    c.add_argument("dataset", help=DATASET_HELP)
    c.add_argument("--protocol", choices=["official", "cv", "grouped", "blocked"], default="cv")
    c.add_argument("--subset", default="train", help="for cv/grouped/blocked: the subset to cross-validate")
    c.add_argument(
        "--methods",
        nargs="+",
        help="methods to run (default: Table II's four: dcae-mlp, lbp-svm, texture-svm, cnn5; "
        "resnet, bow, shape-index and methods registered by you when named)",
    )
    _add_preset_args(c)
    c.add_argument("--out", required=True, help="the folder to write (one run folder per method inside)")
    c.add_argument(
        "--ensemble",
        action="store_true",
        help="also average the methods' probabilities (equal weights) "
        "into OUT/ensemble, a model `hep2 predict` loads (as `hep2 ensemble` does)",
    )
    c.add_argument(
        "--neighbours",
        type=int,
        default=0,
        metavar="K",
        help="with --ensemble: transductive smoothing "
        "of each test cell over its K nearest test cells (as `hep2 ensemble --neighbours K`)",
    )
    c.add_argument("--resume", action="store_true", help="reuse finished methods' runs and continue the others")
    c.add_argument("--skip-bad", action="store_true")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_compare)

    d = sub.add_parser("demo", help="the whole method on the built-in synthetic data (a few minutes)")
    d.add_argument("--out", default="runs/demo", help="the run folder (default runs/demo)")
    d.add_argument("--per-class", type=int, default=100, help="synthetic cells per class (default 100)")
    d.add_argument("--resume", action="store_true")
    d.set_defaults(func=cmd_demo)

    pr = sub.add_parser("predict", help="classify cell images with a trained run's model")
    pr.add_argument("--model", required=True, help="a run folder written by hep2 run")
    pr.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    pr.add_argument("--out", help="write a CSV of predictions and probabilities")
    pr.add_argument(
        "--summary",
        metavar="FILE.csv",
        help="write a CSV with a row per folder of cells (one well, one specimen): its dominant pattern, the "
        "share of its cells that show it, the cells each pattern got and the mean probabilities",
    )
    pr.add_argument("--skip-bad", action="store_true", help="go on without unreadable images and list them")
    pr.set_defaults(func=cmd_predict)

    en = sub.add_parser(
        "ensemble",
        help="one model from several finished runs on the same splits (their probabilities averaged, equal weights)",
    )
    en.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folders of `hep2 run` / `hep2 compare` (same data, protocol and splits)",
    )
    en.add_argument("--out", required=True, help="the run folder to write (figures, report, model/)")
    en.add_argument(
        "--neighbours",
        type=int,
        default=0,
        metavar="K",
        help="transductive: then average each test cell's probabilities with those of its K nearest "
        "cells of the same test split (in the members' features; K = 10 was chosen on SNPHEp-2's "
        "train/); the saved model does the same over each batch `hep2 predict` gets",
    )
    en.add_argument("--quiet", action="store_true")
    en.set_defaults(func=cmd_ensemble)

    ex = sub.add_parser("export", help="write a run's model as one ONNX or TorchScript graph, with a model card")
    ex.add_argument("--model", required=True, help="a run folder written by `hep2 run`")
    ex.add_argument(
        "--format",
        choices=["onnx", "torchscript"],
        help="default: what --out's name says (.onnx: ONNX; .pt, .pth, .ts: TorchScript)",
    )
    ex.add_argument("--out", required=True, help="the file to write (its model card goes beside it: FILE.md)")
    ex.set_defaults(func=cmd_export)

    sv = sub.add_parser("serve", help="a local web page and JSON API: upload cells, see patterns, read run reports")
    sv.add_argument("--model", required=True, help="a run folder written by `hep2 run`")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument(
        "--workdir",
        default="hep2-serve",
        help="the only folder the server writes to (uploads, CSVs); default ./hep2-serve",
    )
    sv.add_argument("--runs", help="the folder of run folders to show (default: the model's parent folder)")
    sv.set_defaults(func=cmd_serve)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ok = False
    again = "rerun with --resume to go on" if getattr(args, "resume", None) is not None else "run it again"
    try:
        dd.init_from_env()  # several processes when started by torchrun
        code = args.func(args) or 0
        ok = code == 0
        return code
    except Hep2Error as e:
        print(f"hep2: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hep2: interrupted (the files written so far are kept whole; {again})", file=sys.stderr)
        return 130
    except OSError as e:  # a full disk, a folder without write permission: files are written whole or not at all
        where = f"{e.filename}: " if e.filename else ""
        kept = "the files written before it, checkpoints included, are" if "--resume" in again else "no file is left"
        print(
            f"hep2: error: {where}{e.strerror or e} ({kept} half-written: hep2 writes each file under a temporary "
            f"name first; free space or fix the permission, then {again})",
            file=sys.stderr,
        )
        return 2
    finally:
        dd.shutdown(ok)


if __name__ == "__main__":
    raise SystemExit(main())
