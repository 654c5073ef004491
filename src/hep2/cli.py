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
    "synthetic[:N] (N cells per class), or a bare PATH whose layout is recognised; several are read as one, "
    "each cell keeping its source"
)


def _datasets(names: list[str]):
    """One dataset argument as a string, several as a list (`hep2.data.open_dataset` takes both)."""
    return names[0] if len(names) == 1 else names


def cmd_data_summary(args) -> int:
    from .data import open_dataset
    from .data.summary import format_summary, summarize

    s = summarize(open_dataset(_datasets(args.dataset), skip_bad=args.skip_bad), skip_bad=args.skip_bad)
    print(json.dumps(s, indent=2) if args.format == "json" else format_summary(s))
    return 0


def cmd_data_make_fields(args) -> int:
    from .data.synthetic import make_synthetic_fields

    out = make_synthetic_fields(args.out, per_pattern=args.per_pattern, seed=args.seed)
    print(f"wrote synthetic fields, their masks (NAME_mask.png) and fields.csv to {out}")
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
        _datasets(args.dataset),
        protocol=args.protocol,
        cfg=_preset(args),
        out=args.out,
        subset=args.subset,
        resume=args.resume,
        skip_bad=args.skip_bad,
        verbose=not args.quiet,
        ae_on_test=args.ae_on_test,
        method=args.method,
        target=_datasets(args.target) if args.target else None,
    )
    return 0


def cmd_compare(args) -> int:
    from .pipeline.compare import compare
    from .pipeline.methods import METHODS

    methods = args.methods or [m for m, cls in METHODS.items() if cls.paper_accuracy is not None]
    result = compare(
        _datasets(args.dataset),
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
    from .pipeline.demo import demo, demo_lines

    print(
        "hep2 demo: the paper's method beside the recommended method on the built-in synthetic HEp-2 set "
        f"(synthetic:{args.per_class}: 5 patterns, 20 specimens), preset tiny, specimen-grouped 5-fold cross-validation"
    )
    result = demo(args.out, per_class=args.per_class, resume=args.resume, verbose=not args.quiet)
    if dd.is_main():
        print("\n".join(demo_lines(result)))
        print(f"report: {Path(args.out) / 'comparison.md'} ({result['seconds']:.0f} s)")
        print("whole fields (synthetic), found and called by the recommended model:")
        for c in result["fields"]:
            share = f", {c['share']:.0%} of {c['cells']} cells" if c["share"] is not None else ""
            print(f"  {c['field']}: {c['call']} ({c['icap']}){share}, signal index {c['signal_index']:.2f}")
        print(f"  overlays: {Path(args.out) / 'fields' / 'overlays'}")
        print(f"classify new images with: hep2 predict --model {Path(args.out) / 'recommended'} IMAGE_OR_FOLDER...")
    return 0


def cmd_predict(args) -> int:
    from .pipeline.fields import is_field
    from .pipeline.predict import Predictor, expand_inputs, folder_summaries

    _check_prediction_outputs(args.out, args.summary)
    pred = Predictor(args.model)
    not_images = [] if args.skip_bad else None
    paths = expand_inputs(args.inputs, not_images)
    whole = [args.fields or is_field(p) for p in paths]  # each header read once
    fields = [p for p, w in zip(paths, whole) if w]
    if fields:
        if len(fields) < len(paths):
            crops = [p for p, w in zip(paths, whole) if not w]
            raise Hep2Error(
                f"the images given mix {len(fields)} whole fields (first: {fields[0]}) and {len(crops)} cut-out "
                f"cells (first: {crops[0]}): classify them in two calls (a field is an image of at least "
                "400 px a side; --fields reads every image as one)"
            )
        return _predict_fields(pred, fields, args, not_images or [])
    for note in ([pred.naming_note] if pred.naming_note else []) + pred.mask_notes(paths) if dd.is_main() else ():
        print(f"hep2: warning: {note}", file=sys.stderr)
    rows, bad = _classify(pred, paths, args.model, args.skip_bad)
    bad = (not_images or []) + bad
    if not rows:
        raise Hep2Error(
            f"nothing to classify: none of the {len(bad)} files could be read (first: {bad[0]})"
            if bad
            else "nothing to classify: no cell image among the files given"
        )
    if not dd.is_main():
        return 0
    wells = folder_summaries(rows, pred.classes)
    _print_predictions(rows, wells, show_wells=bool(args.summary) or any(s["n"] > 1 for _, s in wells))
    for b in bad:
        print(f"skipped: {b}", file=sys.stderr)
    if args.out:
        _write_predictions(args.out, rows, pred.classes)
        print(f"wrote {len(rows)} predictions to {args.out}" + (f" ({len(bad)} files skipped)" if bad else ""))
    if args.summary:
        _write_wells(args.summary, wells, pred.classes)
        print(f"wrote {len(wells)} folder summaries to {args.summary}")
    return 0


def _predict_fields(pred, paths, args, bad) -> int:
    from .pipeline.fields import call_fields

    th = {"negative_below": args.negative_below}
    cell_rows, field_calls, well_calls, fields, skipped = call_fields(
        pred, paths, channel=args.channel, skip_bad=args.skip_bad, progress=sys.stderr.isatty(), **th
    )
    bad = bad + skipped
    if not field_calls:
        raise Hep2Error(f"no field could be read (first: {bad[0]})" if bad else "no field given")
    if not dd.is_main():
        return 0
    print(f"{'field':28} {'call':34} {'ICAP':10} {'share':>6} {'cells':>6} {'signal':>7}  mixed, or why")
    for c in field_calls:
        share = f"{c['share']:.0%}" if c.get("share") is not None else "-"
        print(
            f"{c['field'][:28]:28} {c['call'][:34]:34} {c['icap']:10} {share:>6} {c['cells']:>6} "
            f"{c['signal_index']:>7.2f}  {c.get('mixed') or c.get('note', '')}"
        )
    if len(well_calls) > 1 or args.summary:
        print("\nwells:")
        for w in well_calls:
            share = f"{w['share']:.0%}" if w.get("share") is not None else "-"
            print(f"{w['well'][-40:]:40} {w['call'][:34]:34} {w['icap']:10} {share:>6} {w['cells']:>6}")
    for b in bad:
        print(f"skipped: {b}", file=sys.stderr)
    from .pipeline.fields import CELL_COLUMNS, FIELD_CALL_COLUMNS, write_overlays, write_rows

    if args.out:
        columns = [c for c in CELL_COLUMNS if c != "crop"] + ["pattern", "icap"] + [f"p_{k}" for k in pred.classes]
        write_rows(Path(args.out), cell_rows, columns)
        fields_csv = Path(args.out).with_name(Path(args.out).stem + "_fields.csv")
        write_rows(fields_csv, field_calls, FIELD_CALL_COLUMNS)
        print(f"wrote {len(cell_rows)} cells to {args.out} and {len(field_calls)} field calls to {fields_csv}")
    if args.summary:
        write_rows(Path(args.summary), well_calls, ["well", "fields"] + FIELD_CALL_COLUMNS[3:])
        print(f"wrote {len(well_calls)} well calls to {args.summary}")
    if args.overlays:
        write_overlays(args.overlays, fields, list(pred.classes))
        print(f"wrote {len(fields)} overlays (outlines coloured by pattern) to {args.overlays}")
    return 0


def cmd_segment(args) -> int:
    from .pipeline.fields import segment_fields

    summary = segment_fields(
        args.inputs,
        args.out,
        label=args.label,
        labels_csv=args.labels,
        channel=args.channel,
        skip_bad=args.skip_bad,
        progress=sys.stderr.isatty(),
        truth=args.truth,
    )
    print(f"{'field':28} {'objects':>8} {'cells':>6} {'flagged':>8} {'nucleus px':>11} {'signal':>7} {'s':>6}")
    for f in summary["fields"]:
        print(
            f"{f['field'][:28]:28} {f['objects']:>8} {f['cells']:>6} {f['flagged']:>8} "
            f"{f['nucleus_diameter_px']:>11} {f['signal_index']:>7.2f} {f['seconds']:>6.2f}"
            + (f"  {f['notes']}" if f["notes"] else "")
        )
    for b in summary["skipped"]:
        print(f"skipped: {b}", file=sys.stderr)
    if "negative_below" in summary:
        t = summary["negative_below"]
        print(
            f"negative below: {t['negative_below']} calls {t['negatives'] + t['positives'] - t['wrong']} of the "
            f"{t['negatives'] + t['positives']} labelled fields right (negatives up to {t['highest_negative']:.2f}, "
            f"positives from {t['lowest_positive']:.2f}): give it to `hep2 predict --negative-below`"
        )
    if args.truth:
        m = summary["segmentation"]
        p = m["pooled"]
        print(
            f"against the masks beside the fields ({len(m['fields'])} fields): precision {p['precision']:.3f}, recall "
            f"{p['recall']:.3f}, F1 {p['f1']:.3f} at IoU 0.5; mean IoU {p['mean_iou']:.3f}; {p['splits']} splits, "
            f"{p['merges']} merges (segmentation.json)"
        )
    print(
        f"wrote {summary['cells']} cells of {len(summary['fields'])} fields to {Path(args.out) / 'cells'} "
        f"(train on them with `hep2 run folder:{Path(args.out) / 'cells'}`), cells.csv, fields.csv and overlays/"
    )
    return 0


def _check_prediction_outputs(out, summary) -> None:
    """Refuse, before any classifying, CSV paths that are folders or the same file."""
    for opt, value, name in (("--out", out, "predictions.csv"), ("--summary", summary, "wells.csv")):
        if value and Path(value).is_dir():
            raise Hep2Error(f"{opt} {value} is a folder: give the CSV file to write, e.g. {Path(value) / name}")
    if out and summary and Path(out).resolve() == Path(summary).resolve():
        raise Hep2Error(f"--out and --summary name the same file {out}: give two files")


def _classify(pred, paths: list, model, skip_bad: bool) -> tuple[list, list]:
    """(path, pattern, probabilities) rows in input order and the files skipped, from every process. A
    transductive model smooths each folder's cells as a batch, in one process; otherwise each process classifies
    every W-th file under torchrun."""
    from .pipeline.predict import ADAPT_MIN_CELLS, by_folder

    if not pred.transductive:
        rows, bad = pred.predict_files(paths[dd.rank() :: dd.world()], skip_bad=skip_bad)
    else:
        if dd.world() > 1:
            raise Hep2Error(
                f"{model} reads each folder's cells as a batch (--neighbours, or adapt=standardize): classify the "
                "batch in one process, without torchrun"
            )
        rows, bad = pred.predict_files(paths, skip_bad=skip_bad)
        for folder, idx in by_folder([r[0] for r in rows]).items():
            n = len(idx)
            if pred.neighbours is not None:
                k = pred.neighbours.k
                what = (
                    f"each of its {n} cells averaged with its {k} nearest of them"
                    if pred.neighbours.applies(n)
                    else f"{n} cell{'s' * (n != 1)}, not the {k + 1} a smoothing needs: the members' plain average"
                )
                print(f"transductive model: {folder}: {what}", file=sys.stderr)
            if pred.adapts:
                what = (
                    f"its {n} cells' features standardised by their own statistics"
                    if n >= ADAPT_MIN_CELLS
                    else f"{n} cells, under the {ADAPT_MIN_CELLS} that set their own statistics: the training source's"
                )
                print(f"adapting model: {folder}: {what}", file=sys.stderr)
        print(
            "each folder's cells are a batch; keep each specimen's (each well's) cells in a folder of their own",
            file=sys.stderr,
        )
    order = {p: i for i, p in enumerate(paths)}
    return sorted(dd.gather_lists(rows), key=lambda r: order[r[0]]), dd.gather_lists(bad)


def _print_predictions(rows: list, wells: list, *, show_wells: bool) -> None:
    width = max([len(str(r[0])) for r in rows] + [4])
    print(f"{'file':<{width}}  {'pattern':<18} {'probability':>11}")
    for path, pattern, proba in rows:
        print(f"{str(path):<{width}}  {pattern:<18} {proba.max():>11.3f}")
    if not show_wells:
        return
    width = max(len(str(f)) for f, _ in wells + [("folder", None)])
    print(
        f"\nby folder (one well, one specimen): the dominant pattern, the share of its cells that show it\n"
        f"{'folder':<{width}}  {'cells':>5}  {'pattern':<18} {'agreement':>9}"
    )
    for folder, s in wells:
        print(f"{str(folder):<{width}}  {s['n']:>5}  {s['dominant']:<18} {s['agreement']:>9.3f}")


def _write_predictions(path, rows: list, classes: list[str]) -> None:
    from .pipeline.runfolder import write_csv

    header = ["path", "predicted"] + [f"p_{c}" for c in classes]
    write_csv(path, header, [[str(p), c, *[f"{v:.5f}" for v in pr]] for p, c, pr in rows])


def _write_wells(path, wells: list, classes: list[str]) -> None:
    from .pipeline.runfolder import write_csv

    header = ["folder", "cells", "pattern", "agreement"] + [f"n_{c}" for c in classes] + [f"p_{c}" for c in classes]
    body = [
        [str(f), s["n"], s["dominant"], f"{s['agreement']:.4f}", *s["counts"].values()]
        + [f"{v:.5f}" for v in s["mean_probability"].values()]
        for f, s in wells
    ]
    write_csv(path, header, body)


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


SKIP_BAD_HELP = "go on without unreadable images and list them"
PROTOCOL_HELP = (
    "official: SNPHEp-2 specimen-disjoint Split-50-K, or the dataset's own train/ -> test/; cv: cell-level "
    "stratified k-fold (optimistic); grouped: k-fold over specimens; blocked: k-fold over contiguous ID blocks of "
    "each class (data stored specimen by specimen, without specimen IDs: SNPHEp-2's train/); transfer: trained on "
    "the datasets given, tested once on --target (another lab's cells) at the depth of the pattern tree both share"
)
SUBSET_HELP = (
    "for cv/grouped/blocked: the subset to cross-validate (train, test or all; default train, or all where the "
    "dataset has no train split)"
)


def _add_preset_args(p) -> None:
    from .presets import PRESETS

    p.add_argument(
        "--preset",
        default="cpu",
        metavar="{" + ",".join(PRESETS) + "}",
        help="paper (Table I, 224x224), cpu (64x64, the default), improved (the best autoencoder features), words "
        "(improved's autoencoders read as a bag of words: with --method bow, the recommended method) or tiny (tests "
        "and the demo); `hep2 model summary --preset NAME` describes one",
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


def _add_evaluation_args(p, *, protocol_help: str | None = PROTOCOL_HELP) -> None:
    """The arguments `hep2 run` and `hep2 compare` share: the data, protocol, subset, settings and output."""
    from .pipeline.evaluation import PROTOCOLS

    p.add_argument("dataset", nargs="+", help=DATASET_HELP)
    p.add_argument("--protocol", choices=PROTOCOLS, default="cv", help=protocol_help)
    p.add_argument("--subset", default="train", help=SUBSET_HELP)
    _add_preset_args(p)
    p.add_argument("--skip-bad", action="store_true", help=SKIP_BAD_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _method_help() -> str:
    """Every registered method and what it is: the registry is what --method and --methods accept (an unknown
    name is refused by it, with the names it knows)."""
    from .pipeline.methods import METHODS

    return "; ".join(f"{name}: {cls.description}" for name, cls in METHODS.items())


def _add_data_parsers(sub) -> None:
    data = sub.add_parser("data", help="inspect datasets and make the built-in synthetic set")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    summary = actions.add_parser("summary", help="counts per split and class, image sizes, problems found")
    summary.add_argument("dataset", nargs="+", help=DATASET_HELP)
    summary.add_argument("--format", choices=["text", "json"], default="text")
    summary.add_argument("--skip-bad", action="store_true", help=SKIP_BAD_HELP)
    summary.set_defaults(func=cmd_data_summary)
    synthetic = actions.add_parser("make-synthetic", help="write the built-in synthetic HEp-2 set in the folder layout")
    synthetic.add_argument("out", help="a new folder to write")
    synthetic.add_argument("--per-class", type=int, default=100, help="cells per class (default 100)")
    synthetic.add_argument("--specimens", type=int, default=20, help="specimens in all, one pattern each (default 20)")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.set_defaults(func=cmd_data_make_synthetic)
    fields = actions.add_parser(
        "make-fields", help="write synthetic whole fields (one pattern each) with their true masks, for tests and demos"
    )
    fields.add_argument("out", help="a new folder to write")
    fields.add_argument("--per-pattern", type=int, default=2, help="fields per pattern (default 2)")
    fields.add_argument("--seed", type=int, default=0)
    fields.set_defaults(func=cmd_data_make_fields)


def _add_model_parsers(sub) -> None:
    model = sub.add_parser("model", help="describe the networks")
    actions = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    summary = actions.add_parser("summary", help="each DCAE layer's output shape and parameters (Table I)")
    _add_preset_args(summary)
    summary.add_argument("--format", choices=["text", "json"], default="text")
    summary.set_defaults(func=cmd_model_summary)


def _add_run_parser(sub) -> None:
    from .pipeline.methods import METHODS

    run = sub.add_parser("run", help="train the DCAE and classifier, evaluate under a protocol, write a report")
    _add_evaluation_args(run)
    run.add_argument("--out", required=True, help="the run folder to write")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    run.add_argument(
        "--ae-on-test",
        action="store_true",
        help="official or transfer protocol: also fit the unsupervised stage (the autoencoder, bow's codebook; "
        "without labels) on the test images: under transfer, the target lab's unlabelled cells",
    )
    run.add_argument(
        "--target",
        nargs="+",
        metavar="DATASET",
        help="--protocol transfer: the dataset to test on (another lab's cells), named as the datasets are",
    )
    run.add_argument(
        "--method",
        default="dcae-mlp",
        metavar="{" + ",".join(METHODS) + "}",
        help=f"default dcae-mlp. {_method_help()}",
    )
    run.set_defaults(func=cmd_run)


def _add_compare_parser(sub) -> None:
    from .pipeline.methods import METHODS

    compare = sub.add_parser("compare", help="several methods on identical splits, beside the paper's Table II")
    _add_evaluation_args(compare, protocol_help=None)
    table2 = [m for m, cls in METHODS.items() if cls.paper_accuracy is not None]
    compare.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help=f"methods to run (default: Table II's: {', '.join(table2)}). {_method_help()}",
    )
    compare.add_argument("--out", required=True, help="the folder to write (one run folder per method inside)")
    compare.add_argument(
        "--ensemble",
        action="store_true",
        help="also average the methods' probabilities (equal weights) into OUT/ensemble, a model `hep2 predict` "
        "loads (as `hep2 ensemble` does)",
    )
    compare.add_argument(
        "--neighbours",
        type=int,
        default=0,
        metavar="K",
        help="with --ensemble: transductive smoothing of each test cell over its K nearest test cells (as "
        "`hep2 ensemble --neighbours K`)",
    )
    compare.add_argument("--resume", action="store_true", help="reuse finished methods' runs and continue the others")
    compare.set_defaults(func=cmd_compare)


def _add_demo_parser(sub) -> None:
    demo = sub.add_parser(
        "demo", help="the paper's method beside the recommended method on the built-in synthetic data (2 minutes)"
    )
    demo.add_argument("--out", default="runs/demo", help="the folder to write (default runs/demo)")
    demo.add_argument("--per-class", type=int, default=60, help="synthetic cells per class (default 60)")
    demo.add_argument("--resume", action="store_true", help="reuse the finished runs in --out")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.set_defaults(func=cmd_demo)


def _add_predict_parser(sub) -> None:
    predict = sub.add_parser("predict", help="classify cell images with a trained run's model")
    predict.add_argument("--model", required=True, help="a run folder written by hep2 run")
    predict.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    predict.add_argument("--out", help="write a CSV of predictions and probabilities")
    predict.add_argument(
        "--summary",
        metavar="FILE.csv",
        help="write a CSV with a row per folder of cells (one well, one specimen): its dominant pattern, the share "
        "of its cells that show it, the cells each pattern got and the mean probabilities",
    )
    predict.add_argument("--skip-bad", action="store_true", help=SKIP_BAD_HELP)
    fields = predict.add_argument_group(
        "whole fields",
        "an image of at least 400 px a side is a field: its cells are found (as `hep2 segment` finds them), "
        "classified, and each field and well (folder of fields) called; --out then gets a row per cell and "
        "OUT_fields.csv a row per field, --summary a row per well",
    )
    fields.add_argument("--fields", action="store_true", help="read every image as a whole field, whatever its size")
    _add_channel_arg(fields)
    fields.add_argument(
        "--negative-below",
        type=float,
        default=1.0,
        metavar="X",
        help="a field or well whose signal index (the cells' median grey level above the background, in background "
        "units) is below X is negative (default 1.0: cells less than twice as bright as the background)",
    )
    fields.add_argument(
        "--overlays", metavar="DIR", help="write each field with its cells outlined, coloured by pattern"
    )
    predict.set_defaults(func=cmd_predict)


def _add_channel_arg(p) -> None:
    p.add_argument(
        "--channel",
        choices=["auto", "mean", "red", "green", "blue"],
        default="auto",
        help="a colour field's grey: auto takes the channel holding most of the signal (FITC: green)",
    )


def _add_segment_parser(sub) -> None:
    seg = sub.add_parser(
        "segment",
        help="cut the cells of whole fields (microscope images of a well) into the folder layout, with masks",
    )
    seg.add_argument("inputs", nargs="+", metavar="FIELD_OR_FOLDER")
    seg.add_argument(
        "--out", required=True, help="a new folder: class folders of crops and masks, cells.csv, overlays/"
    )
    seg.add_argument("--label", metavar="PATTERN", help="every field's pattern: its cells go to a class folder")
    seg.add_argument(
        "--labels",
        metavar="FILE.csv",
        help="a CSV field,pattern: each field's cells to its class folder; with some fields 'negative' and some a "
        "pattern, also the --negative-below that calls them best (for hep2 predict on this microscope)",
    )
    _add_channel_arg(seg)
    seg.add_argument(
        "--truth",
        action="store_true",
        help="measure the segmentation against each field's masks beside it (NAME_mask.png: a label image, "
        "colour labels or a binary mask; NAME_Edges.png: drawn outlines): object precision, recall, F1 at IoU 0.5, "
        "mean IoU, splits and merges",
    )
    seg.add_argument("--skip-bad", action="store_true", help=SKIP_BAD_HELP)
    seg.set_defaults(func=cmd_segment)


def _add_ensemble_parser(sub) -> None:
    ensemble = sub.add_parser(
        "ensemble", help="one model from several finished runs on the same splits (their probabilities averaged)"
    )
    ensemble.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folders of `hep2 run` / `hep2 compare` (same data, protocol and splits)",
    )
    ensemble.add_argument("--out", required=True, help="the run folder to write (figures, report, model/)")
    ensemble.add_argument(
        "--neighbours",
        type=int,
        default=0,
        metavar="K",
        help="transductive: then average each test cell's probabilities with those of its K nearest cells of the "
        "same test split (in the members' features; K = 10 was chosen on SNPHEp-2's train/); the saved model does "
        "the same over each batch `hep2 predict` gets",
    )
    ensemble.add_argument("--quiet", action="store_true", help="no progress output")
    ensemble.set_defaults(func=cmd_ensemble)


def _add_export_parser(sub) -> None:
    export = sub.add_parser("export", help="write a run's model as one ONNX or TorchScript graph, with a model card")
    export.add_argument("--model", required=True, help="a run folder written by `hep2 run`")
    export.add_argument(
        "--format",
        choices=["onnx", "torchscript"],
        help="default: what --out's name says (.onnx: ONNX; .pt, .pth, .ts: TorchScript)",
    )
    export.add_argument("--out", required=True, help="the file to write (its model card goes beside it: FILE.md)")
    export.set_defaults(func=cmd_export)


def _add_serve_parser(sub) -> None:
    serve = sub.add_parser("serve", help="a local web page and JSON API: upload cells, see patterns, read run reports")
    serve.add_argument("--model", required=True, help="a run folder written by `hep2 run`")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workdir",
        default="hep2-serve",
        help="the only folder the server writes to (uploads, CSVs); default ./hep2-serve",
    )
    serve.add_argument("--runs", help="the folder of run folders to show (default: the model's parent folder)")
    serve.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="hep2",
        description="HEp-2 cell staining-pattern classification with deep convolutional autoencoder features.",
    )
    p.add_argument("--version", action="version", version=f"hep2 {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_data_parsers,
        _add_model_parsers,
        _add_run_parser,
        _add_compare_parser,
        _add_demo_parser,
        _add_predict_parser,
        _add_segment_parser,
        _add_ensemble_parser,
        _add_export_parser,
        _add_serve_parser,
    ):
        add(sub)
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
