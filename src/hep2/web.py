"""`hep2 serve`: a local web application over a trained run (FastAPI, server-rendered pages).

Pages: ``/`` uploads cell images (or zips of them) and shows a sortable table of thumbnails with the
predicted pattern and every class's probability, the batch summary (counts per pattern, dominant
pattern and the share of cells that show it) and a CSV download; ``/runs`` and ``/runs/NAME`` show run
folders (metrics, confusion matrix, reconstructions, comparison tables). JSON API: ``POST /api/predict``
(multipart field ``files``), ``GET /api/health``; its OpenAPI description is ``/openapi.json``.

Uploads are written only under the working folder (``--workdir``), each batch in a folder of its
own; bad uploads get a 4xx naming the file, and the server goes on serving.
"""

import base64
import csv
import html
import io
import json
import re
import shutil
import threading
import time
import uuid
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from .data.images import IMAGE_EXTENSIONS, IMAGE_FORMATS
from .data.readers import is_hidden, is_mask
from .data.segmentation import cell_crop
from .errors import Hep2Error
from .pipeline.evaluation import batch_summary
from .pipeline.fields import call_fields, field_names, is_field, overlay
from .pipeline.predict import Predictor, by_folder

MAX_FILE_MB = 20  # one uploaded file (a zip counts as one; its members count below)
MAX_FILES = 1000  # images in one request, zip members included
MAX_TOTAL_MB = 500  # uncompressed bytes in one request
KEEP_BATCHES = 50  # upload folders kept in the working folder (oldest removed first)


class UploadError(Exception):
    """A bad upload: ``status`` is the HTTP code, the message names the file and what to do."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _stem(name: str) -> str:
    """An uploaded file's name (zip path included) without its extension: a cell and its mask pair by it."""
    return str(PurePosixPath(name).with_suffix(""))


def _safe_name(name: str) -> str:
    base = PurePosixPath(name.replace("\\", "/")).name
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[-120:] or "file"


class Service:
    """The model, the working folder and the batches predicted so far (what the routes share)."""

    def __init__(
        self,
        model_dir,
        workdir,
        runs_root=None,
        max_file_mb=MAX_FILE_MB,
        max_files=MAX_FILES,
        max_total_mb=MAX_TOTAL_MB,
    ):
        self.predictor = Predictor(model_dir)
        self.model_dir = Path(model_dir).resolve()
        self.workdir = Path(workdir).resolve()
        self.uploads = self.workdir / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        for old in self.uploads.iterdir():  # batches (patients' images) a day old: no live page reaches them
            if old.is_dir() and re.fullmatch(r"[0-9a-f]{12}", old.name) and time.time() - old.stat().st_mtime > 86400:
                shutil.rmtree(old, ignore_errors=True)
        self.runs_root = Path(runs_root).resolve() if runs_root else self.model_dir.parent
        self.max_file, self.max_files = int(max_file_mb * 2**20), max_files
        self.max_total = int(max_total_mb * 2**20)
        self.batches: dict[str, dict] = {}
        self.lock = threading.Lock()  # one prediction at a time: the model is not re-entrant

    # -- uploads -------------------------------------------------------------------------------
    def unpack(self, uploads: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """(filename, bytes) uploads -> (display name, bytes) images, zips opened; bad ones raise UploadError."""
        if not uploads:
            raise UploadError(
                400,
                "no files uploaded: choose one or more cell images (or a zip of them); the API "
                "reads them from the multipart form field `files`",
            )
        out, total = [], 0
        for name, data in uploads:
            if len(data) == 0:
                raise UploadError(400, f"{name}: the file is empty")
            if len(data) > self.max_file:
                raise UploadError(413, f"{name}: over the limit of {self.max_file / 2**20:.0f} MB per file")
            if name.lower().endswith(".zip") or data[:4] == b"PK\x03\x04":
                members = self._unzip(name, data)
            else:
                members = [(name, data)]
            for m in members:
                total += len(m[1])
                if total > self.max_total:
                    raise UploadError(413, f"{name}: the upload is over {self.max_total / 2**20:.0f} MB uncompressed")
            out += members
            if len(out) > self.max_files:
                raise UploadError(
                    413,
                    f"too many files: more than {self.max_files} images in one upload; send them in several batches",
                )
        return out

    def _unzip(self, name: str, data: bytes) -> list[tuple[str, bytes]]:
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            raise UploadError(400, f"{name}: not a valid zip file") from None
        members = []
        with zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if len(infos) > self.max_files:
                raise UploadError(413, f"{name}: {len(infos)} files, over the limit of {self.max_files} per upload")
            for info in infos:
                p = PurePosixPath(info.filename.replace("\\", "/"))
                if p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", info.filename):
                    raise UploadError(
                        400,
                        f"{name}: member {info.filename!r} climbs out of its folder; "
                        "zips must hold relative paths only",
                    )
                if any(is_hidden(PurePosixPath(part)) for part in p.parts):
                    continue  # hidden and system files (.thumbnails, @eaDir, __MACOSX) are not cells
                if info.file_size > self.max_file:
                    raise UploadError(413, f"{name}: member {info.filename} is over {self.max_file / 2**20:.0f} MB")
                with zf.open(info) as f:
                    blob = f.read(self.max_file + 1)
                if len(blob) > self.max_file:
                    raise UploadError(413, f"{name}: member {info.filename} is over {self.max_file / 2**20:.0f} MB")
                if not blob:
                    raise UploadError(400, f"{name}: member {info.filename} is empty")
                members.append((f"{name}/{info.filename}", blob))
        if not members:
            raise UploadError(400, f"{name}: the zip holds no files")
        return members

    def sort(self, uploads: list[tuple[str, bytes]]) -> tuple[list, dict, list, list]:
        """Uploads -> (cells (name, bytes), {cell name without extension: its mask (name, bytes)}, the names of
        a zip's files that are not images, left out as `hep2 predict` leaves them out of a folder, and a line for
        each mask without its cell)."""
        cells, masks, ignored = [], {}, []
        for name, data in self.unpack(uploads):
            if PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS and name not in {u for u, _ in uploads}:
                ignored.append(name)  # a zip's notes or spreadsheets
            elif is_mask(PurePosixPath(name)):  # NAME_mask.EXT: the mask of NAME.EXT of the same upload
                masks[_stem(name)[: -len("_mask")]] = (name, data)
            else:
                cells.append((name, data))
        if not cells:
            raise UploadError(
                400,
                "no cell images in the upload"
                + (f" (not images: {', '.join(ignored)})" if ignored else "")
                + f"; upload {IMAGE_FORMATS} files",
            )
        unpaired = [masks.pop(k)[0] for k in sorted(set(masks) - {_stem(n) for n, _ in cells})]
        return (
            cells,
            masks,
            ignored,
            [
                f"{m} is a mask (its name ends in _mask) with no cell image of the same name in "
                "the upload: upload the cell beside its mask, or rename it"
                for m in unpaired
            ],
        )

    def predict(self, uploads: list[tuple[str, bytes]]) -> dict:
        """Classify uploaded images; the batch is kept (id, CSV) for the page and the download."""
        cells, masks, ignored, unpaired = self.sort(uploads)
        batch_id = uuid.uuid4().hex[:12]
        folder = self.uploads / batch_id
        folder.mkdir()
        paths, names, known = [], [], {}  # known: each written file's name as the user knows it
        # each folder of the upload (a zip of wells) in a folder of its own: a transductive Predictor's batch
        subfolder = {f: folder / f"{k:03d}" for k, f in enumerate(by_folder([n for n, _ in cells]))}
        for i, (name, data) in enumerate(cells):
            p = subfolder[Path(name).parent] / f"{i:05d}_{_safe_name(name)}"
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(data)
            mask = masks.get(_stem(name))
            if mask:  # beside its cell, where Predictor finds it
                m = p.parent / f"{p.stem}_mask{PurePosixPath(mask[0]).suffix}"
                m.write_bytes(mask[1])
                known[str(m)] = mask[0]
            paths.append(p)
            names.append(name)
            known[str(p)] = name

        def in_user_words(msg: str) -> str:
            cli = msg.find("--skip-bad")  # the command line's closing advice does not apply here
            cut = max(msg.rfind("; ", 0, cli), msg.rfind(": ", 0, cli)) if cli >= 0 else -1
            msg = msg[:cut] if cut > 0 else msg
            for written, name in sorted(known.items(), key=lambda kv: -len(kv[0])):  # a mask's path before its cell's
                msg = msg.replace(written, name)
            return msg

        fields = [p for p in paths if is_field(p)]
        if fields:
            return self._predict_fields(batch_id, folder, paths, fields, dict(zip(paths, names)), unpaired)
        try:  # the readable cells are classified, the others listed (one bad file does not sink the upload)
            with self.lock:
                proba, arrays, ok, bad = self.predictor.classify(paths, skip_bad=True)
            if not ok:
                raise Hep2Error(bad[0])
        except Hep2Error as e:
            shutil.rmtree(folder, ignore_errors=True)
            raise UploadError(
                422, in_user_words(str(e)) + f"; upload single cell images ({IMAGE_FORMATS}) or zips of them"
            ) from None
        nb = self.predictor.neighbours  # a transductive model: did it smooth any folder of this upload?
        smoothed = nb is not None and any(nb.applies(len(idx)) for idx in by_folder(ok).values())
        name_of = dict(zip(paths, names))
        names, skipped = [name_of[p] for p in ok], unpaired + [in_user_words(b) for b in bad]
        classes = list(self.predictor.classes)
        results = [
            {
                "filename": n,
                "pattern": classes[int(pr.argmax())],
                "probabilities": {c: round(float(v), 6) for c, v in zip(classes, pr)},
            }
            for n, pr in zip(names, proba)
        ]
        summary = batch_summary(proba, classes)  # the upload as one well: its dominant pattern
        folders = by_folder(names)  # a zip of wells: each well's own call too
        if len(folders) > 1:
            summary["folders"] = [
                {
                    "folder": str(f),
                    **{
                        k: v
                        for k, v in batch_summary(proba[idx], classes).items()
                        if k in ("n", "dominant", "agreement")
                    },
                }
                for f, idx in folders.items()
            ]
        masked = any(p.use_mask for p in self.predictor.preps)  # a model that reads masks
        summary |= {
            "masks": sum(_stem(n) in masks for n in names) if masked and self.predictor.masks is not False else 0,
            "ignored": ignored,
            "skipped": skipped,
            "neighbours": nb.k if smoothed else None,
            "notes": self.predictor.mask_notes(ok),
        }
        self._write_csv(folder / "predictions.csv", results, classes)
        with self.lock:
            self.batches[batch_id] = {"results": results, "summary": summary, "thumbs": arrays, "folder": folder}
            self._forget_old()
        return {"batch": batch_id, "results": results, "summary": summary}

    def _predict_fields(self, batch_id, folder, paths, fields, name_of, unpaired) -> dict:
        """An upload of whole fields: each field's cells found, classified and called, and the upload's wells."""
        if len(fields) < len(paths):
            shutil.rmtree(folder, ignore_errors=True)
            raise UploadError(
                422,
                f"the upload mixes {len(fields)} whole fields (first: {name_of[fields[0]]}) and "
                f"{len(paths) - len(fields)} cut-out cells: upload them apart",
            )
        classes = list(self.predictor.classes)
        with self.lock:
            cell_rows, calls, wells, segmented, bad = call_fields(self.predictor, fields, skip_bad=True)
        if not calls:
            shutil.rmtree(folder, ignore_errors=True)
            raise UploadError(422, bad[0] if bad else "no field could be read")
        by_name = dict(zip(field_names(fields), fields))
        results, thumbs, overlays = [], [], {}
        by_label = {name: {c["cell"]: c for c in fld.cells} for name, (fld, _) in segmented.items()}
        for r in cell_rows:
            g, _ = cell_crop(segmented[r["field"]][0], by_label[r["field"]][r["cell"]])
            thumbs.append(np.clip(255 * (g - g.min()) / max(float(np.ptp(g)), 1e-6), 0, 255).astype(np.uint8))
            results.append(
                {
                    "filename": f"{name_of[by_name[r['field']]]} cell {r['cell']}",
                    "pattern": r["pattern"],
                    "probabilities": {c: r[f"p_{c}"] for c in classes},
                }
            )
        for name, (fld, calls_of) in segmented.items():
            overlays[name] = overlay(fld, calls_of, classes)[::2, ::2]
        proba = np.array([[r["probabilities"][c] for c in classes] for r in results]) if results else None
        summary = (
            batch_summary(proba, classes)
            if proba is not None
            else {"n": 0, "dominant": "-", "agreement": 0, "counts": {}}
        ) | {  # fmt: skip
            "fields": [
                {"field": name_of[by_name[c["field"]]]} | {k: v for k, v in c.items() if k != "field"} for c in calls
            ],  # fmt: skip
            "wells": wells if len(wells) > 1 else [],
            "masks": 0,
            "ignored": [],
            "skipped": unpaired + bad,
            "neighbours": None,
            "notes": [],
        }
        for c in summary["fields"]:
            c.pop("path", None)
        for w in summary["wells"]:
            w["well"] = Path(w["well"]).name
        self._write_csv(folder / "predictions.csv", results, classes)
        with self.lock:
            self.batches[batch_id] = {
                "results": results,
                "summary": summary,
                "thumbs": thumbs,
                "folder": folder,
                "overlays": overlays,
            }
            self._forget_old()
        return {"batch": batch_id, "results": results, "summary": summary}

    def _forget_old(self) -> None:
        while len(self.batches) > KEEP_BATCHES:
            old = next(iter(self.batches))
            shutil.rmtree(self.batches.pop(old)["folder"], ignore_errors=True)

    @staticmethod
    def _write_csv(path: Path, results: list[dict], classes: list[str]) -> None:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["filename", "pattern"] + [f"p_{c}" for c in classes])
            for r in results:
                w.writerow([r["filename"], r["pattern"]] + [f"{r['probabilities'][c]:.5f}" for c in classes])

    # -- run folders ---------------------------------------------------------------------------
    def run_folders(self) -> list[Path]:
        if not self.runs_root.is_dir():
            return []
        return sorted(
            p
            for p in self.runs_root.iterdir()
            if p.is_dir() and ((p / "metrics.json").exists() or (p / "comparison.json").exists())
        )

    def run_folder(self, name: str) -> Path:
        folder = (self.runs_root / name).resolve()
        if folder.parent != self.runs_root or not folder.is_dir():
            raise UploadError(404, f"no run folder {name!r} under {self.runs_root}")
        return folder


# -- HTML ------------------------------------------------------------------------------------------
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
nav a{margin-right:1.2em} table{border-collapse:collapse;margin:1em 0} th,td{border:1px solid #ccc;
padding:4px 8px;text-align:right} th{background:#f0f0f0;cursor:pointer} td.l,th.l{text-align:left}
.error{background:#fde8e8;border:1px solid #e0a0a0;padding:.8em;margin:1em 0;color:#900}
.summary{background:#eef6ee;border:1px solid #9c9;padding:.8em;margin:1em 0} img.thumb{width:64px;height:64px;
image-rendering:pixelated} .note{color:#666;font-size:.9em} img.fig{max-width:100%}
"""

SORT_JS = """
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const tbody = th.closest('table').tBodies[0];
  const rows = Array.from(tbody.rows);
  const asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  const key = r => { const v = r.cells[col].dataset.v ?? r.cells[col].textContent; const n = parseFloat(v);
                     return isNaN(n) ? v : n; };
  rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (asc ? 1 : -1));
  rows.forEach(r => tbody.appendChild(r));
}));
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)} · hep2</title>"
        f"<style>{STYLE}</style></head><body><nav><a href='/'>Classify cells</a><a href='/runs'>Runs</a>"
        f"<a href='/openapi.json'>API (OpenAPI)</a></nav><h1>{html.escape(title)}</h1>{body}"
        f"<p class='note'>hep2: research use only, not a diagnostic device.</p>"
        f"<script>{SORT_JS}</script></body></html>"
    )


def _upload_form(svc: Service, error: str | None = None) -> str:
    err = f"<div class='error' id='error'>{html.escape(error)}</div>" if error else ""
    p = svc.predictor
    return (
        f"{err}<p>Model: <b>{html.escape(p.method_name)}</b> from <code>{html.escape(str(svc.model_dir))}"
        f"</code>; classes: {html.escape(', '.join(p.classes))}.</p>"
        + (
            f"<p class='note'>Transductive model: each cell's probabilities are averaged with those of its "
            f"{p.neighbours.k} nearest cells of the same upload, or of the same folder of a zip (a batch of "
            f"{p.neighbours.k} cells or fewer gets the plain average). Upload one specimen's (one well's) cells at a "
            "time, or a zip with a folder for each.</p>"
            if p.neighbours is not None
            else ""
        )
        + "<form action='/predict' method='post' enctype='multipart/form-data'>"
        "<input type='file' name='files' id='files' multiple accept='image/*,.tif,.tiff,.zip'> "
        "<button type='submit' id='submit'>Classify</button></form>"
        f"<p class='note'>Single segmented cells ({IMAGE_FORMATS}) or zips of them; up to "
        f"{svc.max_files} images and {svc.max_file / 2**20:.0f} MB a file.</p>"
    )


def _thumb(img: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _results_html(svc: Service, out: dict) -> str:
    classes = list(svc.predictor.classes)
    batch = svc.batches[out["batch"]]
    s = out["summary"]
    counts = ", ".join(f"{html.escape(c)}: {n}" for c, n in s["counts"].items())
    head = "".join(f"<th>p({html.escape(c)})</th>" for c in classes)
    rows = []
    for r, img in zip(out["results"], batch["thumbs"]):
        probs = "".join(f"<td data-v='{r['probabilities'][c]:.6f}'>{r['probabilities'][c]:.3f}</td>" for c in classes)
        rows.append(
            f"<tr><td><img class='thumb' src='{_thumb(img)}' alt=''></td>"
            f"<td class='l filename'>{html.escape(r['filename'])}</td>"
            f"<td class='l pattern'>{html.escape(r['pattern'])}</td>"
            f"<td data-v='{max(r['probabilities'].values()):.6f}'>{max(r['probabilities'].values()):.3f}</td>"
            f"{probs}</tr>"
        )
    return (
        _fields_html(s, batch)
        + f"<div class='summary' id='summary'>{s['n']} cells. Dominant pattern: <b id='dominant'>"
        f"{html.escape(s['dominant'])}</b> ({s['agreement']:.0%} of the cells). Counts: {counts}."
        + (f" {s['masks']} read with their masks." if s["masks"] else "")
        + (
            " By folder: "
            + "; ".join(
                f"{html.escape(w['folder'])}: <b>{html.escape(w['dominant'])}</b> ({w['agreement']:.0%} of {w['n']})"
                for w in s["folders"]
            )
            + "."
            if s.get("folders")
            else ""
        )
        + (f" Not images, left out: {html.escape(', '.join(s['ignored']))}." if s["ignored"] else "")
        + "".join(f" Note: {html.escape(n)}." for n in s.get("notes", []))
        + (
            f" Transductive: each cell averaged with its {s['neighbours']} nearest of its folder in this upload."
            if s["neighbours"]
            else " Transductive model, but too few cells to smooth: the plain average."
            if svc.predictor.neighbours is not None
            else ""
        )
        + (
            f"</div><div class='error' id='skipped'>Not classified ({len(s['skipped'])}): "
            f"{html.escape('; '.join(s['skipped']))}."
            if s["skipped"]
            else ""
        )
        + "</div>"
        f"<p><a id='csv' href='/batches/{out['batch']}.csv'>Download the table as CSV</a> · click a column "
        "header to sort</p>"
        "<table class='sortable' id='results'><thead><tr><th class='l'>cell</th><th class='l'>file</th>"
        f"<th class='l'>pattern</th><th>probability</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _fields_html(s: dict, batch: dict) -> str:
    """Each uploaded field's call and its overlay (cells outlined, coloured by pattern), for an upload of fields."""
    if not s.get("fields"):
        return ""
    parts = []
    for c, img in zip(s["fields"], batch.get("overlays", {}).values()):
        share = f", {c['share']:.0%} of its {c['cells']} cells" if c.get("share") is not None else ""
        mixed = f"; mixed: {html.escape(c['mixed'])}" if c.get("mixed") else ""
        why = f" <span class='note'>({html.escape(c['note'])})</span>" if c.get("note") else ""
        parts.append(
            f"<div class='field'><p><b>{html.escape(c['field'])}</b>: <span class='call'>{html.escape(c['call'])}"
            f"</span> {html.escape(c['icap'])}{share}; signal index {c['signal_index']:.2f}{mixed}{why}</p>"
            f"<img class='overlay' src='{_thumb(img)}' alt='{html.escape(c['field'])} with its cells outlined'></div>"
        )
    wells = "".join(
        f"<li>{html.escape(w['well'])}: <b>{html.escape(w['call'])}</b> {html.escape(w['icap'])}"
        + (f" <span class='note'>({html.escape(w['note'])})</span>" if w.get("note") else "")
        + "</li>"
        for w in s.get("wells", [])
    )
    return "<div id='fields'>" + "".join(parts) + (f"<p>Wells:</p><ul>{wells}</ul>" if wells else "") + "</div>"


def _fmt(d: dict | None) -> str:
    if not d:
        return "–"
    return f"{d.get('mean', float('nan')):.4f} ± {d.get('std', 0.0):.4f}"


def _method(metrics: dict) -> str:
    """The run's method as the pages name it; a transductive ensemble says so (its figures are not comparable
    with the others')."""
    m = str(metrics.get("method", "compare"))
    return f"{m} (transductive, {metrics['neighbours']} neighbours)" if metrics.get("neighbours") else m


def _run_html(folder: Path) -> str:
    parts = []
    metrics = _read_json(folder / "metrics.json")
    if metrics:
        parts.append(
            "<table><tbody>"
            + "".join(
                f"<tr><td class='l'>{k}</td><td class='l'>{v}</td></tr>"
                for k, v in [
                    ("protocol", html.escape(str(metrics.get("protocol")))),
                    ("method", html.escape(_method(metrics))),
                    ("preset", html.escape(str(metrics.get("preset")))),
                    ("dataset", html.escape(str(metrics.get("dataset")))),
                    ("accuracy", _fmt(metrics.get("accuracy"))),
                    ("mean class accuracy", _fmt(metrics.get("mca"))),
                    ("full train/ → test/", f"{metrics['full']['accuracy']:.4f}" if "full" in metrics else "–"),
                    ("paper's figure", metrics.get("paper_accuracy") or "–"),
                ]
            )
            + "</tbody></table>"
        )
    comparison = _read_json(folder / "comparison.json")
    if comparison:
        rows = "".join(
            f"<tr><td class='l'>{html.escape(r['method'])}</td><td>{_fmt(r.get('accuracy'))}</td>"
            f"<td>{_fmt(r.get('mca'))}</td><td>{r.get('paper_accuracy') or '–'}</td></tr>"
            for r in comparison["rows"]
        )
        parts.append(
            f"<h2>Comparison ({html.escape(str(comparison.get('protocol')))})</h2><table class='sortable'>"
            "<thead><tr><th class='l'>method</th><th>accuracy</th><th>MCA</th><th>paper</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    for fig, title in (
        ("confusion.png", "Confusion matrix"),
        ("reconstructions.png", "Reconstructions"),
        ("curves.png", "Training curves"),
        ("comparison.png", "Comparison"),
    ):
        if (folder / fig).exists():
            parts.append(
                f"<h2>{title}</h2><img class='fig' src='/runs/{html.escape(folder.name)}/files/{fig}' alt='{title}'>"
            )
    if (folder / "report.html").exists():
        parts.append(f"<p><a href='/runs/{html.escape(folder.name)}/files/report.html'>The full report</a></p>")
    return "".join(parts) or "<p>This folder has no metrics yet.</p>"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -- the application -------------------------------------------------------------------------------
def create_app(model_dir, workdir="hep2-serve", runs_root=None, **limits):
    """The FastAPI application over the run folder ``model_dir``."""
    try:
        from fastapi import FastAPI, File, HTTPException, Request, UploadFile
        from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    except ImportError:
        raise Hep2Error("hep2 serve needs FastAPI: pip install fastapi uvicorn python-multipart") from None
    from . import __version__

    svc = Service(model_dir, workdir, runs_root, **limits)
    app = FastAPI(
        title="hep2",
        version=__version__,
        description="Classify HEp-2 cell images into staining patterns with a trained hep2 run.",
    )
    app.state.service = svc

    async def _read(files: list[UploadFile]) -> list[tuple[str, bytes]]:
        out = []
        for f in files:
            data = await f.read(svc.max_file + 1)  # no more than the limit is held per file
            out.append((f.filename or "upload", data))
        return out

    @app.get("/api/health", summary="200 when the model is loaded")
    def health():
        p = svc.predictor
        return {
            "status": "ok",
            "model": str(svc.model_dir),
            "method": p.method_name,
            "classes": list(p.classes),
            "neighbours": p.neighbours.k if p.neighbours is not None else None,
        }

    @app.post("/api/predict", summary="classify uploaded cell images (multipart field `files`; zips allowed)")
    async def api_predict(files: list[UploadFile] = File(default=[])):
        try:
            out = svc.predict(await _read(files))
        except UploadError as e:
            raise HTTPException(e.status, str(e)) from None
        return {"results": out["results"], "summary": out["summary"]}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return _page("Classify HEp-2 cells", _upload_form(svc))

    @app.post("/predict", response_class=HTMLResponse, include_in_schema=False)
    async def page_predict(request: Request):
        form = await request.form()
        files = [f for f in form.getlist("files") if hasattr(f, "read") and (f.filename or "")]
        try:
            out = svc.predict(await _read(files))
        except UploadError as e:
            return HTMLResponse(_page("Classify HEp-2 cells", _upload_form(svc, str(e))), status_code=e.status)
        return _page("Classify HEp-2 cells", _upload_form(svc) + _results_html(svc, out))

    @app.get("/batches/{batch_id}.csv", include_in_schema=False)
    def batch_csv(batch_id: str):
        b = svc.batches.get(batch_id)
        if b is None:
            raise HTTPException(404, f"no batch {batch_id!r}: it expired or never existed; upload again")
        return FileResponse(b["folder"] / "predictions.csv", media_type="text/csv", filename=f"hep2-{batch_id}.csv")

    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    def runs():
        items = []
        for f in svc.run_folders():
            m = _read_json(f / "metrics.json") or {}
            items.append(
                f"<tr><td class='l'><a href='/runs/{html.escape(f.name)}'>{html.escape(f.name)}</a></td>"
                + "".join(
                    f"<td class='l'>{html.escape(str(v))}</td>"
                    for v in (_method(m), m.get("dataset", ""), m.get("protocol", ""), m.get("preset", ""))
                )
                + f"<td>{_fmt(m.get('accuracy'))}</td><td>{_fmt(m.get('mca'))}</td></tr>"
            )
        body = (
            f"<p>Run folders under <code>{html.escape(str(svc.runs_root))}</code>. Compare figures only on the same "
            "dataset and protocol.</p><table class='sortable'><thead><tr><th class='l'>run</th><th class='l'>method"
            "</th><th class='l'>dataset</th><th class='l'>protocol</th><th class='l'>preset</th><th>accuracy</th>"
            "<th>MCA</th></tr></thead><tbody>" + "".join(items) + "</tbody></table>"
        )
        return _page("Runs", body)

    @app.get("/runs/{name}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(name: str):
        try:
            folder = svc.run_folder(name)
        except UploadError as e:
            return HTMLResponse(_page("Run not found", f"<div class='error'>{html.escape(str(e))}</div>"), 404)
        return _page(f"Run {folder.name}", _run_html(folder))

    @app.get("/runs/{name}/files/{file}", include_in_schema=False)
    def run_file(name: str, file: str):
        try:
            folder = svc.run_folder(name)
        except UploadError as e:
            raise HTTPException(404, str(e)) from None
        path = (folder / file).resolve()
        if path.parent != folder or path.suffix not in (".png", ".html", ".md", ".json", ".csv") or not path.is_file():
            raise HTTPException(404, f"no file {file!r} in run {name!r}")
        return FileResponse(path)

    @app.exception_handler(Hep2Error)
    async def hep2_error(request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    return app


def serve(model_dir, host: str = "127.0.0.1", port: int = 8000, workdir="hep2-serve", runs_root=None) -> None:
    try:
        import uvicorn
    except ImportError:
        raise Hep2Error("hep2 serve needs uvicorn: pip install fastapi uvicorn python-multipart") from None
    sock = listening_socket(host, port)  # before the model loads: a busy port is the commonest mistake
    try:
        app = create_app(model_dir, workdir, runs_root)
        shown = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
        print(
            f"hep2 serve: model {model_dir}, working folder {Path(workdir).resolve()}; open "
            f"http://{shown}:{sock.getsockname()[1]}/",
            flush=True,
        )  # the port the system gave, for --port 0
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()


def listening_socket(host: str, port: int):
    """A socket bound to (host, port), or a Hep2Error that names the address and what to do."""
    import socket

    if not 0 <= port <= 65535:
        raise Hep2Error(f"--port {port}: a TCP port lies in 0..65535 (e.g. 8000)")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise Hep2Error(
            f"--host {host}: not a name or address this machine can listen on ({e.strerror}): use "
            "127.0.0.1 (this machine only) or 0.0.0.0 (every network it is on)"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise Hep2Error(
            f"cannot listen on {host}:{port} ({e.strerror}): choose another --port, or stop the program that holds it"
        ) from None
    return sock


__all__ = ["create_app", "serve", "Service", "UploadError"]
