"""The record type for a set of cells: one row per image, plus named subsets (splits)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import Hep2Error

# The staining patterns of the public HEp-2 sets, in the order of the ICPR 2012 contest and of
# the DCAE paper for the first five; a dataset's class order follows this list.
KNOWN_CLASSES = (
    "homogeneous",
    "coarse_speckled",
    "fine_speckled",
    "nucleolar",
    "centromere",
    "speckled",
    "nuclear_membrane",
    "golgi",
    "cytoplasmatic",
    "mitotic_spindle",
)

_ALIASES = {
    "homogenous": "homogeneous",
    "homogene": "homogeneous",
    "homo": "homogeneous",
    "coarse": "coarse_speckled",
    "coarse_speckle": "coarse_speckled",
    "fine": "fine_speckled",
    "fine_speckle": "fine_speckled",
    "nucleoli": "nucleolar",
    "centromeric": "centromere",
    "centro": "centromere",
    "numem": "nuclear_membrane",
    "nuclearmembrane": "nuclear_membrane",
    "nuc_mem": "nuclear_membrane",
    "cytoplasmic": "cytoplasmatic",
    "cytoplasm": "cytoplasmatic",
    "mitotic": "mitotic_spindle",
    "mitoticspindle": "mitotic_spindle",
    "speckle": "speckled",
}

INTENSITIES = ("positive", "intermediate")
_INTENSITY_ALIASES = {
    "positive": "positive",
    "pos": "positive",
    "hi": "positive",
    "high": "positive",
    "intermediate": "intermediate",
    "int": "intermediate",
    "lo": "intermediate",
    "low": "intermediate",
    "weak": "intermediate",
}


def snake_case(name: str) -> str:
    """'Coarse Speckled' / 'coarse-speckled' / 'CoarseSpeckled' -> 'coarse_speckled'; accents dropped
    ('Homogène' -> 'homogene'), other scripts' letters kept ('均质型')."""
    import unicodedata

    s = "".join(ch for ch in unicodedata.normalize("NFKD", str(name).strip()) if not unicodedata.combining(ch))
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return re.sub(r"[\W_]+", "_", s).strip("_").lower()


def normalise_class(name: str, *, known_only: bool = False, where: str = "") -> str:
    """Map a class name as written in a dataset to the project's snake_case name.

    With ``known_only`` an unknown name is an error (layouts with a fixed class list)."""
    s = snake_case(name)
    s = _ALIASES.get(s, _ALIASES.get(s.replace("_", ""), s))
    if not s:
        raise Hep2Error(f"empty class name{where}: every cell needs a class label")
    if known_only and s not in KNOWN_CLASSES:
        raise Hep2Error(
            f"unknown class name {name!r}{where}: expected one of {', '.join(KNOWN_CLASSES)} "
            "(case, spaces and hyphens do not matter); fix the label or use the folder/manifest layout"
        )
    return s


def normalise_intensity(value: str | None, where: str = "") -> str | None:
    if value is None or str(value).strip() == "":
        return None
    v = snake_case(value)
    if v not in _INTENSITY_ALIASES:
        raise Hep2Error(f"unknown intensity {value!r}{where}: expected positive or intermediate (or leave it empty)")
    return _INTENSITY_ALIASES[v]


def order_classes(names) -> list[str]:
    """Known classes in their canonical order, then any others alphabetically."""
    names = set(names)
    return [c for c in KNOWN_CLASSES if c in names] + sorted(names - set(KNOWN_CLASSES))


@dataclass(frozen=True)
class Cell:
    """One cell image and what is known about it."""

    id: str
    path: Path
    label: str | None = None
    specimen: str | None = None
    intensity: str | None = None
    split: str | None = None  # the source split of the dataset ('train' / 'test'), if any
    mask: Path | None = None
    source: str | None = None  # the dataset it comes from, where a set joins several (`combine`)


@dataclass
class CellSet:
    """A list of cells with their class list and named subsets (index arrays into ``cells``)."""

    name: str
    cells: list[Cell]
    classes: list[str] = field(default_factory=list)
    subsets: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # what --skip-bad left out, and why
    problems: list[str] = field(default_factory=list)  # warnings found while reading (not fatal)

    def __post_init__(self):
        if not self.classes:
            self.classes = order_classes(c.label for c in self.cells if c.label is not None)
        if not self.subsets:
            self.subsets = {"all": np.arange(len(self.cells))}

    def __len__(self) -> int:
        return len(self.cells)

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.cells]

    @property
    def paths(self) -> list[Path]:
        return [c.path for c in self.cells]

    @property
    def y(self) -> np.ndarray:
        """Class indices into ``classes`` (-1 where a cell has no label)."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index.get(c.label, -1) for c in self.cells], dtype=np.int64)

    @property
    def specimens(self) -> np.ndarray | None:
        """Specimen IDs, or None when the layout does not give them for every cell."""
        s = [c.specimen for c in self.cells]
        return None if any(v is None for v in s) else np.array(s, dtype=object)

    @property
    def source_of(self) -> np.ndarray:
        """The dataset each cell comes from (the set's name for a set read from one dataset)."""
        return np.array([c.source or self.name for c in self.cells], dtype=object)

    @property
    def sources(self) -> list[str]:
        """The datasets the cells come from, in order."""
        return list(dict.fromkeys(self.source_of))

    def official_splits(self) -> list[str]:
        """Names K of the subsets 'K/train' that have a 'K/test' twin (e.g. 'split-50-1')."""
        return sorted(
            n[: -len("/train")]
            for n in self.subsets
            if n.endswith("/train") and n[: -len("/train")] + "/test" in self.subsets
        )

    def subset(self, key) -> "CellSet":
        """A new CellSet with the cells of a named subset, or of an index array / boolean mask."""
        if isinstance(key, str):
            if key not in self.subsets:
                raise Hep2Error(f"dataset {self.name} has no split {key!r}; it has: {', '.join(self.subsets)}")
            idx, name = self.subsets[key], f"{self.name}[{key}]"
        else:
            idx = np.asarray(key)
            idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64)
            name = self.name
        return CellSet(
            name, [self.cells[i] for i in idx], list(self.classes), {}, list(self.skipped), list(self.problems)
        )

    def drop(self, bad_paths) -> "CellSet":
        """The same set without the cells whose image path is in ``bad_paths``; subsets re-indexed."""
        bad = {str(p) for p in bad_paths}
        keep = np.array([str(c.path) not in bad for c in self.cells], dtype=bool)
        new_index = np.cumsum(keep) - 1
        subsets = {k: new_index[v[keep[v]]] for k, v in self.subsets.items()}
        return CellSet(
            self.name,
            [c for c, k in zip(self.cells, keep) if k],
            list(self.classes),
            subsets,
            list(self.skipped),
            list(self.problems),
        )

    def fingerprint(self) -> str:
        """A short hash of the file list, labels and image bytes: names the data a run used."""
        h = hashlib.sha256()
        for c in self.cells:
            h.update(f"{c.id}\t{c.label}\t{c.specimen}\t".encode())
            h.update(file_digest(c.path).encode())
        return h.hexdigest()[:16]


_digest_cache: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (memoised on path, size and mtime)."""
    st = Path(path).stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _digest_cache:
        _digest_cache[key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return _digest_cache[key]


__all__ = [
    "Cell",
    "CellSet",
    "INTENSITIES",
    "KNOWN_CLASSES",
    "file_digest",
    "normalise_class",
    "normalise_intensity",
    "order_classes",
    "snake_case",
]
