"""`hep2 ensemble`: figures from the members' predictions on shared splits, a model that `hep2
predict`, the web API and the Python API load, and clear errors for members that do not fit."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from hep2.cli import main
from hep2.data import Preprocess, load_images, open_dataset
from hep2.errors import Hep2Error
from hep2.pipeline.ensemble import make_ensemble
from hep2.pipeline.neighbours import cell_features
from hep2.pipeline.predict import Predictor


@pytest.fixture(scope="module")
def members(_session_cache, tmp_path_factory):
    """Two cv runs on the same splits of synthetic:6 with different methods and input sizes: the
    DCAE with its classifier (tiny preset, 32x32) and LBP + SVM (128x128)."""
    root = tmp_path_factory.mktemp("members")
    base = ["run", "synthetic:6", "--protocol", "cv", "--preset", "tiny", "--quiet"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEP2_CACHE", str(_session_cache))
        assert main([*base, "--set", "ae_epochs=1", "--set", "mlp_epochs=3", "--out", str(root / "dcae")]) == 0
        assert main([*base, "--method", "lbp-svm", "--out", str(root / "lbp")]) == 0
        assert main(["ensemble", str(root / "dcae"), str(root / "lbp"), "--out", str(root / "ens"), "--quiet"]) == 0
        assert (
            main(
                [
                    "ensemble",
                    str(root / "dcae"),
                    str(root / "lbp"),
                    "--neighbours",
                    "3",
                    "--out",
                    str(root / "nb"),
                    "--quiet",
                ]
            )
            == 0
        )
        cells = open_dataset("synthetic:6")
    batch = root / "batch"  # one folder: one batch for a transductive model
    batch.mkdir()
    for i in range(0, len(cells), 3):
        shutil.copy(cells.cells[i].path, batch / f"{cells.cells[i].label}_{cells.cells[i].path.name}")
    return root, sorted(batch.iterdir())


def _rows(run):
    with open(run / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_figures_are_the_equal_weight_average_of_the_members_predictions(members):
    root, _ = members
    ra, rb, re = _rows(root / "dcae"), _rows(root / "lbp"), _rows(root / "ens")
    pcols = [k for k in ra[0] if k.startswith("p_")]
    hits = {}
    assert len(ra) == len(rb) == len(re) == 30
    for x, z, e in zip(ra, rb, re):
        assert (x["split"], x["id"], x["true"]) == (z["split"], z["id"], z["true"]) == (e["split"], e["id"], e["true"])
        p = np.array([(float(x[k]) + float(z[k])) / 2 for k in pcols])
        np.testing.assert_allclose([float(e[k]) for k in pcols], p, atol=1e-5)
        assert e["predicted"] == pcols[int(p.argmax())][2:]
        hits.setdefault(x["split"], []).append(e["predicted"] == e["true"])
    m = json.loads((root / "ens" / "metrics.json").read_text())
    acc = {s: np.mean(v) for s, v in hits.items()}
    assert m["method"] == "ensemble" and m["protocol"] == "cv" and m["accuracy"]["per_split"] == pytest.approx(acc)
    assert m["accuracy"]["mean"] == pytest.approx(np.mean(list(acc.values())))
    assert [d["method"] for d in m["members"]] == ["dcae-mlp", "lbp-svm"]
    assert m["autoencoder_saw_test_images"] is True  # cv: the member's autoencoder saw every image
    report = (root / "ens" / "report.md").read_text()
    assert "equal-weight average of 2 runs" in report and str(root / "lbp") in report
    assert f"**{m['accuracy']['mean']:.4f} ± {m['accuracy']['std']:.4f}**" in report
    assert (root / "ens" / "confusion.png").stat().st_size > 0 and (root / "ens" / "report.html").is_file()


def test_the_model_averages_its_members_on_new_files(members, tmp_path, capsys):
    root, paths = members
    ens = Predictor(root / "ens")
    assert ens.method_name == "ensemble" and len(ens.members) == 2 and len(ens.preps) == 2
    rows, bad = ens.predict_files(paths)
    assert not bad and [r[0] for r in rows] == paths
    mean = (
        np.stack([r[2] for r in Predictor(root / "dcae").predict_files(paths)[0]])
        + np.stack([r[2] for r in Predictor(root / "lbp").predict_files(paths)[0]])
    ) / 2
    np.testing.assert_allclose(np.stack([r[2] for r in rows]), mean, atol=1e-6)
    # the command line gives the same
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(root / "ens"), *map(str, paths), "--out", str(out)]) == 0
    with open(out, newline="") as f:
        got = list(csv.DictReader(f))
    assert [g["predicted"] for g in got] == [r[1] for r in rows]
    # an unreadable file: listed once, the others classified by every member
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    rows2, bad = ens.predict_files([paths[0], broken, paths[1]], skip_bad=True)
    assert [r[0] for r in rows2] == [paths[0], paths[1]] and len(bad) == 1 and str(broken) in bad[0]
    np.testing.assert_allclose(np.stack([r[2] for r in rows2]), np.stack([r[2] for r in rows[:2]]), atol=1e-6)
    # members that see different input sizes cannot take one preprocessed array
    with pytest.raises(Hep2Error, match="preprocess images differently"):
        ens.predict_images(ens.load_files(paths)[0])


def test_the_web_api_serves_an_ensemble(members, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from hep2.web import create_app

    root, paths = members
    client = TestClient(create_app(root / "ens", tmp_path / "work"))
    r = client.post("/api/predict", files=[("files", (p.name, p.read_bytes(), "image/png")) for p in paths])
    assert r.status_code == 200, r.text
    rows, _ = Predictor(root / "ens").predict_files(paths)
    assert [x["pattern"] for x in r.json()["results"]] == [row[1] for row in rows]
    # a --neighbours model smooths over the upload, and says so
    client = TestClient(create_app(root / "nb", tmp_path / "work-nb"))
    assert client.get("/api/health").json()["neighbours"] == 3 and "Transductive model" in client.get("/").text
    r = client.post("/api/predict", files=[("files", (p.name, p.read_bytes(), "image/png")) for p in paths])
    want = Predictor(root / "nb").predict_files(paths)[0]
    got = [x["probabilities"] for x in r.json()["results"]]
    classes = Predictor(root / "nb").classes
    np.testing.assert_allclose([[g[c] for c in classes] for g in got], [row[2] for row in want], atol=1e-5)
    assert r.json()["summary"]["neighbours"] == 3
    # a zip of two wells: each smoothed on its own, as `hep2 predict` does with two folders
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, p in enumerate(paths):
            z.write(p, f"plate/well{i % 2}/{p.name}")
    r = client.post("/api/predict", files=[("files", ("plate.zip", buf.getvalue(), "application/zip"))])
    got = {x["filename"]: [x["probabilities"][c] for c in classes] for x in r.json()["results"]}
    nbp = Predictor(root / "nb")
    for w in (0, 1):
        want = nbp.predict_files(paths[w::2])[0]
        np.testing.assert_allclose(
            [got[f"plate.zip/plate/well{w}/{p.name}"] for p in paths[w::2]], [row[2] for row in want], atol=1e-5
        )
    folders = r.json()["summary"]["folders"]  # and each well's own call
    assert [f["folder"] for f in folders] == ["plate.zip/plate/well0", "plate.zip/plate/well1"]
    assert [f["n"] for f in folders] == [5, 5]
    runs = TestClient(create_app(root / "nb", tmp_path / "work-nb2", runs_root=root)).get("/runs").text
    assert "ensemble (transductive, 3 neighbours)" in runs
    assert "Transductive" in (root / "nb" / "report.md").read_text()
    assert "Transductive" not in (root / "ens" / "report.md").read_text()
    r = client.post("/api/predict", files=[("files", (p.name, p.read_bytes(), "image/png")) for p in paths[:2]])
    assert r.json()["summary"]["neighbours"] is None  # two cells: too few to smooth
    page = client.post("/predict", files=[("files", (p.name, p.read_bytes(), "image/png")) for p in paths[:2]]).text
    assert "too few cells to smooth: the plain average" in page


def test_export_of_an_ensemble_is_a_clear_error(members, tmp_path, capsys):
    root, _ = members
    assert main(["export", "--model", str(root / "ens"), "--format", "onnx", "--out", str(tmp_path / "e.onnx")]) == 2
    assert "is an ensemble of 2 runs" in capsys.readouterr().err and not (tmp_path / "e.onnx").exists()


def test_members_that_do_not_fit_are_clear_errors(members, tmp_path, capsys):
    root, _ = members
    a, b = str(root / "dcae"), str(root / "lbp")

    def fails(args, *expected):
        assert main(["ensemble", *args]) == 2
        err = capsys.readouterr().err
        assert all(e in err for e in expected), err
        assert "Traceback" not in err

    fails([a, "--out", str(tmp_path / "x")], "at least two run folders")
    fails([a, a, "--out", str(tmp_path / "x")], f"{a} is given twice")
    fails([a, b, "--out", str(a)], f"--out {a} is one of the members")
    fails([a, b, "--out", str(root / "lbp" / "sub")], f"inside the member {b}")
    fails([a, str(tmp_path), "--out", str(tmp_path / "x")], str(tmp_path), "missing: metrics.json")
    fails([a, str(tmp_path / "nope"), "--out", str(tmp_path / "x")], "nope does not exist")
    other = tmp_path / "other"
    shutil.copytree(root / "lbp", other)
    rows = _rows(other)
    with open(other / "predictions.csv", "w", newline="") as f:  # one test cell fewer
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows[1:])
    fails([a, str(other), "--out", str(tmp_path / "x")], str(other), "splits or test cells differ")
    m = json.loads((other / "metrics.json").read_text())
    (other / "metrics.json").write_text(json.dumps(m | {"protocol": "official"}))
    fails([a, str(other), "--out", str(tmp_path / "x")], "protocol 'official' differs")
    assert not (tmp_path / "x").exists()  # nothing written by a refused ensemble
    fails([str(root / "ens"), b, "--out", str(tmp_path / "x")], "is itself an ensemble")
    fails([a, b, "--out", str(root / "ens")], "already exists", "choose another --out, or delete it")
    assert main(["ensemble", a, b, "--out", str(root / "ens")]) == 2 and "--resume" not in capsys.readouterr().err
    assert Predictor(root / "ens").method_name == "ensemble"  # and the existing one is intact


def test_official_members_give_the_ensemble_a_full_figure(snphep2_root, _session_cache, tmp_path, monkeypatch):
    """Official runs list their train/ -> test/ predictions as split `full`: the ensemble averages those
    too and reports `full`; a member from before (no `full` rows) still joins, without that figure."""
    monkeypatch.setenv("HEP2_CACHE", str(_session_cache))
    base = [
        "run",
        f"snphep2:{snphep2_root}",
        "--protocol",
        "official",
        "--preset",
        "tiny",
        "--quiet",
        "--set",
        "ae_epochs=1",
        "--set",
        "mlp_epochs=3",
    ]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*base, "--out", str(a)]) == 0
    assert main([*base, "--set", "seed=1", "--out", str(b)]) == 0
    assert main(["ensemble", str(a), str(b), "--out", str(tmp_path / "ens"), "--quiet"]) == 0
    m = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    ra, rb = ([r for r in _rows(x) if r["split"] == "full"] for x in (a, b))
    pcols = [k for k in ra[0] if k.startswith("p_")]
    avg = np.array([[float(x[k]) + float(z[k]) for k in pcols] for x, z in zip(ra, rb)])
    truth = [pcols.index("p_" + r["true"]) for r in ra]
    assert len(ra) == 979 and m["full"]["accuracy"] == pytest.approx(np.mean(avg.argmax(1) == truth))
    assert list(m["accuracy"]["per_split"]) == [f"split-50-{k}" for k in range(1, 6)]  # `full` is no split
    assert "full (train/ → test/)" in (tmp_path / "ens" / "report.md").read_text()
    # --neighbours: split K's test cells smoothed in a space fitted on Split-50-K's training cells, `full`'s
    # on all of train/
    assert main(["ensemble", str(a), str(b), "--neighbours", "10", "--out", str(tmp_path / "nb"), "--quiet"]) == 0
    cells = open_dataset(f"snphep2:{snphep2_root}")
    feats = [_features(a), _features(b)]
    plain, nb = _rows(tmp_path / "ens"), _rows(tmp_path / "nb")
    for split, train in (("split-50-1", cells.subsets["split-50-1/train"]), ("full", cells.subsets["train"])):
        ids = [r["id"] for r in plain if r["split"] == split]
        tr = [cells.cells[i].id for i in train]
        Z = _space([np.stack([f[i] for i in tr]) for f in feats], [np.stack([f[i] for i in ids]) for f in feats])
        idx = NearestNeighbors(n_neighbors=10, metric="cosine").fit(Z).kneighbors(return_distance=False)
        P = np.array([[float(r[k]) for k in pcols] for r in plain if r["split"] == split])
        got = np.array([[float(r[k]) for k in pcols] for r in nb if r["split"] == split])
        np.testing.assert_allclose(got, 0.5 * P + 0.5 * P[idx].mean(1), atol=2e-5)
    mnb = json.loads((tmp_path / "nb" / "metrics.json").read_text())
    assert mnb["neighbours"] == 10 and "full" in mnb and mnb["accuracy"]["mean"] != m["accuracy"]["mean"]
    old = tmp_path / "old"  # a member written before runs kept their `full` rows
    shutil.copytree(b, old)
    rows = _rows(b)
    with open(old / "predictions.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if r["split"] != "full")
    assert main(["ensemble", str(a), str(old), "--out", str(tmp_path / "ens2"), "--quiet"]) == 0
    m2 = json.loads((tmp_path / "ens2" / "metrics.json").read_text())
    assert "full" not in m2 and m2["accuracy"] == m["accuracy"]


def _features(run):
    F = np.load(run / "features.npy")
    return {r["id"]: F[i] for i, r in enumerate(csv.DictReader(open(run / "features_ids.csv", newline="")))}


def _space(train_blocks, test_blocks):
    """The reference: each member's features standardised and reduced (fitted on the training cells),
    scaled to unit length, side by side."""
    Z = []
    for tr, te in zip(train_blocks, test_blocks):
        s = StandardScaler().fit(tr)
        z = PCA(min(50, *tr.shape), random_state=0).fit(s.transform(tr)).transform(s.transform(te))
        Z.append(z / np.linalg.norm(z, axis=1, keepdims=True))
    return np.hstack(Z)


def test_neighbours_smooth_each_test_cell_over_its_nearest_cells_of_the_split(members):
    """--neighbours 3: each cell's averaged probabilities, half and half with the mean of its 3 nearest
    cells of the same fold (cosine, in the members' features fitted on that fold's training cells)."""
    root, _ = members
    plain, nb = _rows(root / "ens"), _rows(root / "nb")
    pcols = [k for k in plain[0] if k.startswith("p_")]
    feats = [_features(root / "dcae"), _features(root / "lbp")]
    changed = 0
    for split in dict.fromkeys(r["split"] for r in plain):
        rows = [r for r in plain if r["split"] == split]
        got = np.array([[float(r[k]) for k in pcols] for r in nb if r["split"] == split])
        ids = [r["id"] for r in rows]
        train = [i for i in feats[0] if i not in ids]  # cv: the other folds' cells
        Z = _space([np.stack([f[i] for i in train]) for f in feats], [np.stack([f[i] for i in ids]) for f in feats])
        idx = NearestNeighbors(n_neighbors=3, metric="cosine").fit(Z).kneighbors(return_distance=False)
        P = np.array([[float(r[k]) for k in pcols] for r in rows])
        np.testing.assert_allclose(got, 0.5 * P + 0.5 * P[idx].mean(1), atol=2e-5)
        assert all(i not in row for i, row in enumerate(idx))  # a cell is not its own neighbour
        changed += int((np.abs(got - P) > 1e-3).any())
    assert changed == 5
    m = json.loads((root / "nb" / "metrics.json").read_text())
    assert m["neighbours"] == 3 and json.loads((root / "ens" / "metrics.json").read_text())["neighbours"] is None
    hits = [r["predicted"] == r["true"] for r in nb]
    assert m["accuracy"]["mean"] == pytest.approx(np.mean(hits))  # 5 folds of 6 cells each
    assert "**transductive**" in (root / "nb" / "report.md").read_text()
    assert json.loads((root / "nb" / "config.json").read_text())["neighbours"] == 3


def test_a_neighbours_model_smooths_over_the_batch_it_is_given(members, tmp_path, capsys):
    root, paths = members
    plain, nb = Predictor(root / "ens"), Predictor(root / "nb")
    assert plain.neighbours is None and nb.neighbours.k == 3 and nb.neighbours.members == [0, 1]
    P = np.stack([r[2] for r in plain.predict_files(paths)[0]])
    got = np.stack([r[2] for r in nb.predict_files(paths)[0]])
    # the space of the final model: fitted on every cell the final classifiers saw (all 30, cv)
    feats = [_features(root / "dcae"), _features(root / "lbp")]
    members_ = [m for m, _ in nb.members]
    batch = [cell_features(m, m.transform(nb.load_files(paths, prep=m.preprocess())[0])) for m in members_]
    Z = _space([np.stack(list(f.values())) for f in feats], batch)
    idx = NearestNeighbors(n_neighbors=3, metric="cosine").fit(Z).kneighbors(return_distance=False)
    np.testing.assert_allclose(got, 0.5 * P + 0.5 * P[idx].mean(1), atol=1e-5)
    assert np.abs(got - P).max() > 1e-3
    # a batch without k cells beside each of its cells gets the plain average (two cells of two specimens were
    # both pulled to their mean, one answer for both); k + 1 cells are smoothed
    for n in (1, 2, 3):
        np.testing.assert_allclose(np.stack([r[2] for r in nb.predict_files(paths[:n])[0]]), P[:n], atol=1e-6)
    four = np.stack([r[2] for r in nb.predict_files(paths[:4])[0]])
    np.testing.assert_allclose(four, 0.5 * P[:4] + 0.5 * (P[:4].sum(0) - P[:4]) / 3, atol=1e-5)
    # the command line says that the batch matters; each folder's cells are a batch of their own (a folder given,
    # the subfolders of one, the folders of files given one by one)
    wells = [tmp_path / "plate" / "well1", tmp_path / "plate" / "well2"]
    for w, part in zip(wells, (paths[:4], paths[4:9])):
        w.mkdir(parents=True)
        for q in part:
            shutil.copy(q, w / q.name)
    assert (
        main(
            [
                "predict",
                "--model",
                str(root / "nb"),
                str(tmp_path / "plate"),
                str(paths[9]),
                "--out",
                str(tmp_path / "w.csv"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert f"{wells[0]}: each of its 4 cells averaged with its 3 nearest" in err and f"{wells[1]}: each of its 5" in err
    assert f"{paths[9].parent}: 1 cell, not the 4 a smoothing needs: the members' plain average" in err
    assert "folder of their own" in err
    with open(tmp_path / "w.csv", newline="") as f:
        got = np.array([[float(v) for k, v in r.items() if k.startswith("p_")] for r in csv.DictReader(f)])
    want = np.vstack([np.stack([r[2] for r in nb.predict_files(sorted(w.iterdir()))[0]]) for w in wells] + [P[9:]])
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the Python API batches by folder too: one call over two wells, each smoothed on its own, in the order given
    both = [*sorted(wells[1].iterdir()), *sorted(wells[0].iterdir())]
    rows = nb.predict_files(both)[0]
    assert [r[0] for r in rows] == both
    np.testing.assert_allclose(np.stack([r[2] for r in rows]), np.vstack([want[4:9], want[:4]]), atol=1e-5)


def test_cell_features_take_the_mean_of_each_autoencoders_views():
    class M:
        name = "dcae-mlp"

        class cfg:
            tta_samples, ae_ensemble = True, 2

    # 3 cells, 2 autoencoders x 8 views x 4 values: value = 100 * autoencoder + view
    F = np.array([[100 * g + v for g in range(2) for v in range(8) for _ in range(4)]] * 3, np.float32)
    np.testing.assert_allclose(cell_features(M, F), [[3.5] * 4 + [103.5] * 4] * 3)
    M.cfg.tta_samples = False
    assert cell_features(M, F).shape == (3, 64)


def test_neighbours_errors_are_clear(members, tmp_path, capsys):
    root, _ = members
    a, b = root / "dcae", root / "lbp"

    def fails(args, *expected):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert all(e in err for e in expected), err
        assert "Traceback" not in err

    fails(["ensemble", str(a), str(b), "--neighbours", "-1", "--out", str(tmp_path / "x")], "--neighbours -1")
    fails(
        ["ensemble", str(a), str(b), "--neighbours", "6", "--out", str(tmp_path / "x")],  # cv folds of 6 cells
        "--neighbours 6 averages each test cell with 6 others of its split, and split fold-1 holds 6 test cells: "
        "give a K below 6",
    )
    bare = []
    for r in (a, b):  # runs without features.npy (as the CNN methods write them)
        shutil.copytree(r, tmp_path / r.name)
        (tmp_path / r.name / "features.npy").unlink()
        bare.append(str(tmp_path / r.name))
    fails(["ensemble", *bare, "--neighbours", "3", "--out", str(tmp_path / "x")], "no member keeps any")
    moved = tmp_path / "moved"
    shutil.copytree(a, moved)
    c = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps(c | {"dataset": f"folder:{tmp_path / 'gone'}"}))
    fails(
        ["ensemble", str(moved), str(b), "--neighbours", "3", "--out", str(tmp_path / "x")],
        "needs the members' dataset",
        str(tmp_path / "gone"),
    )
    assert not (tmp_path / "x").exists()
    fails(
        [
            "compare",
            "synthetic:6",
            "--methods",
            "lbp-svm",
            "texture-svm",
            "--neighbours",
            "3",
            "--out",
            str(tmp_path / "y"),
        ],
        "add --ensemble",
    )
    assert main(["ensemble", *bare, "--out", str(tmp_path / "plain"), "--quiet"]) == 0  # without: fine


def test_cell_features_follow_mlphead_layout():
    """cell_features' mean per autoencoder is the mean of the rows MLPHead(groups, views=8) reads."""
    from hep2.estimators import MLPHead

    class M:
        name = "dcae-mlp"

        class cfg:
            tta_samples, ae_ensemble = True, 3

    F = np.random.default_rng(0).normal(size=(4, 3 * 8 * 5)).astype(np.float32)
    head, width = MLPHead(groups=3, views=8), 8 * 5
    want = np.hstack([head._rows(F, g, width).reshape(4, 8, 5).mean(1) for g in range(3)])
    np.testing.assert_allclose(cell_features(M, F), want, rtol=1e-6)


def test_neighbours_with_a_member_without_features_and_skipped_files(members, tmp_path, _session_cache, monkeypatch):
    """Only members with features shape the space (members [1] when the first has none); members made
    with --skip-bad leave the same unreadable files out when the ensemble reads the data again."""
    root, paths = members
    nofeat = tmp_path / "nofeat"
    shutil.copytree(root / "dcae", nofeat)
    (nofeat / "features.npy").unlink()
    assert (
        main(["ensemble", str(nofeat), str(root / "lbp"), "--neighbours", "3", "--out", str(tmp_path / "e"), "--quiet"])
        == 0
    )
    p = Predictor(tmp_path / "e")
    assert p.neighbours.members == [1]
    got = np.stack([r[2] for r in p.predict_files(paths)[0]])
    plain = np.stack([r[2] for r in Predictor(root / "ens").predict_files(paths)[0]])
    lbp = [m for m, _ in p.members][1]
    Z = _space(
        [np.stack(list(_features(root / "lbp").values()))],
        [cell_features(lbp, lbp.transform(p.load_files(paths, prep=lbp.preprocess())[0]))],
    )
    idx = NearestNeighbors(n_neighbors=3, metric="cosine").fit(Z).kneighbors(return_distance=False)
    np.testing.assert_allclose(got, 0.5 * plain + 0.5 * plain[idx].mean(1), atol=1e-5)
    # a folder with one unreadable image, two runs with --skip-bad
    monkeypatch.setenv("HEP2_CACHE", str(_session_cache))
    data = tmp_path / "cells"
    assert main(["data", "make-synthetic", str(data), "--per-class", "6", "--specimens", "10"]) == 0
    bad = next(data.glob("*/")) / "broken.png"
    bad.write_bytes(b"not a png")
    for method in ("lbp-svm", "texture-svm"):
        assert (
            main(
                [
                    "run",
                    f"folder:{data}",
                    "--protocol",
                    "cv",
                    "--method",
                    method,
                    "--skip-bad",
                    "--quiet",
                    "--out",
                    str(tmp_path / method),
                ]
            )
            == 0
        )
    assert json.loads((tmp_path / "lbp-svm" / "data.json").read_text())["skipped"]["count"] == 1
    assert (
        main(
            [
                "ensemble",
                str(tmp_path / "lbp-svm"),
                str(tmp_path / "texture-svm"),
                "--neighbours",
                "3",
                "--out",
                str(tmp_path / "e2"),
                "--quiet",
            ]
        )
        == 0
    )
    m = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert m["neighbours"] == 3 and len(_rows(tmp_path / "e2")) == 30


def test_compare_checks_neighbours_before_training(tmp_path, capsys):
    for args, expected in (
        (["--methods", "cnn5", "resnet", "--ensemble", "--neighbours", "3"], "keep none"),
        (["--methods", "lbp-svm", "bow", "--ensemble", "--neighbours", "-2"], "--neighbours -2"),
    ):
        assert main(["compare", "synthetic:6", *args, "--out", str(tmp_path / "c")]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err
        assert not (tmp_path / "c").exists()


def test_api_mistakes_are_named_before_any_work(members, tmp_path):
    """Found by a review of the Python API: each was a silent wrong answer or a library's error."""
    from hep2.pipeline.compare import compare
    from hep2.presets import PRESETS

    root, _ = members
    lbp = Predictor(root / "lbp")
    with pytest.raises(Hep2Error, match=r"images of shape \(2, 32, 32\) given; this model reads \(N, 128, 128\)"):
        lbp.predict_images(np.zeros((2, 32, 32), np.uint8))  # was classified at the wrong size
    dcae = Predictor(root / "dcae")
    cells = np.random.default_rng(0).integers(0, 255, (2, 32, 32)).astype(np.uint8)
    with pytest.raises(Hep2Error, match="float images must lie in 0..1, got"):
        dcae.predict_images(cells.astype(np.float32))  # was clipped to black and white
    np.testing.assert_allclose(dcae.predict_images(cells.astype(np.int64)), dcae.predict_images(cells))
    with pytest.raises(Hep2Error, match="give a list of image files"):
        dcae.predict_files(str(root))
    with pytest.raises(Hep2Error, match="give a list of run folders"):
        make_ensemble(str(root / "dcae"), tmp_path / "e")
    for methods, message in (
        (["lbp-svm", "foo"], "unknown method 'foo'"),
        ("lbp-svm", "give a list of method names"),
        ([], "give a list of method names"),
    ):
        with pytest.raises(Hep2Error, match=message):  # lbp-svm was run first, then the typo was found
            compare("synthetic:6", protocol="cv", methods=methods, cfg=PRESETS["tiny"], out=tmp_path / "c")
    with pytest.raises(Hep2Error, match="cfg='tiny': give a Preset"):
        compare("synthetic:6", protocol="cv", methods=["lbp-svm"], cfg="tiny", out=tmp_path / "c")
    with pytest.raises(Hep2Error, match="takes a CellSet .* got list and Preprocess"):
        load_images([root / "x.png"], Preprocess(size=32))
    with pytest.raises(Hep2Error, match="unknown protocol 'offical'"):
        compare("synthetic:6", protocol="offical", methods=["lbp-svm"], cfg=PRESETS["tiny"], out=tmp_path / "c")
    assert not (tmp_path / "c").exists() and not (tmp_path / "e").exists()


def test_grouped_members_give_the_ensemble_a_specimen_level_figure(_session_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HEP2_CACHE", str(_session_cache))
    assert (
        main(
            [
                "compare",
                "synthetic:6",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--methods",
                "shape-index",
                "lbp-svm",
                "--ensemble",
                "--quiet",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows, m = _rows(tmp_path / "ensemble"), json.loads((tmp_path / "ensemble" / "metrics.json").read_text())
    member = _rows(tmp_path / "lbp-svm")
    assert [(r["id"], r["specimen"]) for r in rows] == [(r["id"], r["specimen"]) for r in member]
    for split, acc in m["specimens"]["accuracy"]["per_split"].items():
        by = {}
        for r in rows:
            if r["split"] == split:
                by.setdefault(r["specimen"], []).append(r)
        calls = [
            max(
                set(c["predicted"] for c in cells),
                key=lambda p: ([c["predicted"] for c in cells].count(p), np.mean([float(c["p_" + p]) for c in cells])),
            )
            for cells in by.values()
        ]
        assert acc == pytest.approx(np.mean([call == cells[0]["true"] for call, cells in zip(calls, by.values())]))
    assert "**Specimen level**" in (tmp_path / "ensemble" / "report.md").read_text()
    # the comparison folder itself, where one run is wanted, is named for what it is
    for args in (
        ["predict", "--model", str(tmp_path), str(tmp_path)],
        ["ensemble", str(tmp_path), str(tmp_path / "ensemble"), "--out", str(tmp_path / "x")],
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path} is a comparison of `hep2 compare`, not one run: give one of its run folders (" in err
        assert str(tmp_path / "lbp-svm") in err and str(tmp_path / "ensemble") in err
    table = (tmp_path / "comparison.md").read_text()
    assert "| specimens right |" in table and f"| {m['specimens']['accuracy']['mean']:.4f} |" in table
