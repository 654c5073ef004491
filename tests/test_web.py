"""`hep2 serve`: the JSON API (FastAPI's TestClient), its bad-upload errors, the run pages, and the
page end to end in a real headless Chromium (playwright) against a server on a loopback port."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from hep2.cli import main  # noqa: E402
from hep2.data import open_dataset  # noqa: E402
from hep2.pipeline.predict import Predictor  # noqa: E402
from hep2.web import create_app  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, _session_cache):
    """An lbp-svm run on synthetic:20 (fast, and right on most synthetic cells)."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEP2_CACHE", str(_session_cache))
        assert (
            main(
                [
                    "run",
                    "synthetic:20",
                    "--method",
                    "lbp-svm",
                    "--protocol",
                    "grouped",
                    "--preset",
                    "tiny",
                    "--quiet",
                    "--out",
                    str(root / "lbp"),
                ]
            )
            == 0
        )
    return root / "lbp"


@pytest.fixture(scope="module")
def known_cells(_session_cache):
    """Two cells of each pattern from the synthetic set, with their true pattern."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEP2_CACHE", str(_session_cache))
        cells = open_dataset("synthetic:20")
    picks = []
    for k, name in enumerate(cells.classes):
        idx = np.flatnonzero(cells.y == k)[:2]
        picks += [(Path(cells.cells[i].path), name) for i in idx]
    return picks


@pytest.fixture
def workdir(tmp_path):
    return tmp_path / "work"


@pytest.fixture
def client(run_dir, workdir):
    return TestClient(create_app(run_dir, workdir))


def _files(paths):
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]


def test_health_and_openapi(client):
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and len(r.json()["classes"]) == 5
    spec = client.get("/openapi.json").json()
    assert "/api/predict" in spec["paths"] and "/api/health" in spec["paths"]


def test_api_predict_gives_patterns_probabilities_and_the_batch_summary(client, run_dir, known_cells):
    paths = [p for p, _ in known_cells]
    r = client.post("/api/predict", files=_files(paths))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["filename"] for x in body["results"]] == [p.name for p in paths]
    rows, _ = Predictor(run_dir).predict_files(paths)
    assert [x["pattern"] for x in body["results"]] == [pattern for _, pattern, _ in rows]
    for x, (_, _, proba) in zip(body["results"], rows):
        assert abs(sum(x["probabilities"].values()) - 1) < 1e-4
        np.testing.assert_allclose(list(x["probabilities"].values()), proba, atol=1e-5)
    right = sum(x["pattern"] == truth for x, (_, truth) in zip(body["results"], known_cells))
    assert right >= 8, f"{right}/10 right"
    counts = body["summary"]["counts"]
    assert sum(counts.values()) == 10 and counts[body["summary"]["dominant"]] == max(counts.values())
    # a tie in counts goes to the pattern of the higher mean probability
    tied = [c for c, n in counts.items() if n == max(counts.values())]
    mean_p = {c: np.mean([x["probabilities"][c] for x in body["results"]]) for c in tied}
    assert body["summary"]["dominant"] == max(mean_p, key=mean_p.get)
    assert body["summary"]["agreement"] == pytest.approx(max(counts.values()) / 10)


def test_a_zip_of_cells_is_unpacked(client, known_cells):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p, _ in known_cells[:3]:
            z.write(p, f"cells/{p.name}")
        z.writestr("__MACOSX/._x.png", b"junk")
    r = client.post("/api/predict", files=[("files", ("batch.zip", buf.getvalue(), "application/zip"))])
    assert r.status_code == 200, r.text
    assert [x["filename"] for x in r.json()["results"]] == [f"batch.zip/cells/{p.name}" for p, _ in known_cells[:3]]


def test_an_uploaded_mask_is_applied_to_its_cell_and_a_zips_notes_are_left_out(
    client, run_dir, known_cells, tmp_path, _session_cache, monkeypatch
):
    from PIL import Image

    from hep2.data.synthetic import make_synthetic

    monkeypatch.setenv("HEP2_CACHE", str(_session_cache))
    root = make_synthetic(tmp_path / "masked", per_class=10, specimens=10, seed=5)  # a model trained on masked cells
    for f in sorted(root.rglob("*.png")):
        m = np.zeros(np.asarray(Image.open(f)).shape, np.uint8)
        m[: m.shape[0] // 2] = 255
        Image.fromarray(m).save(f.with_name(f.stem + "_mask.png"))
    masked_run = tmp_path / "masked-run"
    assert (
        main(
            [
                "run",
                f"folder:{root}",
                "--method",
                "shape-index",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--quiet",
                "--out",
                str(masked_run),
            ]
        )
        == 0
    )
    cell = known_cells[0][0]
    mask = np.zeros(np.asarray(Image.open(cell)).shape, np.uint8)
    mask[:, : mask.shape[1] // 3] = 255
    (tmp_path / cell.name).write_bytes(cell.read_bytes())
    Image.fromarray(mask).save(tmp_path / f"{cell.stem}_mask.png")
    want = Predictor(masked_run).predict_files([tmp_path / cell.name])[0][0][2]  # hep2 predict, with the mask
    plain = Predictor(masked_run).predict_files([cell])[0][0][2]
    assert np.abs(want - plain).max() > 1e-3
    zipped = _zip(
        {
            f"w/{cell.name}": cell.read_bytes(),
            f"w/{cell.stem}_mask.png": (tmp_path / f"{cell.stem}_mask.png").read_bytes(),
            "w/notes.txt": b"plate 3, well B2",
        }
    )
    r = TestClient(create_app(masked_run, tmp_path / "work-m")).post(
        "/api/predict", files=[("files", ("w.zip", zipped, "application/zip"))]
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["filename"] for x in body["results"]] == [f"w.zip/w/{cell.name}"]
    np.testing.assert_allclose(list(body["results"][0]["probabilities"].values()), want, atol=1e-5)
    assert body["summary"]["masks"] == 1 and body["summary"]["ignored"] == ["w.zip/w/notes.txt"]
    assert body["summary"]["notes"] == []
    # the same upload to a model trained without masks: not applied (as in its training), and said so
    body = client.post("/api/predict", files=[("files", ("w.zip", zipped, "application/zip"))]).json()
    np.testing.assert_allclose(
        list(body["results"][0]["probabilities"].values()), Predictor(run_dir).predict_files([cell])[0][0][2], atol=1e-5
    )
    assert body["summary"]["masks"] == 0 and "which is not applied" in body["summary"]["notes"][0]
    # a mask without its cell is named
    r = client.post(
        "/api/predict",
        files=[
            ("files", ("x_mask.png", _png_bytes(mask), "image/png")),
            ("files", (cell.name, cell.read_bytes(), "image/png")),
        ],
    )
    assert r.status_code == 200 and "x_mask.png is a mask" in r.json()["summary"]["skipped"][0]
    assert [x["filename"] for x in r.json()["results"]] == [cell.name]
    # hidden and system folders in a zip are not cells
    zipped = _zip(
        {
            f"w/{cell.name}": cell.read_bytes(),
            f"w/.thumbnails/{cell.name}": cell.read_bytes(),
            f"w/@eaDir/{cell.name}/THUMB.png": cell.read_bytes(),
        }
    )
    r = client.post("/api/predict", files=[("files", ("w.zip", zipped, "application/zip"))])
    assert [x["filename"] for x in r.json()["results"]] == [f"w.zip/w/{cell.name}"]


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _png_bytes(arr) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_bad_uploads_get_a_4xx_naming_the_file_and_the_server_goes_on(run_dir, workdir, tmp_path, known_cells):
    client = TestClient(create_app(run_dir, workdir, max_file_mb=0.05, max_files=3))
    good = known_cells[0][0].read_bytes()
    cases = [
        ([("files", ("notes.png", b"this is not an image", "image/png"))], 422, "notes.png"),
        (
            [("files", ("black.png", _png_bytes(np.zeros((40, 40), np.uint8)), "image/png"))],
            422,
            "black.png is blank (every pixel is 0): there is no cell in it to classify; upload single cell images",
        ),
        ([("files", ("empty.png", b"", "image/png"))], 400, "empty.png: the file is empty"),
        ([("files", ("huge.png", b"\0" * 60_000, "image/png"))], 413, "huge.png"),
        ([("files", ("evil.zip", _zip({"../../evil.png": good}), "application/zip"))], 400, "climbs out"),
        ([("files", ("abs.zip", _zip({"/etc/evil.png": good}), "application/zip"))], 400, "climbs out"),
        ([("files", (f"c{i}.png", good, "image/png")) for i in range(4)], 413, "too many files"),
        ([("files", ("broken.zip", b"PK\x03\x04garbage", "application/zip"))], 400, "not a valid zip"),
        (
            [],
            400,
            "no files uploaded: choose one or more cell images (or a zip of them); the API reads them from "
            "the multipart form field `files`",
        ),
        (
            [("files", ("notes.zip", _zip({"a.txt": b"x"}), "application/zip"))],
            400,
            "no cell images in the upload (not images: notes.zip/a.txt)",
        ),
    ]
    for files, status, text in cases:
        r = client.post("/api/predict", files=files) if files else client.post("/api/predict")
        assert r.status_code == status, (text, r.status_code, r.text)
        assert text in r.json()["detail"] and "--skip-bad" not in r.json()["detail"], r.json()
        assert client.get("/api/health").status_code == 200
    # one bad file among readable cells: they are classified, it is listed
    r = client.post(
        "/api/predict",
        files=[
            ("files", ("good.png", good, "image/png")),
            ("files", ("notes.png", b"this is not an image", "image/png")),
        ],
    )
    assert r.status_code == 200, r.text
    assert [x["filename"] for x in r.json()["results"]] == ["good.png"]
    skipped = r.json()["summary"]["skipped"]
    assert len(skipped) == 1 and "cannot decode image notes.png" in skipped[0] and "--skip-bad" not in skipped[0]
    page = client.post(
        "/predict", files=[("files", ("good.png", good, "image/png")), ("files", ("notes.png", b"text", "image/png"))]
    ).text
    assert "id='results'" in page and "Not classified (1): cannot decode image notes.png" in page
    # nothing was written outside the working folder
    assert not list(tmp_path.rglob("evil.png")) and not Path("/etc/evil.png").exists()
    assert {p.name for p in tmp_path.iterdir()} == {"work"}
    # the page shows the error in words, with a 4xx
    r = client.post("/predict", files=[("files", ("notes.png", b"text", "image/png"))])
    assert r.status_code == 422 and "class='error'" in r.text and "notes.png" in r.text


def test_page_results_table_and_csv_download(client, known_cells):
    r = client.post("/predict", files=_files([p for p, _ in known_cells[:4]]))
    assert r.status_code == 200 and "id='results'" in r.text and "Dominant pattern" in r.text
    csv_url = r.text.split("id='csv' href='")[1].split("'")[0]
    csv = client.get(csv_url)
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("filename,pattern,p_")
    assert len(csv.text.splitlines()) == 5
    assert client.get("/batches/nope.csv").status_code == 404


def test_run_pages_show_metrics_and_figures(client, run_dir):
    r = client.get("/runs")
    assert r.status_code == 200 and run_dir.name in r.text and "grouped" in r.text
    row = r.text.split(f">{run_dir.name}</a></td>")[1].split("</tr>")[0]  # each run names its data and preset
    assert ">lbp-svm<" in row and ">synthetic:20<" in row and ">grouped<" in row and ">tiny<" in row
    r = client.get(f"/runs/{run_dir.name}")
    assert r.status_code == 200 and "accuracy" in r.text and "confusion.png" in r.text
    assert client.get(f"/runs/{run_dir.name}/files/confusion.png").headers["content-type"] == "image/png"
    assert client.get(f"/runs/{run_dir.name}/files/..%2Fmodel%2Fpipeline.pt").status_code == 404
    assert client.get(f"/runs/{run_dir.name}/files/model").status_code == 404
    assert client.get("/runs/%2E%2E").status_code == 404
    assert client.get("/runs/nope").status_code == 404


# -- the real browser ------------------------------------------------------------------------------
def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(run_dir, tmp_path, _session_cache):
    port = _free_port()
    env = os.environ | {"HEP2_CACHE": str(_session_cache)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hep2",
            "serve",
            "--model",
            str(run_dir),
            "--port",
            str(port),
            "--workdir",
            str(tmp_path / "work"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("hep2 serve exited: " + proc.stdout.read())
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_in_a_real_browser_upload_cells_see_patterns_and_a_bad_file_error(server, run_dir, known_cells, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium here: `apt-get install chromium` (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    paths = [p for p, _ in known_cells]
    expected = {p.name: pattern for p, pattern, _ in Predictor(run_dir).predict_files(paths)[0]}
    bad = tmp_path / "not-a-cell.png"
    bad.write_text("plain text, not an image")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(server + "/")
        page.set_input_files("#files", [str(p) for p in paths])
        page.click("#submit")
        page.wait_for_selector("#results")
        names = page.locator("#results tbody td.filename").all_inner_texts()
        patterns = page.locator("#results tbody td.pattern").all_inner_texts()
        assert sorted(names) == sorted(expected) and dict(zip(names, patterns)) == expected
        truth = {p.name: t for p, t in known_cells}
        assert sum(patterns[i] == truth[n] for i, n in enumerate(names)) >= 8
        assert page.locator("#dominant").inner_text() in expected.values()
        page.locator("#results th", has_text="pattern").click()  # sort by pattern
        after = page.locator("#results tbody td.pattern").all_inner_texts()
        assert after == sorted(patterns)
        page.screenshot(path=str(ARTIFACTS / "web-results.png"), full_page=True)
        # a bad file: the error is on the page, and the server goes on serving
        page.set_input_files("#files", [str(bad)])
        page.click("#submit")
        page.wait_for_selector("#error")
        assert "not-a-cell.png" in page.locator("#error").inner_text()
        page.screenshot(path=str(ARTIFACTS / "web-error.png"))
        browser.close()
    with urllib.request.urlopen(server + "/api/health", timeout=5) as r:
        assert json.loads(r.read())["status"] == "ok"


def test_serve_names_a_busy_port_a_bad_port_and_a_bad_host(run_dir, capsys):
    """Refused before the model loads, as one line that says what to do (was a traceback or uvicorn's log)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--model", str(run_dir), "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"hep2: error: cannot listen on 127.0.0.1:{port}") and "choose another --port" in err
    assert main(["serve", "--model", str(run_dir), "--port", "99999"]) == 2
    assert "--port 99999: a TCP port lies in 0..65535" in capsys.readouterr().err
    assert main(["serve", "--model", str(run_dir), "--host", "not_a_host.invalid", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--host not_a_host.invalid: not a name or address" in err and "Traceback" not in err


def test_a_whole_field_is_segmented_called_and_shown(client, tmp_path):
    """An uploaded field: its cells found and classified, its call with the ICAP code, its overlay on the page."""
    from hep2.data.synthetic import make_synthetic_fields

    fields = make_synthetic_fields(
        tmp_path / "f", per_pattern=1, patterns=("homogeneous", "negative"), shape=(420, 560), cells=14, debris=2
    )
    paths = [fields / "homogeneous-1.png", fields / "negative-1.png"]
    r = client.post("/api/predict", files=_files(paths))
    assert r.status_code == 200, r.text
    s = r.json()["summary"]
    calls = {c["field"]: c for c in s["fields"]}
    assert calls["negative-1.png"]["call"] == "negative" and calls["negative-1.png"]["icap"] == "AC-0"
    assert calls["homogeneous-1.png"]["positive"] and calls["homogeneous-1.png"]["icap"].startswith("AC-")
    assert len(r.json()["results"]) >= 8 and r.json()["results"][0]["filename"].startswith("homogeneous-1.png cell")
    page = client.post("/predict", files=_files(paths))
    assert page.status_code == 200 and "id='fields'" in page.text and "class='overlay'" in page.text
    assert "(signal index" in page.text  # why the negative field is negative
    cell = tmp_path / "cell.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)).save(cell)
    mixed = client.post("/api/predict", files=_files([paths[0], cell]))
    assert mixed.status_code == 422 and "mixes 1 whole fields" in mixed.text
