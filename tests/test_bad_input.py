"""Every bad input of the issue: reported with the file or value named and what to do, through the
API (Hep2Error) and the command line (exit status 2, no traceback); --skip-bad goes on and lists it."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hep2.cli import main
from hep2.data import Cell, CellSet, Preprocess, load_images, open_dataset, read_image, summarize
from hep2.errors import Hep2Error


def run_cli(capsys, *argv):
    code = main(["data", "summary", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def png_bytes(h=64, w=64, seed=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


# name of the bad file -> its bytes
BAD_FILES = {
    "truncated.png": lambda: png_bytes()[: len(png_bytes()) // 2],
    "truncated.jpg": lambda: jpeg_bytes()[: len(jpeg_bytes()) // 2],
    "text.png": lambda: b"this is a text file, not a PNG image\n" * 3,
    "text.tif": lambda: b"not a TIFF either\n" * 3,
    "garbage.bmp": lambda: b"BM" + bytes(range(256)) * 2,
    "empty.png": lambda: b"",
}


def folder_with_bad(tmp_path: Path, images, bad_name: str) -> tuple[Path, Path]:
    root = tmp_path / "cells"
    for i in range(2):
        images.png(root / "nucleolar" / f"{i}.png", seed=i)
        images.png(root / "golgi" / f"{i}.png", seed=10 + i)
    bad = root / "golgi" / bad_name
    bad.write_bytes(BAD_FILES[bad_name]())
    return root, bad


# ------------------------------------------------------------------------------ bad image files


@pytest.mark.parametrize("bad_name", sorted(BAD_FILES))
def test_bad_image_api(tmp_path, images, bad_name):
    root, bad = folder_with_bad(tmp_path, images, bad_name)
    with pytest.raises(Hep2Error) as e:
        read_image(bad)
    msg = str(e.value)
    assert str(bad) in msg and "--skip-bad" in msg
    assert ("empty" in msg) if bad_name == "empty.png" else ("corrupt" in msg)
    cells = open_dataset(f"folder:{root}")  # the reader lists files; decoding finds the bad one
    assert len(cells) == 5
    with pytest.raises(Hep2Error, match=str(bad)):
        summarize(cells)
    with pytest.raises(Hep2Error, match=str(bad)):
        load_images(cells, Preprocess(size=16))


@pytest.mark.parametrize("bad_name", sorted(BAD_FILES))
def test_bad_image_cli(tmp_path, images, capsys, bad_name):
    root, bad = folder_with_bad(tmp_path, images, bad_name)
    code, out, err = run_cli(capsys, f"folder:{root}")
    assert code == 2
    assert out == ""
    assert err.startswith("hep2: error: ") and str(bad) in err and "--skip-bad" in err


@pytest.mark.parametrize("bad_name", ["truncated.png", "text.png", "empty.png"])
def test_skip_bad_json_and_text(tmp_path, images, capsys, bad_name):
    root, bad = folder_with_bad(tmp_path, images, bad_name)
    code, out, _ = run_cli(capsys, f"folder:{root}", "--format", "json", "--skip-bad")
    assert code == 0
    s = json.loads(out)
    assert s["skipped"]["count"] == 1
    assert len(s["skipped"]["files"]) == 1 and str(bad) in s["skipped"]["files"][0]
    assert s["splits"]["all"] == {"total": 4, "classes": {"nucleolar": 2, "golgi": 2}}
    code, out, _ = run_cli(capsys, f"folder:{root}", "--skip-bad")
    assert code == 0
    assert "skipped (--skip-bad): 1" in out and str(bad) in out


def test_skip_bad_lists_several_files(tmp_path, images, capsys):
    root, bad1 = folder_with_bad(tmp_path, images, "text.png")
    bad2 = root / "nucleolar" / "empty.png"
    bad2.write_bytes(b"")
    code, out, _ = run_cli(capsys, root, "--format", "json", "--skip-bad")
    assert code == 0
    s = json.loads(out)
    assert s["skipped"]["count"] == 2
    assert sorted(f for f in s["skipped"]["files"] for b in (bad1, bad2) if str(b) in f) == sorted(
        s["skipped"]["files"]
    )
    assert s["splits"]["all"]["total"] == 4


def test_load_images_skip_bad(tmp_path, images, monkeypatch):
    monkeypatch.setenv("HEP2_CACHE", str(tmp_path / "cache"))
    root, bad = folder_with_bad(tmp_path, images, "truncated.png")
    cells = open_dataset(f"folder:{root}")
    for _ in range(2):  # the second call reads the cache, with the same result
        arr, kept = load_images(cells, Preprocess(size=16), skip_bad=True)
        assert arr.shape == (4, 16, 16) and len(kept) == 4
        assert bad not in kept.paths
        assert len(kept.skipped) == 1 and str(bad) in kept.skipped[0]
        assert kept.subsets["all"].tolist() == [0, 1, 2, 3]
    with pytest.raises(Hep2Error, match=str(bad)):  # cached bad files still fail without skip_bad
        load_images(cells, Preprocess(size=16))


def test_load_images_skip_bad_in_a_copy_of_the_same_files(tmp_path, images, monkeypatch):
    """The cache is keyed by content; a copy at another path must still drop its own bad file."""
    monkeypatch.setenv("HEP2_CACHE", str(tmp_path / "cache"))
    a, bad_a = folder_with_bad(tmp_path / "a", images, "text.png")
    b, bad_b = folder_with_bad(tmp_path / "b", images, "text.png")
    load_images(open_dataset(f"folder:{a}"), Preprocess(size=16), skip_bad=True)
    arr, kept = load_images(open_dataset(f"folder:{b}"), Preprocess(size=16), skip_bad=True)
    assert len(kept) == 4 and arr.shape[0] == 4
    assert bad_b not in kept.paths
    assert str(bad_b) in kept.skipped[0]


def test_load_images_missing_file(tmp_path, images, monkeypatch):
    monkeypatch.setenv("HEP2_CACHE", str(tmp_path / "cache"))
    good = images.png(tmp_path / "good.png")
    gone = tmp_path / "gone.png"
    cells = CellSet("x", [Cell("good", good, "golgi"), Cell("gone", gone, "golgi")])
    with pytest.raises(Hep2Error, match=f"{gone}"):
        load_images(cells, Preprocess(size=8))
    arr, kept = load_images(cells, Preprocess(size=8), skip_bad=True)
    assert kept.ids == ["good"] and arr.shape == (1, 8, 8)


def test_corrupt_mask_is_named(tmp_path, images, monkeypatch):
    monkeypatch.setenv("HEP2_CACHE", str(tmp_path / "cache"))
    img = images.png(tmp_path / "c" / "golgi" / "1.png")
    (tmp_path / "c" / "golgi" / "1_Mask.png").write_text("no mask here")
    cells = open_dataset(f"folder:{tmp_path / 'c'}")
    assert cells.cells[0].path == img
    with pytest.raises(Hep2Error, match="1_Mask.png"):
        load_images(cells, Preprocess(size=8))


def test_unreadable_image_file_is_named(tmp_path, images, monkeypatch, capsys):
    root, _ = folder_with_bad(tmp_path, images, "text.png")
    locked = root / "nucleolar" / "0.png"
    real_open = Image.open

    def fake_open(fp, *a, **k):  # what an unreadable file does for a non-root user
        if Path(fp) == locked:
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *a, **k)

    monkeypatch.setattr(Image, "open", fake_open)
    with pytest.raises(Hep2Error, match=f"cannot read image file {locked}: permission denied"):
        read_image(locked)


# ------------------------------------------------------------------------------ unreadable folders


def test_unreadable_folder_chmod(tmp_path, images, capsys):
    root, _ = folder_with_bad(tmp_path, images, "text.png")
    locked = root / "golgi"
    locked.chmod(0)
    try:
        try:
            os.listdir(locked)
        except PermissionError:
            pass
        else:
            pytest.skip(
                "running as root: chmod 000 does not stop reading a folder (test_unreadable_folder_simulated covers it)"
            )
        code, out, err = run_cli(capsys, f"folder:{root}")
        assert code == 2 and str(locked) in err and "permission" in err
    finally:
        locked.chmod(0o755)


@pytest.fixture
def deny(monkeypatch):
    """deny(path): listing that folder raises PermissionError, as for an unreadable folder."""
    real_iterdir = Path.iterdir
    denied: set[Path] = set()

    def iterdir(self):
        if self in denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    return denied.add


@pytest.mark.parametrize("which", ["root", "class folder"])
def test_unreadable_folder_simulated(tmp_path, images, capsys, deny, which):
    root, _ = folder_with_bad(tmp_path, images, "text.png")
    locked = root if which == "root" else root / "golgi"
    deny(locked)
    with pytest.raises(Hep2Error, match=f"cannot read folder {locked}: permission denied"):
        open_dataset(f"folder:{root}")
    code, out, err = run_cli(capsys, f"folder:{root}")
    assert code == 2 and f"cannot read folder {locked}: permission denied" in err


def test_unreadable_i3a_subfolder_simulated(tmp_path, images, deny):
    root = tmp_path / "i3a"
    images.png(root / "a" / "00001.png")
    images.png(root / "b" / "00002.png")
    images.text(root / "gt.csv", "Image ID,Image class\n1,Golgi\n2,Golgi\n")
    deny(root / "b")
    with pytest.raises(Hep2Error, match=f"cannot read folder {root / 'b'}"):
        open_dataset(f"i3a:{root}")


# ------------------------------------------------------------------------------ unknown class names


def i3a_set(root: Path, images, csv_text: str, ids=(1, 2, 3)) -> Path:
    for i in ids:
        images.png(root / f"{i:05d}.png", seed=i)
    images.text(root / "gt.csv", csv_text)
    return root


def test_unknown_class_i3a(tmp_path, images, capsys):
    root = i3a_set(tmp_path / "i3a", images, "Image ID,Image class\n1,Golgi\n2,Blob\n3,NuMem\n")
    with pytest.raises(Hep2Error, match=r"unknown class name 'Blob' in .*gt\.csv, line 3"):
        open_dataset(f"i3a:{root}")
    code, out, err = run_cli(capsys, f"i3a:{root}")
    assert code == 2 and "'Blob'" in err and str(root / "gt.csv") in err and "line 3" in err


def test_unknown_class_icpr2012(tmp_path, images, capsys):
    root = tmp_path / "icpr"
    for i in (1, 2):
        images.png(root / "training" / f"{i:03d}.png", seed=i)
    images.text(root / "gt_training.csv", "ID;pattern\n1;homogeneous\n2;squiggly\n")
    code, out, err = run_cli(capsys, f"icpr2012:{root}")
    assert code == 2
    assert "'squiggly'" in err and str(root / "gt_training.csv") in err and "line 3" in err


def test_i3a_short_row_is_named(tmp_path, images, capsys):
    root = i3a_set(tmp_path / "i3a", images, "Image ID,Image class\n1,Golgi\n2\n")
    with pytest.raises(Hep2Error, match=r"empty class name in .*gt\.csv, line 3"):
        open_dataset(f"i3a:{root}")
    code, out, err = run_cli(capsys, f"i3a:{root}")
    assert code == 2 and "line 3" in err


def test_i3a_non_numeric_id_is_named(tmp_path, images):
    root = i3a_set(tmp_path / "i3a", images, "Image ID,Image class\n1,Golgi\ncell-2,Golgi\n")
    with pytest.raises(Hep2Error, match=r"gt\.csv, line 3: image ID 'cell-2' is not a number"):
        open_dataset(f"i3a:{root}")


def test_csv_without_the_needed_columns(tmp_path, images):
    root = i3a_set(tmp_path / "i3a", images, "Name,Colour\n1,red\n")
    with pytest.raises(Hep2Error, match=r"gt\.csv: no id / label column"):
        open_dataset(f"i3a:{root}")


# ------------------------------------------------------------------------------ IDs without images


def test_i3a_id_without_image(tmp_path, images, capsys):
    root = i3a_set(tmp_path / "i3a", images, "Image ID,Image class\n1,Golgi\n9,Golgi\n2,Speckled\n", ids=(1, 2))
    with pytest.raises(Hep2Error, match=r"gt\.csv, line 3: image ID 9 has no image file 00009\.png"):
        open_dataset(f"i3a:{root}")
    code, out, err = run_cli(capsys, f"i3a:{root}")
    assert code == 2 and "00009.png" in err and "--skip-bad" in err
    code, out, _ = run_cli(capsys, f"i3a:{root}", "--format", "json", "--skip-bad")
    assert code == 0
    s = json.loads(out)
    assert s["skipped"]["count"] == 1 and "00009.png" in s["skipped"]["files"][0]
    assert s["splits"]["all"]["total"] == 2


def test_icpr2012_id_without_image(tmp_path, images, capsys):
    root = tmp_path / "icpr"
    images.png(root / "training" / "001.png")
    images.text(root / "gt_training.csv", "1;homogeneous\n5;nucleolar\n")
    code, out, err = run_cli(capsys, f"icpr2012:{root}")
    assert code == 2
    assert str(root / "gt_training.csv") in err and "ID 5" in err and "005.png" in err
    code, out, _ = run_cli(capsys, f"icpr2012:{root}", "--skip-bad")
    assert code == 0 and "skipped (--skip-bad): 1" in out and "005.png" in out


def test_manifest_path_without_image(tmp_path, images, capsys):
    images.png(tmp_path / "a.png")
    m = images.text(tmp_path / "m.csv", "path,label\na.png,golgi\nmissing.png,golgi\n")
    code, out, err = run_cli(capsys, f"manifest:{m}")
    assert code == 2 and str(tmp_path / "missing.png") in err and "line 3" in err


def test_specimens_csv_names_no_image(tmp_path, images):
    root, _ = folder_with_bad(tmp_path, images, "text.png")
    images.text(root / "specimens.csv", "path,specimen\nnucleolar/0.png,s1\nnucleolar/nope.png,s2\n")
    with pytest.raises(Hep2Error, match=r"specimens\.csv, line 3: 'nucleolar/nope.png' names no image"):
        open_dataset(f"folder:{root}")


# ------------------------------------------------------------------------------ empty datasets


def test_empty_datasets(tmp_path, images, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = tmp_path / "no_images"
    (no_images / "golgi").mkdir(parents=True)
    images.text(no_images / "golgi" / "readme.txt", "nothing here")
    manifest = images.text(tmp_path / "m" / "m.csv", "path,label\n")
    i3a = images.text(tmp_path / "i3a" / "gt.csv", "Image ID,Image class\n")
    for spec, named in [
        (f"folder:{empty}", empty),
        (f"folder:{no_images}", no_images),
        (f"manifest:{manifest}", manifest),
        (f"i3a:{i3a.parent}", i3a.parent),
    ]:
        with pytest.raises(Hep2Error, match=str(named)):
            open_dataset(spec)
        code, out, err = run_cli(capsys, spec)
        assert code == 2 and str(named) in err and ("no images" in err or "no cell images" in err)


def test_missing_path_and_unknown_kind_cli(tmp_path, capsys):
    code, out, err = run_cli(capsys, f"folder:{tmp_path / 'nowhere'}")
    assert code == 2 and str(tmp_path / "nowhere") in err and "does not exist" in err
    code, out, err = run_cli(capsys, tmp_path / "nowhere")
    assert code == 2 and str(tmp_path / "nowhere") in err
    code, out, err = run_cli(capsys, "zarr:cells")
    assert code == 2 and "unknown dataset kind 'zarr'" in err


def test_skip_bad_when_nothing_is_left(tmp_path, capsys):
    root = tmp_path / "cells"
    (root / "golgi").mkdir(parents=True)
    (root / "golgi" / "a.png").write_bytes(b"")
    code, out, err = run_cli(capsys, f"folder:{root}", "--skip-bad")
    assert code == 2 and "no readable image left" in err


# ------------------------------------------------------------------------------ SNPHEp-2 with damage


@pytest.fixture
def damaged_snphep2(tmp_path, snphep2_root):
    """A SNPHEp-2 copy (symlinks) whose train/123.png is not an image and train/124.png is missing."""
    root = tmp_path / "snp"
    root.mkdir()
    (root / "split_information").symlink_to(snphep2_root / "split_information")
    (root / "test").symlink_to(snphep2_root / "test")
    (root / "train").mkdir()
    for p in (snphep2_root / "train").iterdir():
        if p.name not in ("123.png", "124.png"):
            (root / "train" / p.name).symlink_to(p)
    (root / "train" / "123.png").write_text("not a png")
    return root


def test_snphep2_damaged(damaged_snphep2, capsys):
    root = damaged_snphep2
    code, out, err = run_cli(capsys, f"snphep2:{root}")
    assert code == 2 and str(root / "train" / "124.png") in err and "missing" in err
    code, out, _ = run_cli(capsys, f"snphep2:{root}", "--format", "json", "--skip-bad")
    assert code == 0
    s = json.loads(out)
    assert s["skipped"]["count"] == 2
    assert any(str(root / "train" / "124.png") in f for f in s["skipped"]["files"])
    assert any(str(root / "train" / "123.png") in f for f in s["skipped"]["files"])
    assert s["splits"]["train"]["total"] == 903
    assert s["splits"]["train"]["classes"]["fine_speckled"] == 175  # 123 and 124 are label 1
    assert s["splits"]["test"]["total"] == 979


def test_a_write_error_says_how_to_go_on_for_that_command(tmp_path, capsys):
    """A command without --resume is not told to rerun with it (it was, for predict, export, make-synthetic...)."""
    (tmp_path / "afile").write_text("not a folder")
    assert main(["data", "make-synthetic", str(tmp_path / "afile" / "syn"), "--per-class", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hep2: error: {tmp_path / 'afile'}") and "then run it again" in err
    assert "--resume" not in err and "Traceback" not in err


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("black.png", lambda: _png(np.zeros((40, 40))), "is blank (every pixel is 0): there is no cell in it"),
        ("white.png", lambda: _png(np.full((40, 40), 255)), "is blank (every pixel is 255)"),
        ("dot.png", lambda: _png([[7]]), "is 1x1 pixels: too small to hold a cell"),
    ],
)
def test_images_with_no_cell_in_them_are_named(tmp_path, images, capsys, name, data, message):
    """A blank or 1-pixel image was summarised as fine and classified (fine_speckled 0.95)."""
    root, _ = folder_with_bad(tmp_path, images, "empty.png")
    (root / "golgi" / "empty.png").unlink()
    bad = root / "golgi" / name
    bad.write_bytes(data())
    code, out, err = run_cli(capsys, f"folder:{root}")
    assert code == 2 and str(bad) in err and message in err and "--skip-bad" in err
    code, out, _ = run_cli(capsys, f"folder:{root}", "--format", "json", "--skip-bad")
    assert code == 0 and json.loads(out)["skipped"]["count"] == 1
    with pytest.raises(Hep2Error, match=message.split(":")[0].replace("(", r"\(").replace(")", r"\)")):
        load_images(open_dataset(f"folder:{root}"), Preprocess(size=16))


def test_an_empty_mask_is_named_and_gif_and_webp_cells_are_read(tmp_path, images, capsys):
    root, _ = folder_with_bad(tmp_path, images, "empty.png")
    (root / "golgi" / "empty.png").unlink()
    cell = np.random.default_rng(3).integers(0, 255, (40, 40), dtype=np.uint8)
    for fmt in ("GIF", "WEBP"):
        Image.fromarray(cell).save(
            root / "golgi" / f"c.{fmt.lower()}", fmt, **({"lossless": True} if fmt == "WEBP" else {})
        )
    cells = open_dataset(f"folder:{root}")
    assert sorted(c.id for c in cells.cells if c.label == "golgi") == [
        "golgi/0.png",
        "golgi/1.png",
        "golgi/c.gif",
        "golgi/c.webp",
    ]
    np.testing.assert_array_equal(read_image(root / "golgi" / "c.webp"), cell)
    (root / "golgi" / "0_mask.png").write_bytes(_png(np.zeros(read_image(root / "golgi" / "0.png").shape)))
    with pytest.raises(Hep2Error, match=r"0_mask.png marks no pixel of its image .*0.png \(it is all 0\)"):
        load_images(open_dataset(f"folder:{root}"), Preprocess(size=16))
