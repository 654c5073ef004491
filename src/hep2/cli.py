"""The `hep2` command line: thin wrappers over the library."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import Hep2Error

DATASET_HELP = ("a dataset: snphep2:PATH, i3a:PATH, icpr2012:PATH, folder:PATH, manifest:FILE.csv, "
                "synthetic[:N] (N cells per class), or a bare PATH whose layout is recognised")


def cmd_data_summary(args) -> int:
    from .data import open_dataset
    from .data.summary import format_summary, summarize

    s = summarize(open_dataset(args.dataset, skip_bad=args.skip_bad), skip_bad=args.skip_bad)
    print(json.dumps(s, indent=2) if args.format == "json" else format_summary(s))
    return 0


def cmd_data_make_synthetic(args) -> int:
    from .data.synthetic import make_synthetic

    out = make_synthetic(args.out, per_class=args.per_class, specimens=args.specimens, seed=args.seed)
    print(f"wrote {args.per_class} cells per class from {args.specimens} specimens to {out} "
          f"(folder layout, specimens in {out / 'specimens.csv'}); read it as folder:{out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="hep2", description="HEp-2 cell staining-pattern classification "
                                "with deep convolutional autoencoder features.")
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
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except Hep2Error as e:
        print(f"hep2: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hep2: interrupted (checkpoints written so far are kept; rerun with --resume to go on)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
