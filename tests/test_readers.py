"""Readers for every dataset layout: SNPHEp-2 (real data), and small I3A, ICPR 2012, folder and
manifest fixtures written by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hep2.data import Cell, CellSet, open_dataset
from hep2.data.cellset import normalise_class, normalise_intensity, order_classes, snake_case
from hep2.errors import Hep2Error

SNP_CLASSES = ["homogeneous", "coarse_speckled", "fine_speckled", "nucleolar", "centromere"]
SNP_BY_LABEL = ["fine_speckled", "coarse_speckled", "homogeneous", "nucleolar", "centromere"]  # labels 1..5
SNP_TRAIN = {"homogeneous": 200, "coarse_speckled": 172, "fine_speckled": 177, "nucleolar": 200, "centromere": 156}
SNP_TEST = {"homogeneous": 200, "coarse_speckled": 192, "fine_speckled": 196, "nucleolar": 200, "centromere": 191}


def class_counts(cells: CellSet, subset: str | None = None) -> dict[str, int]:
    idx = cells.subsets[subset] if subset else range(len(cells))
    out = {c: 0 for c in cells.classes}
    for i in idx:
        out[cells.cells[i].label] += 1
    return out


def by_id(cells: CellSet) -> dict[str, Cell]:
    return {c.id: c for c in cells.cells}


# ============================================================================== SNPHEp-2 (real)


@pytest.fixture(scope="module")
def snp(snphep2_root) -> CellSet:
    return open_dataset(f"snphep2:{snphep2_root}")


def test_snphep2_train_and_test_counts(snp):
    assert snp.classes == SNP_CLASSES
    assert len(snp) == 905 + 979
    assert len(snp.subsets["train"]) == 905
    assert len(snp.subsets["test"]) == 979
    assert class_counts(snp, "train") == SNP_TRAIN
    assert class_counts(snp, "test") == SNP_TEST
    assert snp.problems == []  # the _label files agree with the README's ID ranges
    assert snp.skipped == []


def test_snphep2_source_split_and_ids(snp, snphep2_root):
    train = snp.subset("train")
    assert {c.split for c in train.cells} == {"train"}
    assert {c.split for c in snp.subset("test").cells} == {"test"}
    assert train.cells[0].id == "train/001" and train.cells[-1].id == "train/905"
    assert train.cells[0].path == snphep2_root / "train" / "001.png"
    assert all(c.path.is_file() for c in snp.cells[::97])
    assert snp.specimens is None  # SNPHEp-2 does not distribute specimen IDs


@pytest.mark.parametrize(
    "cell_id, label",
    [
        ("train/001", "fine_speckled"),
        ("train/177", "fine_speckled"),
        ("train/178", "coarse_speckled"),
        ("train/349", "coarse_speckled"),
        ("train/350", "homogeneous"),
        ("train/549", "homogeneous"),
        ("train/550", "nucleolar"),
        ("train/749", "nucleolar"),
        ("train/750", "centromere"),
        ("train/905", "centromere"),
        ("test/001", "fine_speckled"),
        ("test/196", "fine_speckled"),
        ("test/197", "coarse_speckled"),
        ("test/388", "coarse_speckled"),
        ("test/389", "homogeneous"),
        ("test/588", "homogeneous"),
        ("test/589", "nucleolar"),
        ("test/788", "nucleolar"),
        ("test/789", "centromere"),
        ("test/979", "centromere"),
    ],
)
def test_snphep2_labels_follow_the_id_ranges(snp, cell_id, label):
    cell = by_id(snp)[cell_id]
    assert cell.label == label
    assert snp.y[snp.ids.index(cell_id)] == SNP_CLASSES.index(label)


def _ids_in(path: Path) -> list[int]:
    return [int(t) for t in path.read_text().split()]


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_snphep2_official_splits(snp, snphep2_root, k):
    assert snp.official_splits() == [f"split-50-{i}" for i in range(1, 6)]
    tr, te = snp.subsets[f"split-50-{k}/train"], snp.subsets[f"split-50-{k}/test"]
    assert len(tr) == 453 and len(te) == 490
    assert len(set(tr.tolist())) == 453 and len(set(te.tolist())) == 490
    # train IDs come from train/ only, test IDs from test/ only: disjoint sources (specimens)
    assert {snp.cells[i].split for i in tr} == {"train"}
    assert {snp.cells[i].split for i in te} == {"test"}
    assert not {snp.cells[i].path for i in tr} & {snp.cells[i].path for i in te}
    # the same IDs, in the same order, as the split file
    info = snphep2_root / "split_information"
    assert [int(snp.cells[i].id[-3:]) for i in tr] == _ids_in(info / f"Split-50-{k}_train")
    assert [int(snp.cells[i].id[-3:]) for i in te] == _ids_in(info / f"Split-50-{k}_test")
    # and the labels given by the _label files
    want = [SNP_BY_LABEL[n - 1] for n in _ids_in(info / f"Split-50-{k}_train_label")]
    assert [snp.cells[i].label for i in tr] == want


def test_snphep2_official_split_class_counts(snp):
    assert class_counts(snp, "split-50-1/train") == {
        "homogeneous": 100,
        "coarse_speckled": 86,
        "fine_speckled": 89,
        "nucleolar": 100,
        "centromere": 78,
    }
    assert class_counts(snp, "split-50-3/test") == {
        "homogeneous": 100,
        "coarse_speckled": 96,
        "fine_speckled": 98,
        "nucleolar": 100,
        "centromere": 96,
    }


def test_snphep2_intensity(snp, snphep2_root):
    known = [c.intensity for c in snp.cells if c.intensity is not None]
    assert len(known) > 0.9 * len(snp)  # "known for most cells"
    assert known.count("positive") == 952 and known.count("intermediate") == 854
    info = snphep2_root / "split_information"
    cells = by_id(snp)
    for num in _ids_in(info / "Split-50-1_train_hi")[:20]:
        assert cells[f"train/{num:03d}"].intensity == "positive"
    for num in _ids_in(info / "Split-50-2_test_lo")[:20]:
        assert cells[f"test/{num:03d}"].intensity == "intermediate"


def test_snphep2_bare_path_is_detected(snphep2_root):
    cells = open_dataset(str(snphep2_root))
    assert cells.name == f"snphep2:{snphep2_root}"
    assert len(cells) == 1884


# ============================================================================== I3A

I3A_ROWS = [(1, "Homogeneous"), (2, "Speckled"), (3, "Nucleolar"), (4, "Centromere"), (5, "NuMem"), (6, "Golgi")]


def test_i3a_one_folder_with_masks(tmp_path, images):
    root = tmp_path / "i3a"
    for num, _ in I3A_ROWS:
        images.png(root / f"{num:05d}.png", seed=num)
        images.png(root / f"{num:05d}_Mask.png", np.full((24, 24), 255, np.uint8))
    images.text(root / "gt.csv", "Image ID,Image class\n" + "".join(f"{n},{c}\n" for n, c in I3A_ROWS))
    cells = open_dataset(f"i3a:{root}")
    assert cells.name == f"i3a:{root}"
    assert len(cells) == 6  # the _Mask files are not cells
    assert [c.id for c in cells.cells] == [f"{n:05d}" for n, _ in I3A_ROWS]
    assert [c.label for c in cells.cells] == [
        "homogeneous",
        "speckled",
        "nucleolar",
        "centromere",
        "nuclear_membrane",
        "golgi",
    ]
    assert cells.classes == ["homogeneous", "nucleolar", "centromere", "speckled", "nuclear_membrane", "golgi"]
    assert all(c.mask == root / f"{c.id}_Mask.png" for c in cells.cells)
    assert all(c.path == root / f"{c.id}.png" for c in cells.cells)
    assert list(cells.subsets) == ["all"] and len(cells.subsets["all"]) == 6
    # a results CSV beside the ground truth is left out and named; an ID listed again with another class, named
    images.text(root / "results" / "predictions.csv", "path,predicted\n00001.png,homogeneous\n")
    images.text(
        root / "gt.csv",
        "Image ID,Image class\n" + "".join(f"{n},{c}\n" for n, c in I3A_ROWS) + f"{I3A_ROWS[0][0]},golgi\n",
    )
    again = open_dataset(f"i3a:{root}")
    assert [c.label for c in again.cells] == [c.label for c in cells.cells]
    assert any("predictions.csv has no image ID / class columns, so it is not read" in p for p in again.problems)
    assert any(f"image ID {I3A_ROWS[0][0]} is listed again with another class ('golgi')" in p for p in again.problems)


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_i3a_subfolders_intensity_and_specimen(tmp_path, images, delimiter):
    root = tmp_path / "i3a"
    rows = [
        (1, "Homogeneous", "positive", "s1"),
        (2, "Speckled", "intermediate", "s1"),
        (12, "NuMem", "Positive", "s2"),
        (13, "Golgi", "intermediate", "s3"),
    ]
    for num, cls, _, spec in rows:  # one subfolder per specimen, another level for the class
        images.png(root / f"specimen_{spec}" / cls / f"{num:05d}.png", seed=num)
    sep = delimiter
    images.text(
        root / "labels" / "gt.csv",
        f"ID{sep}Pattern{sep}Intensity{sep}Specimen\n"
        + "".join(f"{n:05d}{sep}{c}{sep}{i}{sep}{s}\n" for n, c, i, s in rows),
    )
    cells = open_dataset(f"i3a:{root}")
    got = by_id(cells)
    assert sorted(got) == ["00001", "00002", "00012", "00013"]
    assert got["00012"].label == "nuclear_membrane"
    assert got["00012"].path == root / "specimen_s2" / "NuMem" / "00012.png"
    assert got["00012"].intensity == "positive" and got["00002"].intensity == "intermediate"
    assert list(cells.specimens) == ["s1", "s1", "s2", "s3"]
    assert got["00001"].mask is None


def test_i3a_csv_file_given_directly(tmp_path, images):
    root = tmp_path / "i3a"
    images.png(root / "img" / "00007.png")
    images.text(root / "meta.csv", "Image ID,Image class\n7,Centromere\n")
    cells = open_dataset(f"i3a:{root / 'meta.csv'}")
    assert [(c.id, c.label) for c in cells.cells] == [("00007", "centromere")]


def test_i3a_bare_path_is_detected(tmp_path, images):
    root = tmp_path / "i3a"
    images.png(root / "00001.png")
    images.text(root / "gt.csv", "Image ID,Image class\n1,Golgi\n")
    cells = open_dataset(str(root))
    assert cells.name.startswith("i3a:")
    assert cells.cells[0].label == "golgi"


# ============================================================================== ICPR 2012

ICPR_TRAIN = [
    (1, "homogeneous"),
    (2, "fine speckled"),
    (3, "coarse speckled"),
    (4, "nucleolar"),
    (5, "centromere"),
    (6, "cytoplasmatic"),
]
ICPR_TEST = [(7, "centromere"), (8, "cytoplasmatic"), (9, "Coarse Speckled")]


def make_icpr2012(root: Path, images, *, header: bool = True, subfolders: bool = True) -> Path:
    tr = root / "training" if subfolders else root
    te = root / "test" if subfolders else root
    for num, _ in ICPR_TRAIN:
        images.png(tr / f"{num:03d}.png", seed=num)
    for num, _ in ICPR_TEST:
        images.png(te / f"{num:03d}.png", seed=num)
    images.png(tr / "001_Mask.png", np.full((24, 24), 255, np.uint8))
    images.text(
        root / "gt_training.csv", ("ID;pattern\n" if header else "") + "".join(f"{n};{c}\n" for n, c in ICPR_TRAIN)
    )
    images.text(root / "gt_test.csv", "".join(f"{n};{c}\n" for n, c in ICPR_TEST))
    images.text(
        root / "training.csv",
        "ID;intensity;width;height\n"
        + "".join(f"{n};{'positive' if n % 2 else 'intermediate'};24;24\n" for n, _ in ICPR_TRAIN),
    )
    return root


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("subfolders", [True, False])
def test_icpr2012(tmp_path, images, header, subfolders):
    root = make_icpr2012(tmp_path / "icpr", images, header=header, subfolders=subfolders)
    cells = open_dataset(f"icpr2012:{root}")
    assert len(cells) == 9
    assert len(cells.subsets["train"]) == 6 and len(cells.subsets["test"]) == 3
    assert set(cells.subsets) == {"train", "test"}
    assert cells.classes == [
        "homogeneous",
        "coarse_speckled",
        "fine_speckled",
        "nucleolar",
        "centromere",
        "cytoplasmatic",
    ]
    got = by_id(cells)
    assert got["train/002"].label == "fine_speckled" and got["train/006"].label == "cytoplasmatic"
    assert got["test/009"].label == "coarse_speckled"
    assert got["train/001"].intensity == "positive" and got["train/002"].intensity == "intermediate"
    assert got["test/007"].intensity is None
    assert got["train/001"].mask is not None and got["train/001"].mask.name == "001_Mask.png"
    assert got["train/003"].mask is None
    assert [cells.cells[i].split for i in cells.subsets["test"]] == ["test"] * 3
    if subfolders:
        assert got["test/008"].path == root / "test" / "008.png"


def test_icpr2012_as_the_contest_distributes_it(tmp_path, images, capsys):
    """training/ and test/ each with its gt_*.csv and NNN_mask.png beside each cell, and the top-level cells.csv
    naming each cell's field image (its specimen) and intensity."""
    root = tmp_path / "ICPR2012"
    for split, gt, rows in (("training", "gt_training.csv", ICPR_TRAIN), ("test", "gt_test.csv", ICPR_TEST)):
        for num, _ in rows:
            images.png(root / split / f"{num:03d}.png", seed=num)
            images.png(root / split / f"{num:03d}_mask.png", np.full((24, 24), 255, np.uint8))
        images.text(root / split / gt, "ID;pattern\n" + "".join(f"{n};{c}\n" for n, c in rows))
    header = "ICPR2012Contest_Cell_ID;Set;Image;Intensity;Original_cell_ID;Cell_class\n"
    lines = [f"{n};training;{1 + n % 2};{'positive' if n < 4 else 'intermediate'};{n};{c}\n" for n, c in ICPR_TRAIN]
    lines += [f"{n};test;{3 + n % 2};positive;{n};{c}\n" for n, c in ICPR_TEST]
    images.text(root / "cells.csv", header + "".join(lines))
    for spec in (f"icpr2012:{root}", str(root)):  # named, or recognised from the top folder
        cells = open_dataset(spec)
        assert len(cells) == 9 and len(cells.subsets["train"]) == 6 and len(cells.subsets["test"]) == 3
        got = by_id(cells)
        assert got["train/001"].specimen == "field-2" and got["train/002"].specimen == "field-1"
        assert got["test/008"].specimen == "field-3" and got["test/008"].intensity == "positive"
        assert got["train/005"].intensity == "intermediate"
        assert all(c.mask is not None and c.mask.name.endswith("_mask.png") for c in cells.cells)
    images.text(root / "cells.csv", "ICPR2012Contest_Cell_ID;Set;Image\nx;training;1\n")
    with pytest.raises(Hep2Error, match="line 2: expected a cell ID and a set"):
        open_dataset(f"icpr2012:{root}")


def test_icpr2012_bare_path_is_detected(tmp_path, images):
    root = make_icpr2012(tmp_path / "icpr", images)
    cells = open_dataset(str(root))
    assert cells.name == f"icpr2012:{root}"
    assert len(cells) == 9


# ============================================================================== folder


def make_folder(root: Path, images) -> Path:
    images.png(root / "Coarse Speckled" / "a.png", seed=1)
    images.tiff16(root / "Coarse Speckled" / "b.tif", seed=2)
    images.jpeg(root / "fine-speckled" / "c.jpg", seed=3)
    images.bmp(root / "fine-speckled" / "d.bmp", seed=4)
    images.png(root / "fine-speckled" / "d_mask.png", np.full((24, 24), 255, np.uint8))
    images.png(root / "Homogenous" / "deeper" / "e.png", seed=5)
    images.text(root / "Homogenous" / "notes.txt", "not an image, ignored")
    return root


def test_folder_mixed_formats_and_class_names(tmp_path, images):
    root = make_folder(tmp_path / "cells", images)
    cells = open_dataset(f"folder:{root}")
    assert cells.classes == ["homogeneous", "coarse_speckled", "fine_speckled"]
    assert class_counts(cells) == {"homogeneous": 1, "coarse_speckled": 2, "fine_speckled": 2}
    got = by_id(cells)
    assert sorted(got) == [
        "Coarse Speckled/a.png",
        "Coarse Speckled/b.tif",
        "Homogenous/deeper/e.png",
        "fine-speckled/c.jpg",
        "fine-speckled/d.bmp",
    ]
    assert got["fine-speckled/d.bmp"].mask == root / "fine-speckled" / "d_mask.png"
    assert got["Coarse Speckled/a.png"].mask is None
    assert cells.specimens is None
    assert list(cells.subsets) == ["all"]


def test_folder_specimens_csv(tmp_path, images):
    root = make_folder(tmp_path / "cells", images)
    images.text(
        root / "specimens.csv",
        "path,specimen,intensity\n"
        "Coarse Speckled/a.png,p1,positive\nCoarse Speckled/b.tif,p1,positive\n"
        "fine-speckled/c.jpg,p2,intermediate\nd.bmp,p2,\n"  # a unique file name is enough
        "Homogenous/deeper/e.png,p3,positive\n",
    )
    cells = open_dataset(f"folder:{root}")
    got = by_id(cells)
    assert [got[k].specimen for k in sorted(got)] == ["p1", "p1", "p3", "p2", "p2"]
    assert got["fine-speckled/c.jpg"].intensity == "intermediate"
    assert got["fine-speckled/d.bmp"].intensity is None
    assert sorted(set(cells.specimens)) == ["p1", "p2", "p3"]


def test_folder_train_test_subfolders(tmp_path, images):
    root = tmp_path / "cells"
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("Nucleolar", "centromere"):
            for i in range(n):
                images.png(root / split / cls / f"{i}.png", seed=i)
    cells = open_dataset(f"folder:{root}")
    assert len(cells) == 10
    assert set(cells.subsets) == {"train", "test"}
    assert class_counts(cells, "train") == {"nucleolar": 3, "centromere": 3}
    assert class_counts(cells, "test") == {"nucleolar": 2, "centromere": 2}
    assert {cells.cells[i].split for i in cells.subsets["test"]} == {"test"}
    assert by_id(cells)["train/Nucleolar/0.png"].label == "nucleolar"


def test_folder_layout_as_labs_keep_it(tmp_path, images):
    """Training/ and Testing/, system folders, a linked well folder, mask-like names, spellings of one class,
    specimen IDs that restart in each class: read as meant, or named among the problems."""
    import os

    root = tmp_path / "cells"
    for split in ("Training", "Testing"):
        for cls in ("Fine Speckled", "fine-speckled", "Homogène"):
            images.png(root / split / cls / "w1" / f"{cls[:2]}1.png", seed=1)
    images.png(root / "Training" / "Fine Speckled" / ".thumbnails" / "t.png", seed=2)  # system files
    images.png(root / "Training" / "Homogène" / "@eaDir" / "SYNOPHOTO_THUMB.png", seed=3)
    images.png(tmp_path / "elsewhere" / "w9" / "x.png", seed=4)
    os.symlink(tmp_path / "elsewhere" / "w9", root / "Training" / "Homogène" / "w9")  # a linked well
    images.png(root / "Training" / "Homogène" / "w1" / "Ho1-mask.png", np.full((24, 24), 255, np.uint8))
    images.png(root / "Training" / "Homogène" / "w1" / "Ho1_mask.PNG", np.full((24, 24), 255, np.uint8))
    images.png(root / "Extra nucleolar" / "n.png", seed=5)  # beside the splits
    images.text(
        root / "specimens.csv",
        "path,specimen\n"
        + "".join(
            f"{c.as_posix()},{'1' if 'w1' in c.as_posix() else '9'}\n"
            for c in (
                p.relative_to(root)
                for p in sorted(root.rglob("*.png"))
                if "mask" not in p.name and "@" not in str(p) and ".thumb" not in str(p) and "Extra" not in str(p)
            )
        ),
    )
    cells = open_dataset(f"folder:{root}")
    assert set(cells.subsets) == {"train", "test"} and cells.classes == ["homogeneous", "fine_speckled"]
    ids = sorted(by_id(cells))
    assert "Training/Homogène/w9/x.png" in ids  # the linked folder is read
    assert not any("thumb" in i.lower() or "@" in i for i in ids)  # system files are not
    assert by_id(cells)["Training/Homogène/w1/Ho1.png"].mask.name == "Ho1_mask.PNG"
    assert "Training/Homogène/w1/Ho1-mask.png" in ids  # read as a cell, and said so
    problems = "\n".join(cells.problems)
    assert "1 folder beside Testing, Training is not read (first: Extra nucleolar)" in problems
    assert "folders 'Fine Speckled', 'fine-speckled' are read as one class, fine_speckled" in problems
    assert "1 images whose names say mask are read as cells (first: Training/Homogène/w1/Ho1-mask.png)" in problems
    assert "specimen IDs hold cells of several classes (first: '1': " in problems


def test_manifest_rows_listed_twice_are_named(tmp_path, images):
    images.png(tmp_path / "a.png", seed=1)
    images.png(tmp_path / "b.png", seed=2)
    images.text(tmp_path / "m.csv", "path,label\na.png,Homogeneous\nb.png,homogenous\na.png,nucleolar\n")
    cells = open_dataset(f"manifest:{tmp_path / 'm.csv'}")
    assert len(cells) == 3
    assert any(
        f"{tmp_path / 'a.png'} is listed 2 times (lines 2, 4) with different labels (homogeneous, nucleolar)" in p
        for p in cells.problems
    )
    assert any("labels 'Homogeneous', 'homogenous' are read as one class" in p for p in cells.problems)
    images.text(tmp_path / "m.csv", "path,label\na.png,Homogeneous\nb.png,homogeneous\n")  # case alone: fine
    assert not open_dataset(f"manifest:{tmp_path / 'm.csv'}").problems


def test_specimen_columns_paths_and_masks_as_labs_write_them(tmp_path, images):
    from hep2.data.summary import summarize

    for i, cls in enumerate(("homogeneous", "nucleolar")):
        images.png(tmp_path / "w" / cls / "a.png", seed=i)
        images.png(tmp_path / "w" / cls / "b.png", seed=i + 5)
    images.text(
        tmp_path / "m.csv",
        "Path,Label,Patient ID\n"
        + "".join(
            f"w\\{c}\\{f},{c},P{k}\n" for k, c in enumerate(("homogeneous", "nucleolar")) for f in ("a.png", "b.png")
        ),
    )
    cells = open_dataset(f"manifest:{tmp_path / 'm.csv'}")  # Windows paths, a patient column
    assert len(cells) == 4 and sorted(set(cells.specimens)) == ["P0", "P1"]
    root = tmp_path / "w"
    images.text(root / "specimens.csv", "path,well\nhomogeneous/a.png,1\nhomogeneous/b.png,\na.png,2\n")
    with pytest.raises(
        Hep2Error,
        match=r"'a.png' names no image under .* \(paths are relative to it, as "
        r"'homogeneous/a.png' is; the file name a.png matches 2 images",
    ):
        open_dataset(f"folder:{root}")
    images.text(root / "specimens.csv", "path,well\nhomogeneous/a.png,1\nhomogeneous/b.png,\nhomogeneous/a.png,3\n")
    problems = " ".join(open_dataset(f"folder:{root}").problems)
    assert "1 images have several rows in" in problems and "(first: homogeneous/a.png, lines 2, 4)" in problems
    assert "1 images have an empty specimen in" in problems and "(first: homogeneous/b.png)" in problems
    assert "2 of 4 images have no row" in problems
    # a name written with 'ü' as two characters (macOS) matches its row written with one
    import unicodedata

    images.png(root / "nucleolar" / unicodedata.normalize("NFD", "Müller.png"), seed=9)
    images.text(root / "specimens.csv", "path,well\n" + unicodedata.normalize("NFC", "nucleolar/Müller.png") + ",7\n")
    got = {unicodedata.normalize("NFC", c.id): c.specimen for c in open_dataset(f"folder:{root}").cells}
    assert got["nucleolar/Müller.png"] == "7"
    # a mask of another size stops data summary as it stops hep2 run
    images.png(root / "nucleolar" / "a_mask.png", np.full((5, 7), 255, np.uint8))
    with pytest.raises(Hep2Error, match=r"a_mask.png is 7x5 but its image .*a.png is"):
        summarize(open_dataset(f"folder:{root}"))


def test_folder_bare_path_is_detected(tmp_path, images):
    root = make_folder(tmp_path / "cells", images)
    cells = open_dataset(str(root))
    assert cells.name == f"folder:{root}"
    assert len(cells) == 5


# ============================================================================== manifest


def test_manifest_relative_paths_and_splits(tmp_path, images, monkeypatch):
    data = tmp_path / "data"
    images.png(data / "imgs" / "a.png", seed=1)
    images.tiff16(data / "imgs" / "b.tif", seed=2)
    images.png(tmp_path / "elsewhere" / "c.png", seed=3)
    images.png(data / "d.png", seed=4)
    manifest = images.text(
        data / "list.csv",
        "path,label,specimen,intensity,split\n"
        "imgs/a.png,Coarse Speckled,s1,positive,train\n"
        "imgs/b.tif,nucleolar,s1,intermediate,train\n"
        "../elsewhere/c.png,Homogenous,s2,,test\n"
        f"{data / 'd.png'},golgi,s2,positive,Test\n",
    )
    monkeypatch.chdir(tmp_path / "elsewhere")  # relative paths are relative to the CSV, not the cwd
    cells = open_dataset(f"manifest:{manifest}")
    assert len(cells) == 4
    assert [c.label for c in cells.cells] == ["coarse_speckled", "nucleolar", "homogeneous", "golgi"]
    assert [c.path for c in cells.cells] == [
        data / "imgs" / "a.png",
        data / "imgs" / "b.tif",
        tmp_path / "elsewhere" / "c.png",
        data / "d.png",
    ]
    assert list(cells.specimens) == ["s1", "s1", "s2", "s2"]
    assert [c.intensity for c in cells.cells] == ["positive", "intermediate", None, "positive"]
    assert set(cells.subsets) == {"train", "test"}
    assert cells.subsets["train"].tolist() == [0, 1] and cells.subsets["test"].tolist() == [2, 3]


def test_manifest_minimal_columns_and_bare_path(tmp_path, images):
    images.png(tmp_path / "x.png")
    images.png(tmp_path / "y.png", seed=1)
    manifest = images.text(tmp_path / "m.csv", "Path,Class\nx.png,fine speckled\ny.png,fine-speckled\n")
    cells = open_dataset(str(manifest))
    assert cells.name == f"manifest:{manifest}"
    assert [c.label for c in cells.cells] == ["fine_speckled", "fine_speckled"]
    assert cells.specimens is None and list(cells.subsets) == ["all"]


# ============================================================================== class names


@pytest.mark.parametrize(
    "raw, want",
    [
        ("Coarse Speckled", "coarse_speckled"),
        ("coarse-speckled", "coarse_speckled"),
        ("CoarseSpeckled", "coarse_speckled"),
        ("fine-speckled", "fine_speckled"),
        ("Fine_Speckled", "fine_speckled"),
        ("NuMem", "nuclear_membrane"),
        ("NUMEM", "nuclear_membrane"),
        ("Nuclear Membrane", "nuclear_membrane"),
        ("Homogenous", "homogeneous"),
        ("HOMOGENEOUS", "homogeneous"),
        (" homogeneous ", "homogeneous"),
        ("Cytoplasmic", "cytoplasmatic"),
        ("Golgi", "golgi"),
        ("Centromere", "centromere"),
        ("MitoticSpindle", "mitotic_spindle"),
        ("Speckled", "speckled"),
    ],
)
def test_class_name_normalisation(raw, want):
    assert normalise_class(raw, known_only=True) == want


def test_class_name_unknown_and_empty():
    assert normalise_class("My Own Pattern") == "my_own_pattern"  # folder/manifest: any name goes
    with pytest.raises(Hep2Error, match=r"unknown class name 'Blob'.* in x\.csv, line 3"):
        normalise_class("Blob", known_only=True, where=" in x.csv, line 3")
    with pytest.raises(Hep2Error, match="empty class name"):
        normalise_class("  ")
    assert snake_case("Coarse  Speckled!") == "coarse_speckled"


def test_intensity_normalisation():
    assert normalise_intensity("Positive") == "positive"
    assert normalise_intensity("intermediate") == "intermediate"
    assert normalise_intensity("") is None and normalise_intensity(None) is None
    with pytest.raises(Hep2Error, match="'bright'"):
        normalise_intensity("bright")


def test_order_classes_known_first_then_alphabetical():
    assert order_classes(["zeta", "centromere", "alpha", "homogeneous"]) == [
        "homogeneous",
        "centromere",
        "alpha",
        "zeta",
    ]


# ============================================================================== CellSet


def test_cellset_subset_drop_and_splits(tmp_path):
    cells = [
        Cell(str(i), tmp_path / f"{i}.png", lab, split=sp)
        for i, (lab, sp) in enumerate(
            [("nucleolar", "train"), ("golgi", "train"), ("nucleolar", "test"), ("golgi", "test")]
        )
    ]
    cs = CellSet(
        "x",
        cells,
        subsets={
            "train": np.array([0, 1]),
            "test": np.array([2, 3]),
            "k/train": np.array([1]),
            "k/test": np.array([2, 3]),
        },
    )
    assert cs.classes == ["nucleolar", "golgi"]
    assert cs.y.tolist() == [0, 1, 0, 1]
    assert cs.official_splits() == ["k"]
    assert cs.subset("test").ids == ["2", "3"]
    assert cs.subset(np.array([True, False, False, True])).ids == ["0", "3"]
    dropped = cs.drop([tmp_path / "1.png"])
    assert dropped.ids == ["0", "2", "3"]
    assert dropped.subsets["train"].tolist() == [0]
    assert dropped.subsets["test"].tolist() == [1, 2]
    assert dropped.subsets["k/train"].tolist() == []
    with pytest.raises(Hep2Error, match="no split 'val'"):
        cs.subset("val")


# ============================================================================== synthetic

SYNTHETIC = Path(__file__).resolve().parents[1] / "src" / "hep2" / "data" / "synthetic.py"


@pytest.mark.skipif(not SYNTHETIC.exists(), reason="src/hep2/data/synthetic.py is not written yet")
def test_synthetic_spec(hep2_cache):
    cells = open_dataset("synthetic:2")
    assert cells.name == "synthetic:2"
    assert cells.classes == SNP_CLASSES
    assert class_counts(cells) == {c: 2 for c in SNP_CLASSES}
    assert cells.specimens is not None
    assert all(c.path.is_relative_to(hep2_cache) for c in cells.cells)  # generated into the cache
    again = open_dataset("synthetic:2")
    assert again.paths == cells.paths and again.fingerprint() == cells.fingerprint()


def test_synthetic_spec_bad_count():
    with pytest.raises(Hep2Error, match="synthetic:N"):
        open_dataset("synthetic:many")


# ============================================================================== naming errors


def test_open_dataset_missing_path_and_unknown_kind(tmp_path):
    with pytest.raises(Hep2Error, match=f"{tmp_path / 'nope'}.* does not exist"):
        open_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(Hep2Error, match="unknown dataset kind 'zarr'"):
        open_dataset("zarr:/somewhere/cells")
