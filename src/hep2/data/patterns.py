"""One tree of HEp-2 staining patterns, with the codes of the International Consensus on ANA Patterns (ICAP).

Each dataset labels its cells at its own depth: I3A says ``speckled``, SNPHEp-2 says ``fine_speckled`` or
``coarse_speckled``, children of ``speckled``. The tree says which label holds which, so that

- a model trained on several datasets learns each label at its depth (a parent label allows any of its
  children: `leaf_sets`);
- a model's probabilities fold to a coarser depth by summing children into their parent (`fold_proba`);
- two datasets, or a model and a dataset, are compared at the depth they share (`shared_depth`).

Names are the project's class names (`hep2.data.cellset.normalise_class`); a name the tree does not know is a
node of its own, under no parent, without an ICAP code.
"""

from __future__ import annotations

import numpy as np

# name: (ICAP code, parent). Codes from the ICAP classification tree (anapatterns.org): AC-0 negative,
# AC-1..14 nuclear, AC-15..23 cytoplasmic, AC-24..28 mitotic.
TREE: dict[str, tuple[str, str | None]] = {
    "negative": ("AC-0", None),
    "homogeneous": ("AC-1", None),
    "speckled": ("AC-2,4,5", None),
    "dense_fine_speckled": ("AC-2", "speckled"),
    "fine_speckled": ("AC-4", "speckled"),
    "coarse_speckled": ("AC-5", "speckled"),
    "centromere": ("AC-3", None),
    "nuclear_dots": ("AC-6,7", None),
    "nucleolar": ("AC-8,9,10", None),
    "nuclear_membrane": ("AC-11,12", None),
    "pleomorphic": ("AC-13,14", None),
    "cytoplasmatic": ("AC-15..23", None),
    "fibrillar": ("AC-15,16,17", "cytoplasmatic"),
    "cytoplasmic_speckled": ("AC-18,19,20", "cytoplasmatic"),
    "mitochondrial": ("AC-21", "cytoplasmatic"),
    "golgi": ("AC-22", "cytoplasmatic"),
    "rods_and_rings": ("AC-23", "cytoplasmatic"),
    "mitotic_spindle": ("AC-24..28", None),
}


def icap(name: str) -> str:
    """The ICAP code of a pattern ('AC-1'), or '' for a name outside the tree.

    Examples
    --------
    >>> icap("fine_speckled"), icap("speckled"), icap("my_pattern")
    ('AC-4', 'AC-2,4,5', '')
    """
    return TREE.get(name, ("", None))[0]


def with_icap(name: str) -> str:
    """'fine_speckled (AC-4)', or the name alone outside the tree."""
    code = icap(name)
    return f"{name} ({code})" if code else name


def ancestors(name: str) -> list[str]:
    """The name and its parents up to the root: ['fine_speckled', 'speckled']."""
    out = [name]
    while TREE.get(out[-1], ("", None))[1]:
        out.append(TREE[out[-1]][1])
    return out


def leaf_sets(classes) -> tuple[list[str], dict[str, list[str]]]:
    """The labels a model learns (``classes`` without those that hold another of ``classes``: its leaves) and,
    for each label, the leaves it allows (itself, or a parent's children among the leaves).

    Examples
    --------
    >>> leaves, allowed = leaf_sets(["homogeneous", "speckled", "fine_speckled", "coarse_speckled"])
    >>> leaves, allowed["speckled"]
    (['homogeneous', 'fine_speckled', 'coarse_speckled'], ['fine_speckled', 'coarse_speckled'])
    """
    classes = list(classes)
    leaves = [c for c in classes if not any(c != d and c in ancestors(d) for d in classes)]
    return leaves, {c: [leaf for leaf in leaves if c in ancestors(leaf)] for c in classes}


def fold_map(classes, other) -> dict[str, str]:
    """Each of ``classes`` folded to the depth of ``other``: to the nearest of its parents that ``other`` names,
    else itself (``fine_speckled`` against a set that says ``speckled`` becomes ``speckled``)."""
    other = set(other)
    return {c: next((a for a in ancestors(c)[1:] if a in other), c) for c in classes}


def shared_depth(a, b) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Two class lists at the depth they share: the fold of each (`fold_map` against the other) and the classes
    both then name, in ``a``'s order.

    Examples
    --------
    >>> fa, fb, shared = shared_depth(["homogeneous", "fine_speckled", "coarse_speckled", "centromere"],
    ...                               ["homogeneous", "speckled", "centromere", "golgi"])
    >>> fa["fine_speckled"], shared
    ('speckled', ['homogeneous', 'speckled', 'centromere'])
    """
    fa, fb = fold_map(a, b), fold_map(b, a)
    fa, fb = fold_map(a, fb.values()), fold_map(b, fa.values())
    both = set(fa.values()) & set(fb.values())
    return fa, fb, [c for c in dict.fromkeys(fa.values()) if c in both]


def fold_proba(proba: np.ndarray, classes, folded: dict[str, str]) -> tuple[np.ndarray, list[str]]:
    """(N, C) probabilities over ``classes`` summed into the folded classes (a parent's probability is the sum of
    its children's); returns them and the folded class list, in first-seen order."""
    names = list(dict.fromkeys(folded.get(c, c) for c in classes))
    out = np.zeros((len(proba), len(names)), dtype=float)
    for j, c in enumerate(classes):
        out[:, names.index(folded.get(c, c))] += proba[:, j]
    return out, names


__all__ = ["TREE", "ancestors", "fold_map", "fold_proba", "icap", "leaf_sets", "shared_depth", "with_icap"]
