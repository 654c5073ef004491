"""Readers for the dataset layouts of the field, all returning a CellSet.

A dataset is named ``kind:PATH`` (``snphep2:``, ``i3a:``, ``icpr2012:``, ``folder:``, ``manifest:``)
or ``synthetic[:N]``; a bare path is recognised by its layout.
"""

from __future__ import annotations

import csv
import functools
import re
import unicodedata
from pathlib import Path

import numpy as np

from ..errors import Hep2Error
from .cellset import Cell, CellSet, normalise_class, normalise_intensity, order_classes, snake_case
from .images import IMAGE_EXTENSIONS, IMAGE_FORMATS, cache_dir

# The class of labels 1..5. Labels 1 and 3 follow the dataset's README in reverse: its README (and hep2 before
# 0.3.0) names label 1 homogeneous and label 3 fine speckled, but label 1's cells are granular with dark nucleoli
# and label 3's smooth, and models trained on I3A (which names homogeneous and speckled) and on another lab's
# cells read them that way round (docs/transfer.md, "SNPHEp-2's labels 1 and 3").
SNPHEP2_CLASSES = ["fine_speckled", "coarse_speckled", "homogeneous", "nucleolar", "centromere"]
# what a model trained on SNPHEp-2 before this naming called labels 1 and 3 (`hep2.pipeline.predict` says so)
SNPHEP2_OLD_NAMES = {
    "homogeneous": "label 1 (fine speckled since hep2 0.3.0)",
    "fine_speckled": "label 3 (homogeneous since hep2 0.3.0)",
}
SNPHEP2_NAMING = "hep2 0.3.0: label 1 fine_speckled, label 3 homogeneous"
# First ID of each class (labels 1..5) in train/ and test/, from the dataset's README.
SNPHEP2_RANGES = {"train": (1, 178, 350, 550, 750, 906), "test": (1, 197, 389, 589, 789, 980)}
KINDS = ("snphep2", "i3a", "icpr2012", "folder", "manifest", "synthetic")


def open_dataset(spec: str | list[str], *, skip_bad: bool = False) -> CellSet:
    """Read a dataset named ``kind:PATH``, ``synthetic[:N]`` or a bare path (layout detected), or several
    datasets as one set (`combine`).

    Parameters
    ----------
    spec : str or list of str
        ``snphep2:PATH``, ``i3a:PATH``, ``icpr2012:PATH``, ``folder:PATH``, ``manifest:FILE.csv``,
        ``synthetic[:N]`` (N cells per class, 20 specimens) or a bare PATH whose layout is recognised; a list
        of them reads each and joins them, every cell keeping its source.
    skip_bad : bool
        Leave out unreadable images and list them in ``cells.skipped`` instead of stopping at the first.

    Returns
    -------
    CellSet
        The cells: paths, labels, specimens, intensities and the dataset's own splits.

    Raises
    ------
    Hep2Error
        The path does not exist, the layout is not recognised, or a file is bad (naming it).

    Examples
    --------
    >>> from hep2.data import open_dataset
    >>> cells = open_dataset("synthetic:4")
    >>> len(cells), cells.classes
    (20, ['homogeneous', 'coarse_speckled', 'fine_speckled', 'nucleolar', 'centromere'])
    >>> both = open_dataset(["synthetic:4", "synthetic:2"])
    >>> len(both), both.sources, len(both.subsets["source:synthetic-2"])
    (30, ['synthetic:4', 'synthetic:2'], 10)
    """
    if not isinstance(spec, (str, Path)):
        specs = [str(s) for s in spec]
        if not specs:
            raise Hep2Error("no dataset given: name at least one, e.g. snphep2:../shared/data/snphep2")
        if len(specs) == 1:
            return open_dataset(specs[0], skip_bad=skip_bad)
        if len(set(specs)) < len(specs):
            raise Hep2Error(f"dataset {next(s for s in specs if specs.count(s) > 1)!r} is given twice: name it once")
        return combine([open_dataset(s, skip_bad=skip_bad) for s in specs])
    spec = str(spec)
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        if rest and not rest.isdigit():
            raise Hep2Error(f"{spec!r}: write synthetic or synthetic:N, N the number of cells per class")
        return read_synthetic(int(rest) if rest else 100, spec=spec)
    if kind not in KINDS or not rest:
        kind, rest = _detect(spec), spec
    path = Path(rest).expanduser()
    if not path.exists():
        raise Hep2Error(
            f"dataset path {path} does not exist: check the spelling, or give kind:PATH "
            f"with kind one of {', '.join(KINDS)}"
        )
    reader = {
        "snphep2": read_snphep2,
        "i3a": read_i3a,
        "icpr2012": read_icpr2012,
        "folder": read_folder,
        "manifest": read_manifest,
    }[kind]
    cells = reader(path, skip_bad=skip_bad)
    cells.name = f"{kind}:{path}"
    classes_of = {}
    for c in cells.cells:
        if c.specimen is not None:
            classes_of.setdefault(c.specimen, set()).add(c.label)
    if cells.specimens is not None and {"train", "test"} <= set(cells.subsets):
        both = sorted(set(cells.specimens[cells.subsets["train"]]) & set(cells.specimens[cells.subsets["test"]]))
        if both:
            cells.problems.append(
                f"{len(both)} specimen{'s' * (len(both) > 1)} have cells in both train/ and test/ "
                f"(first: {both[0]}): figures on test/ are not specimen-disjoint; keep each "
                "specimen on one side"
            )
    mixed = {s: sorted(v) for s, v in classes_of.items() if len(v) > 1}
    if mixed:
        s0 = next(iter(mixed))
        cells.problems.append(
            f"{len(mixed)} specimen IDs hold cells of several classes (first: {s0!r}: {', '.join(mixed[s0])}): "
            "if the IDs restart in each class (well 1, 2, ...) they merge different specimens, which --protocol "
            "grouped and the specimen-level figures (called by the most frequent class) treat as one; give IDs "
            "unique across the dataset (e.g. plate3-B2)"
        )
    if len(cells) == 0:
        raise Hep2Error(
            f"dataset {cells.name} holds no cell images: check the path and that it has the "
            f"{kind} layout (see `hep2 data --help`)"
        )
    return cells


def combine(sets: list[CellSet]) -> CellSet:
    """Several datasets as one: each cell keeps its source (``Cell.source``); IDs and specimens are prefixed
    by the source's short name (``i3a:00001``), so that they stay unique. Subsets: ``train`` (each source's
    train split, or all of a source without one), ``test`` (each source's test split), ``source:NAME`` (a
    source's cells) and each source's own Split-K pairs (``snphep2:split-50-1/train`` adds the other sources'
    training cells)."""
    tags, cells, subsets, skipped, problems, start = [], [], {}, [], [], 0
    for s in sets:
        tag = s.name.partition(":")[0] or "data"
        tag = tag if tag not in tags else f"{tag}-{sum(t.partition('-')[0] == tag for t in tags) + 1}"
        tags.append(tag)
        for c in s.cells:
            cells.append(
                Cell(
                    f"{tag}:{c.id}",
                    c.path,
                    c.label,
                    None if c.specimen is None else f"{tag}:{c.specimen}",
                    c.intensity,
                    c.split,
                    c.mask,
                    s.name,
                )
            )
        idx = lambda key: start + np.asarray(s.subsets[key], dtype=np.int64)  # noqa: E731
        subsets[f"source:{tag}"] = start + np.arange(len(s))
        subsets.setdefault("train", []).append(idx("train") if "train" in s.subsets else start + np.arange(len(s)))
        if "test" in s.subsets:
            subsets.setdefault("test", []).append(idx("test"))
        for k in s.official_splits():
            subsets[f"{tag}:{k}/train"], subsets[f"{tag}:{k}/test"] = idx(f"{k}/train"), idx(f"{k}/test")
        skipped += s.skipped
        problems += [f"{tag}: {p}" for p in s.problems]
        start += len(s)
    subsets = {k: np.concatenate(v) if isinstance(v, list) else v for k, v in subsets.items()}
    for k in [k for k in subsets if k.endswith("/train") and ":" in k]:  # the other sources' training cells too
        tag = k.partition(":")[0]
        others = [subsets["train"][np.isin(subsets["train"], subsets[f"source:{t}"])] for t in tags if t != tag]
        subsets[k] = np.concatenate([subsets[k], *others])
    subsets["all"] = np.arange(len(cells))
    return CellSet(" + ".join(s.name for s in sets), cells, [], subsets, skipped, problems)


def _detect(spec: str) -> str:
    p = Path(spec).expanduser()
    if not p.exists():
        if spec.partition(":")[0] and ":" in spec and spec.partition(":")[0] not in KINDS:
            raise Hep2Error(
                f"unknown dataset kind {spec.partition(':')[0]!r} in {spec!r}: use one of "
                f"{', '.join(KINDS)}, e.g. folder:/path/to/cells"
            )
        raise Hep2Error(f"dataset path {p} does not exist: check the spelling")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "manifest"
        raise Hep2Error(f"{p} is a file but not a CSV manifest: give a folder, or manifest:FILE.csv")
    if (p / "split_information").is_dir() and (p / "train").is_dir():
        return "snphep2"
    if icpr2012_ground_truth(p):
        return "icpr2012"
    if any(_is_i3a_csv(f) for f in _listdir(p) if f.suffix.lower() == ".csv"):
        return "i3a"
    return "folder"


def _is_i3a_csv(path: Path) -> bool:
    """A CSV whose header names an image-ID and a class column: the I3A ground-truth file."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            header = {snake_case(c) for c in re.split(r"[,;\t]", f.readline())}
    except (OSError, UnicodeDecodeError):
        return False
    return bool(header & {"image_id", "id", "cell_id", "imageid"}) and bool(
        header & {"image_class", "class", "pattern", "staining_pattern"}
    )


def _listdir(path: Path):
    try:
        return sorted(path.iterdir())
    except PermissionError:
        raise Hep2Error(f"cannot read folder {path}: permission denied; fix its permissions") from None
    except NotADirectoryError:
        raise Hep2Error(f"{path} is not a folder") from None


def is_hidden(p: Path) -> bool:
    """Hidden and system entries: .thumbnails, ._x.png, Synology's @eaDir, macOS's __MACOSX."""
    return p.name.startswith((".", "@")) or p.name == "__MACOSX"


def files_under(path: Path, seen: set | None = None) -> list[Path]:
    """Every file under a folder, sorted, hidden and system entries left out; an unreadable subfolder is
    an error, not a silent gap. Linked subfolders are followed, each real folder once (no loop, and a link
    to a folder read elsewhere in the walk adds nothing twice)."""
    seen = set() if seen is None else seen
    seen.add(path.resolve())
    out = []
    for p in _listdir(path):
        if is_hidden(p):
            continue
        if p.is_dir():
            if p.resolve() not in seen:
                out += files_under(p, seen)
        else:
            out.append(p)
    return out


def _get(row: list[str], cols: dict, key: str) -> str | None:
    """A row's value in a logical column, or None where the column or the value is absent."""
    return row[cols[key]] if key in cols and cols[key] < len(row) and row[cols[key]] else None


def _missing(what: str, skip_bad: bool, skipped: list[str]) -> None:
    """An entry whose image is absent: an error, or a listed skip with --skip-bad."""
    if not skip_bad:
        raise Hep2Error(f"{what}; add the image, fix the ID, or pass --skip-bad to go on without it")
    skipped.append(what)


# ------------------------------------------------------------------------------------- SNPHEp-2


def read_snphep2(root: Path, *, skip_bad: bool = False) -> CellSet:
    """train/NNN.png, test/NNN.png, split_information/Split-50-K_{train,test}[ _label, _hi, _lo]."""
    info = root / "split_information"
    for sub in ("train", "test", "split_information"):
        if not (root / sub).is_dir():
            raise Hep2Error(
                f"{root} is not a SNPHEp-2 folder: {root / sub} is missing "
                "(expected train/, test/ and split_information/)"
            )
    cells, index, skipped = [], {}, []
    problems = []
    for split in ("train", "test"):
        bounds = SNPHEP2_RANGES[split]
        files = {int(p.stem): p for p in _listdir(root / split) if p.suffix.lower() == ".png" and p.stem.isdigit()}
        for num in range(1, bounds[-1]):
            p = files.get(num)
            if p is None:
                _missing(f"SNPHEp-2 image {root / split / f'{num:03d}.png'} is missing", skip_bad, skipped)
                continue
            label = SNPHEP2_CLASSES[int(np.searchsorted(bounds, num, side="right")) - 1]
            index[(split, num)] = len(cells)
            cells.append(Cell(f"{split}/{num:03d}", p, label, None, None, split))
        extra = sorted(set(files) - set(range(1, bounds[-1])))
        if extra:
            problems.append(f"{root / split} has {len(extra)} images outside the documented ID range")
    intensity = {}
    subsets = {s: np.array([i for (sp, _), i in index.items() if sp == s], dtype=np.int64) for s in ("train", "test")}
    ks = sorted({int(m.group(1)) for f in _listdir(info) if (m := re.fullmatch(r"Split-50-(\d+)_train", f.name))})
    if not ks:
        raise Hep2Error(f"no Split-50-K_train files in {info}: the official splits are missing")
    for k in ks:
        for split in ("train", "test"):
            ids = _read_ids(info / f"Split-50-{k}_{split}")
            label_file = info / f"Split-50-{k}_{split}_label"
            if label_file.exists():
                labels = _read_ids(label_file)
                for num, lab in zip(ids, labels):
                    want = SNPHEP2_CLASSES[lab - 1] if 1 <= lab <= 5 else None
                    i = index.get((split, num))
                    if i is not None and cells[i].label != want:
                        problems.append(
                            f"{label_file.name}: ID {num:03d} labelled {lab}, its ID range says {cells[i].label}"
                        )
            for level, name in (("hi", "positive"), ("lo", "intermediate")):
                f = info / f"Split-50-{k}_{split}_{level}"
                if f.exists():
                    for num in _read_ids(f):
                        intensity[(split, num)] = name
            rows = []
            for num in ids:
                if (split, num) in index:
                    rows.append(index[(split, num)])
                elif not 1 <= num < SNPHEP2_RANGES[split][-1]:  # in-range absences were reported above
                    _missing(
                        f"{info / f'Split-50-{k}_{split}'} lists ID {num:03d}, outside the documented "
                        f"range of {split}/",
                        skip_bad,
                        skipped,
                    )
            subsets[f"split-50-{k}/{split}"] = np.array(rows, dtype=np.int64)
    cells = [Cell(c.id, c.path, c.label, None, intensity.get((c.split, int(c.id[-3:]))), c.split) for c in cells]
    return CellSet("snphep2", cells, order_classes(SNPHEP2_CLASSES), subsets, skipped, problems)


def _read_ids(path: Path) -> list[int]:
    try:
        text = path.read_text()
    except OSError as e:
        raise Hep2Error(f"cannot read {path}: {e.strerror}") from None
    out = []
    for n, line in enumerate(text.split(), 1):
        if not line.isdigit():
            raise Hep2Error(f"{path}, entry {n}: {line!r} is not a numeric ID; the file is damaged")
        out.append(int(line))
    return out


# ------------------------------------------------------------------------------------- CSV help


def _read_csv(path: Path, delimiter: str | None = None) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise Hep2Error(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise Hep2Error(
            f"{path} is not a UTF-8 text CSV file: save it again as CSV UTF-8 (in Excel: Save As, CSV UTF-8)"
        ) from None
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = (
            ";" if first.count(";") > first.count(",") else ("\t" if "\t" in first and "," not in first else ",")
        )
    return [
        [c.strip() for c in row]
        for row in csv.reader(text.splitlines(), delimiter=delimiter)
        if any(c.strip() for c in row)
    ]


SPECIMEN_COLUMNS = (
    "specimen",
    "specimen_id",
    "slide",
    "slide_id",
    "patient",
    "patient_id",
    "sample",
    "sample_id",
    "well",
    "well_id",
)


def _columns(header: list[str], path: Path, wanted: dict[str, tuple[str, ...]], required: tuple[str, ...]):
    """Map logical column names to indices, matching header variants case- and space-insensitively."""
    norm = [snake_case(h) for h in header]
    found = {}
    for key, variants in wanted.items():
        for v in variants:
            if v in norm:
                found[key] = norm.index(v)
                break
    missing = [k for k in required if k not in found]
    if missing:
        raise Hep2Error(
            f"{path}: no {' / '.join(missing)} column in header {header}; expected e.g. "
            + ", ".join(wanted[k][0] for k in required)
        )
    return found


def _cell_id(value: str) -> int | None:
    v = Path(value).stem if "." in value else value
    return int(v) if v.isdigit() else None


def find_mask(image: Path) -> Path | None:
    """``NAME_Mask.EXT`` beside ``NAME.EXT`` (the same format first, then any image format; any case)."""
    for ext in dict.fromkeys((image.suffix,) + IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS)):
        for suffix in ("_Mask", "_mask", "_MASK"):
            m = image.with_name(image.stem + suffix + ext)
            if m.exists():
                return m
    return None


def is_mask(p: Path) -> bool:
    return p.stem.lower().endswith("_mask")


# ------------------------------------------------------------------------------------- I3A


def read_i3a(root: Path, *, skip_bad: bool = False) -> CellSet:
    """ICPR 2014 / ICIP 2013 Task 1: a CSV of image ID -> class, NNNNN.png anywhere under root."""
    if root.is_file():
        csvs, root = [root], root.parent
    else:
        csvs = sorted(
            p for p in root.rglob("*.csv") if not any(is_hidden(Path(part)) for part in p.relative_to(root).parts)
        )
    if not csvs:
        raise Hep2Error(
            f"no CSV file under {root}: the I3A layout needs one mapping image IDs to classes "
            "(e.g. header 'Image ID,Image class')"
        )
    images = {}
    for p in files_under(root):
        if p.suffix.lower() in IMAGE_EXTENSIONS and not is_mask(p) and p.stem.isdigit():
            images.setdefault(int(p.stem), p)
    wanted = {
        "id": ("image_id", "id", "image", "cell_id", "imageid"),
        "label": ("image_class", "class", "pattern", "label", "staining_pattern"),
        "intensity": ("intensity", "intensity_level"),
        "specimen": SPECIMEN_COLUMNS,
    }
    cells, skipped, seen, problems, other = [], [], {}, [], []
    for path in csvs:
        rows = _read_csv(path)
        if not rows:
            continue
        try:
            cols = _columns(rows[0], path, wanted, ("id", "label"))
        except Hep2Error as e:  # another CSV in the folder (results, notes): not the ground truth
            other.append((path, e))
            continue
        for n, row in enumerate(rows[1:], 2):
            where = f" in {path}, line {n}"
            num = _cell_id(_get(row, cols, "id") or "")
            if num is None:
                raise Hep2Error(
                    f"{path}, line {n}: image ID {_get(row, cols, 'id') or ''!r} is not a number; "
                    "fix the line or delete it"
                )
            label = normalise_class(_get(row, cols, "label") or "", known_only=True, where=where)
            if num in seen:
                if seen[num] != label:
                    problems.append(
                        f"{path}, line {n}: image ID {num} is listed again with another class "
                        f"({_get(row, cols, 'label')!r}); its first row is used"
                    )
                continue
            seen[num] = label
            img = images.get(num)
            if img is None:
                _missing(
                    f"{path}, line {n}: image ID {num} has no image file {num:05d}.png under {root}", skip_bad, skipped
                )
                continue
            cells.append(
                Cell(
                    f"{num:05d}",
                    img,
                    label,
                    _get(row, cols, "specimen"),
                    normalise_intensity(_get(row, cols, "intensity"), where),
                    None,
                    find_mask(img),
                )
            )
    if other and len(other) == len(csvs):
        raise other[0][1]
    problems += [f"{path} has no image ID / class columns, so it is not read ({e})" for path, e in other]
    return CellSet("i3a", cells, skipped=skipped, problems=problems)


# ------------------------------------------------------------------------------------- ICPR 2012


ICPR2012_GT = (("train", "gt_training.csv"), ("test", "gt_test.csv"))
# cells.csv of the contest's distribution: each cell's set, its field image (the specimen) and its intensity
ICPR2012_CELL_COLUMNS = {
    "id": ("icpr2012_contest_cell_id", "cell_id", "id"),
    "set": ("set", "split"),
    "image": ("image", "image_id", "field"),
    "intensity": ("intensity",),
}


def icpr2012_ground_truth(root: Path) -> dict[str, Path]:
    """The ground-truth files of an ICPR 2012 folder, by split: beside the images (``training/gt_training.csv``,
    as the contest distributes them) or at the top."""
    found = {}
    for split, gt in ICPR2012_GT:
        folder = _split_folder(root, split) if root.is_dir() else None
        for place in (root / gt, *([folder / gt] if folder is not None and folder.is_dir() else [])):
            if place.is_file():
                found[split] = place
                break
    return found


def read_icpr2012(root: Path, *, skip_bad: bool = False) -> CellSet:
    """MIVIA ICPR 2012: gt_training.csv / gt_test.csv ('ID;pattern') at the top or in the training/ and test/
    folders beside their 3-digit PNGs and ``NNN_mask.png`` masks; with the contest's ``cells.csv`` (each cell's
    set, field image and intensity) the field image is the cell's specimen."""
    cells, subsets, skipped = [], {}, []
    info = {}
    if (root / "training.csv").exists():
        for row in _read_csv(root / "training.csv", ";"):
            if row and _cell_id(row[0]) is not None and len(row) > 1:
                info[_cell_id(row[0])] = row[1]
    fields = _icpr2012_cells_csv(root / "cells.csv") if (root / "cells.csv").is_file() else {}
    gts = icpr2012_ground_truth(root)
    if not gts:
        raise Hep2Error(
            f"{root} has no gt_training.csv nor gt_test.csv, at the top or in its training/ and test/ folders: "
            "not the ICPR 2012 layout"
        )
    for split, gt_path in gts.items():
        folder = gt_path.parent if gt_path.parent != root else _split_folder(root, split)
        images = {int(p.stem): p for p in _listdir(folder) if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem.isdigit()}
        start = len(cells)
        for n, row in enumerate(_read_csv(gt_path, ";"), 1):
            num = _cell_id(row[0])
            if num is None:
                if n == 1:
                    continue  # header
                raise Hep2Error(
                    f"{gt_path}, line {n}: ID {row[0]!r} is not a number"
                    + (
                        "; ICPR 2012's ground truth separates ID;pattern with ';' and this line has commas: "
                        "if it is an I3A (ICPR 2014) CSV, give i3a:PATH"
                        if "," in row[0]
                        else ""
                    )
                )
            if len(row) < 2:
                raise Hep2Error(f"{gt_path}, line {n}: expected 'ID;pattern', got {';'.join(row)!r}")
            img = images.get(num)
            if img is None:
                _missing(f"{gt_path}, line {n}: ID {num} has no image {folder / f'{num:03d}.png'}", skip_bad, skipped)
                continue
            where = f" in {gt_path}, line {n}"
            field, intensity = fields.get((split, num), (None, None))
            intensity = intensity or (info.get(num) if split == "train" else None)
            cells.append(
                Cell(
                    f"{split}/{num:03d}",
                    img,
                    normalise_class(row[1], known_only=True, where=where),
                    field,
                    normalise_intensity(intensity, where),
                    split,
                    find_mask(img),
                )
            )
        subsets[split] = np.arange(start, len(cells))
    problems = []
    if fields and any(c.specimen is None for c in cells):
        without = [c.id for c in cells if c.specimen is None]
        problems.append(
            f"{root / 'cells.csv'} names no field image for {len(without)} cells (first: {without[0]}): "
            "they have no specimen, so --protocol grouped refuses the set"
        )
    return CellSet("icpr2012", cells, subsets=subsets, skipped=skipped, problems=problems)


def _icpr2012_cells_csv(path: Path) -> dict[tuple[str, int], tuple[str, str | None]]:
    """(split, cell ID) -> (the field image, the intensity) from the contest's cells.csv."""
    rows = _read_csv(path, ";")
    if not rows:
        raise Hep2Error(f"{path} is empty: remove it, or give the contest's cells.csv")
    cols = _columns(rows[0], path, ICPR2012_CELL_COLUMNS, ("id", "set", "image"))
    out = {}
    for n, row in enumerate(rows[1:], 2):
        num, split = _cell_id(_get(row, cols, "id") or ""), SPLIT_NAMES.get(snake_case(_get(row, cols, "set") or ""))
        if num is None or split is None:
            raise Hep2Error(f"{path}, line {n}: expected a cell ID and a set (training or test), got {';'.join(row)!r}")
        image = _get(row, cols, "image")
        out[(split, num)] = (f"field-{image}" if image else None, _get(row, cols, "intensity"))
    return out


def _split_folder(root: Path, split: str) -> Path:
    for d in _listdir(root):
        if d.is_dir() and SPLIT_NAMES.get(snake_case(d.name)) == split:
            return d
    return root


# ------------------------------------------------------------------------------------- folder


def read_folder(root: Path, *, skip_bad: bool = False, specimens: Path | None = None) -> CellSet:
    """One subfolder per class (or train/ and test/ each holding one per class); optional
    ``specimens.csv`` (columns path, specimen[, intensity]) at the root."""
    if not root.is_dir():
        raise Hep2Error(f"{root} is not a folder: the folder layout needs one subfolder per class")
    subdirs = [d for d in _listdir(root) if d.is_dir() and not is_hidden(d)]
    split_dirs = [d for d in subdirs if snake_case(d.name) in SPLIT_NAMES]
    groups = [(SPLIT_NAMES[snake_case(d.name)], d) for d in split_dirs] if split_dirs else [(None, root)]
    cells, subsets, problems, spellings = [], {}, [], {}
    beside = [d.name for d in subdirs if d not in split_dirs]
    if split_dirs and beside:
        problems.append(
            f"{len(beside)} folder{'s' * (len(beside) > 1)} beside {', '.join(d.name for d in split_dirs)} "
            f"{'are' if len(beside) > 1 else 'is'} not read (first: "
            f"{beside[0]}): move each class folder into one of them"
        )
    for split, base in groups:
        loose = [p.name for p in _listdir(base) if p.is_file() and is_cell_image(p)]
        if loose:
            problems.append(
                f"{len(loose)} images in {base} lie outside every class folder, so they are not used "
                f"(first: {loose[0]}): move each into its class's folder"
            )
        start = len(cells)
        for d in (x for x in _listdir(base) if x.is_dir() and not is_hidden(x)):
            label = normalise_class(d.name, where=f" (folder {d})")
            spellings.setdefault(label, set()).add(d.name)
            for p in files_under(d):
                if is_cell_image(p):
                    rel = p.relative_to(root).as_posix()
                    cells.append(Cell(rel, p, label, None, None, split, find_mask(p)))
        if split:
            subsets[split] = np.arange(start, len(cells))
    problems += merged_names(spellings, "folders")
    where = {}
    for c in cells:
        where.setdefault(c.path.resolve(), []).append(c.id)
    twice = [ids for ids in where.values() if len(ids) > 1]
    if twice:
        problems.append(
            f"{len(twice)} images are read more than once, through linked folders (first: "
            f"{' and '.join(twice[0])}): link each well into one class and split only"
        )
    masklike = [c.id for c in cells if "mask" in c.path.stem.lower()]
    if masklike:
        problems.append(
            f"{len(masklike)} images whose names say mask are read as cells (first: {masklike[0]}): name "
            "a cell's mask NAME_mask.EXT beside its NAME.EXT"
        )
    if not cells:
        raise Hep2Error(
            f"no images found in the class subfolders of {root}: the folder layout is "
            f"{root}/<class>/<image>.png ({IMAGE_FORMATS})"
        )
    specimens = specimens or (root / "specimens.csv" if (root / "specimens.csv").exists() else None)
    skipped: list[str] = []
    if specimens:
        cells, listed = _attach_specimens(cells, Path(specimens), root, skip_bad, skipped)
        empty = sorted(c.id for c in cells if c.id in listed and c.specimen is None)
        without = [c.id for c in cells if c.id not in listed]
        twice = sorted(i for i, lines in listed.items() if len(lines) > 1)
        if empty:
            problems.append(
                f"{len(empty)} images have an empty specimen in {specimens} (first: {empty[0]}), so "
                "--protocol grouped cannot run: fill it in"
            )
        if without:
            problems.append(
                f"{len(without)} of {len(cells)} images have no row in {specimens} (first: {without[0]}), "
                "so --protocol grouped cannot run: add a row path,specimen for each"
            )
        if twice:
            problems.append(
                f"{len(twice)} images have several rows in {specimens} (first: {twice[0]}, lines "
                f"{', '.join(map(str, listed[twice[0]]))}); the last is used, which may name another "
                "specimen than the others: keep one row per image"
            )
    return CellSet("folder", cells, subsets=subsets or {}, skipped=skipped, problems=problems)


# the folders that hold a split (of the folder layout), as named on disk (snake_case) -> the split's name
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "training_set": "train",
    "train_set": "train",
    "test": "test",
    "testing": "test",
    "test_set": "test",
    "testing_set": "test",
    "val": "val",
    "validation": "val",
    "validation_set": "val",
    "val_set": "val",
}


def merged_names(spellings: dict, what: str) -> list[str]:
    """A problem line for each class that several spellings were read as ({class: {names as written}})."""
    return [
        f"{what} {', '.join(repr(n) for n in sorted(names))} are read as one class, {label}: rename them if they "
        "are different patterns"
        for label, names in spellings.items()
        if len({str(n).casefold().strip() for n in names}) > 1
    ]  # not Homogeneous / homogeneous


def is_cell_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not is_mask(p) and not is_hidden(p)


def _attach_specimens(cells, csv_path: Path, root: Path, skip_bad: bool, skipped: list[str]):
    """The cells with the specimen (and intensity) their rows give, and {cell id: the lines that name it}."""
    rows = _read_csv(csv_path)
    if not rows:
        raise Hep2Error(f"{csv_path} is empty: expected columns path,specimen[,intensity]")
    cols = _columns(
        rows[0],
        csv_path,
        {"path": ("path", "file", "filename", "image"), "specimen": SPECIMEN_COLUMNS, "intensity": ("intensity",)},
        ("path", "specimen"),
    )
    nfc = functools.partial(unicodedata.normalize, "NFC")  # 'ü' as one character or two (macOS names)
    by_rel = {nfc(c.id): i for i, c in enumerate(cells)}
    by_name = {}
    for i, c in enumerate(cells):
        by_name.setdefault(nfc(c.path.name), []).append(i)
    cells, listed = list(cells), {}
    for n, row in enumerate(rows[1:], 2):
        key = nfc((_get(row, cols, "path") or "").replace("\\", "/"))
        i = by_rel.get(key)
        if i is None and len(by_name.get(Path(key).name, [])) == 1:
            i = by_name[Path(key).name][0]
        if i is None:
            same = len(by_name.get(Path(key).name, []))
            _missing(
                f"{csv_path}, line {n}: {key!r} names no image under {root} (paths are relative to it, as "
                f"{cells[0].id!r} is"
                + (
                    f"; the file name {Path(key).name} matches {same} images, so the path must say which"
                    if same > 1
                    else ""
                )
                + ")",
                skip_bad,
                skipped,
            )
            continue
        c = cells[i]
        inten = normalise_intensity(_get(row, cols, "intensity"), f" in {csv_path}, line {n}")
        listed.setdefault(c.id, []).append(n)
        cells[i] = Cell(c.id, c.path, c.label, _get(row, cols, "specimen"), inten, c.split, c.mask)
    return cells, listed


# ------------------------------------------------------------------------------------- manifest


def read_manifest(csv_path: Path, *, skip_bad: bool = False) -> CellSet:
    """A CSV with columns path, label and optionally specimen, intensity, split, mask
    (paths relative to the CSV's folder)."""
    rows = _read_csv(csv_path)
    if not rows:
        raise Hep2Error(f"manifest {csv_path} is empty: expected a header path,label[,specimen,intensity,split]")
    cols = _columns(
        rows[0],
        csv_path,
        {
            "path": ("path", "file", "filename", "image"),
            "label": ("label", "class", "pattern"),
            "specimen": SPECIMEN_COLUMNS,
            "intensity": ("intensity",),
            "split": ("split", "subset", "set"),
            "mask": ("mask", "mask_path"),
        },
        ("path", "label"),
    )
    cells, splits, skipped, spellings, rows_of = [], {}, [], {}, {}

    def get(row, key):
        return row[cols[key]] if key in cols and cols[key] < len(row) and row[cols[key]] else None

    for n, row in enumerate(rows[1:], 2):
        where = f" in {csv_path}, line {n}"
        rel = get(row, "path")
        if rel is None:
            raise Hep2Error(f"{csv_path}, line {n}: empty path")
        rel = rel.replace("\\", "/")  # a path written on Windows
        p = (csv_path.parent / rel).resolve() if not Path(rel).is_absolute() else Path(rel)
        if not p.is_file():
            _missing(f"{csv_path}, line {n}: image {p} does not exist", skip_bad, skipped)
            continue
        mask = get(row, "mask")
        split = snake_case(get(row, "split")) if get(row, "split") else None
        split = SPLIT_NAMES.get(split, split)
        if split:
            splits.setdefault(split, []).append(len(cells))
        label = normalise_class(get(row, "label") or "", where=where)
        spellings.setdefault(label, set()).add(get(row, "label"))
        rows_of.setdefault(p, []).append((n, label))
        cells.append(
            Cell(
                rel,
                p,
                label,
                get(row, "specimen"),
                normalise_intensity(get(row, "intensity"), where),
                split,
                (csv_path.parent / mask) if mask else None,
            )
        )
    problems = merged_names(spellings, "labels")
    for p, listed in rows_of.items():
        if len(listed) > 1:
            labels = sorted({label for _, label in listed})
            problems.append(
                f"{p} is listed {len(listed)} times (lines {', '.join(str(n) for n, _ in listed)})"
                + (f" with different labels ({', '.join(labels)})" if len(labels) > 1 else "")
                + ": each row counts as a cell; keep one row per image"
            )
    return CellSet(
        "manifest", cells, subsets={k: np.array(v) for k, v in splits.items()}, skipped=skipped, problems=problems
    )


# ------------------------------------------------------------------------------------- synthetic


def read_synthetic(per_class: int = 100, *, specimens: int = 20, seed: int = 0, spec: str = "synthetic") -> CellSet:
    """The built-in generator's set, generated once into the cache and read as a folder."""
    from .synthetic import make_synthetic

    if per_class < 1:
        raise Hep2Error(f"{spec}: the number of cells per class must be at least 1")
    out = cache_dir() / "synthetic" / f"pc{per_class}-sp{specimens}-seed{seed}-v1"
    if not (out / "specimens.csv").exists():
        if out.exists():
            import shutil

            shutil.rmtree(out)
        try:
            make_synthetic(out, per_class=per_class, specimens=specimens, seed=seed)
        except OSError as e:
            # Another process (torchrun starts several) put its copy in place first: the set is
            # the same byte for byte, so use that one.
            if not (out / "specimens.csv").exists():
                raise Hep2Error(
                    f"cannot write the synthetic set to {out} ({e}): check the free space and "
                    "permissions of $HEP2_CACHE"
                ) from None
    cells = read_folder(out)
    cells.name = spec
    return cells


__all__ = [
    "KINDS",
    "SNPHEP2_CLASSES",
    "SNPHEP2_NAMING",
    "SNPHEP2_OLD_NAMES",
    "SNPHEP2_RANGES",
    "SPECIMEN_COLUMNS",
    "SPLIT_NAMES",
    "files_under",
    "find_mask",
    "is_cell_image",
    "is_hidden",
    "is_mask",
    "combine",
    "merged_names",
    "open_dataset",
    "read_folder",
    "read_i3a",
    "read_icpr2012",
    "read_manifest",
    "read_snphep2",
    "read_synthetic",
]
