"""Figures and the one-page report (Markdown and HTML) of a run folder."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..data.images import atomic_write_bytes  # noqa: E402
from ..models.dcae import n_features  # noqa: E402
from .evaluation import PAPER_CONFUSION  # noqa: E402


def save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _short(c: str) -> str:
    return c.replace("_speckled", " sp.").replace("nuclear_membrane", "nuc. membrane").replace("_", " ")


def _matrix(ax, pct, classes, title):
    pct = np.asarray(pct, float)
    ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{pct[i, j]:.1f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if pct[i, j] > 60 else "black",
            )
    ax.set_xticks(range(len(classes)), [_short(c) for c in classes], rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), [_short(c) for c in classes], fontsize=8)
    ax.set_xlabel("true class")
    ax.set_ylabel("predicted class")
    ax.set_title(title, fontsize=9)


def confusion_figure(metrics: dict, path: Path, caption: str) -> None:
    """Our confusion matrix (columns = true class, percent), beside the paper's Figure 2 on SNPHEp-2."""
    conf = metrics["confusion"]
    paper = conf["classes"] == PAPER_CONFUSION["classes"] and str(metrics.get("dataset")).startswith("snphep2:")
    fig, axes = plt.subplots(
        1, 2 if paper else 1, figsize=(11 if paper else 5.2, 4.6), squeeze=False, gridspec_kw={"wspace": 0.45}
    )
    _matrix(axes[0, 0], conf["percent"], conf["classes"], f"ours: {caption}")
    if paper:
        _matrix(
            axes[0, 1],
            PAPER_CONFUSION["matrix"],
            PAPER_CONFUSION["classes"],
            "paper, Figure 2 (SNPHEp-2, accuracy 88.08%;\nprotocol appears to be cell-level cv)",
        )
    save_figure(fig, path)


def reconstructions_figure(originals, recons, path: Path, caption: str) -> None:
    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), squeeze=False)
    for i in range(n):
        for r, img in enumerate((originals[i], recons[i])):
            axes[r, i].imshow(img, cmap="gray", vmin=0, vmax=1)
            axes[r, i].axis("off")
    axes[0, 0].set_title("input", fontsize=8, loc="left")
    axes[1, 0].set_title("reconstruction", fontsize=8, loc="left")
    fig.suptitle(caption, fontsize=9)
    save_figure(fig, path)


def curves_figure(history: dict, path: Path, caption: str) -> None:
    fig, axes = plt.subplots(1, len(history), figsize=(4.5 * len(history), 3.4), squeeze=False)
    for ax, (name, h) in zip(axes[0], history.items()):
        if h:
            ep = [r["epoch"] for r in h]
            ax.plot(ep, [r["train_loss"] for r in h], label="train")
            ax.plot(ep, [r["val_loss"] for r in h], label="held-out")
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{name} ({'MSE' if name == 'autoencoder' else 'cross-entropy'})", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(caption, fontsize=9)
    save_figure(fig, path)


# settings with which a run departs from the paper's method (issue 6's levers); the README's ablation
# table (benchmarks/ablation.py) measures them under both protocols
LEVERS = (
    "scale",
    "denoise",
    "highpass",
    "equalize",
    "ae_views",
    "ae_schedule",
    "ae_augment",
    "ae_intensity",
    "ae_restore",
    "ae_blur",
    "ae_rotation",
    "ae_zoom",
    "ae_noise",
    "ae_mask",
    "ae_crop",
    "features",
    "ae_words",
    "ae_words_layer",
    "tta",
    "tta_samples",
    "ae_ensemble",
    "head",
    "mlp_ensemble",
    "hidden",
    "dropout",
    "mlp_weight_decay",
)


def dcae_description(preset: dict, n_classes: int) -> str:
    """What a dcae-mlp run computes, in words, from its settings."""
    n_ae, kind = preset.get("ae_ensemble", 1), preset.get("features", "conv5")
    n_in = n_features(kind, preset["latent"], preset["widths"], preset.get("ae_words", 0))
    what = {
        "conv5": " from Conv 5",
        "pooled": ": Conv 1–4 maps averaged and max-pooled over the cell",
        "both": ": Conv 5 and the pooled Conv 1–4 maps",
        "words": f": a bag of {preset.get('ae_words')} words of Conv {preset.get('ae_words_layer')}'s local "
        "activations, counted over the cell and four concentric bands",
    }[kind]
    hidden = list(preset["hidden"])
    clf = (
        f"logistic regression on all {n_ae * n_in} values (C 0.01)"
        if preset.get("head") == "logistic"
        else f"a linear softmax classifier {n_in}-{n_classes}"
        if not hidden
        else f"fully connected classifier {n_in}-{'-'.join(map(str, hidden))}-{n_classes}"
    )
    each = f"{n_ae} autoencoders, each" if n_ae > 1 else "the autoencoder"
    views = list(preset.get("ae_views") or [])
    if views:
        each += (
            " reading one view of the cell ("
            + ", ".join(f"high-pass sigma {v:g}" if v else "unfiltered" for v in views)
            + ", in turn)"
        )
    own = "" if preset.get("head") == "logistic" else " with its own classifiers"
    return f"`dcae-mlp`: DCAE features ({n_in} values{what}; {each}{own}) + {clf}"


# sizes and training settings: the paper gives Table I's sizes and none of the rest (preset paper's are our reading)
SCALE = (
    "size",
    "widths",
    "latent",
    "ae_epochs",
    "ae_batch",
    "ae_lr",
    "ae_patience",
    "mlp_epochs",
    "mlp_batch",
    "mlp_lr",
    "mlp_patience",
)


def levers(preset: dict, keys=LEVERS) -> list[str]:
    """The run's settings among ``keys`` that differ from preset paper's, as markdown items."""
    from ..presets import PRESETS

    paper = PRESETS["paper"].to_dict()
    return [
        f"- `{k}` = {preset[k]!r} (preset `paper`: {paper[k]!r})" for k in keys if k in preset and preset[k] != paper[k]
    ]


def results_markdown(metrics: dict, note=()) -> str:
    """The report's figures: per split, mean ± std (and `full`), ``note``, per class, confusion."""
    acc, mca = metrics["accuracy"], metrics["mca"]
    lines = ["## Results", "", "| split | accuracy | mean class accuracy |", "|---|---|---|"]
    lines += [f"| {k} | {v:.4f} | {mca['per_split'][k]:.4f} |" for k, v in acc["per_split"].items()]
    lines += [
        f"| **mean ± std** | **{acc['mean']:.4f} ± {acc['std']:.4f}** | **{mca['mean']:.4f} ± {mca['std']:.4f}** |"
    ]
    if "full" in metrics:
        lines += [f"| full (train/ → test/) | {metrics['full']['accuracy']:.4f} | {metrics['full']['mca']:.4f} |"]
    sp = metrics.get("specimens")
    if sp:
        wrong = [
            f"{w['specimen']} ({k}: {w['true']} read as {w['predicted']})" for k, ws in sp["wrong"].items() for w in ws
        ]
        lines += [
            "",
            "**Specimen level**, the call a lab reports: each test specimen's dominant pattern (its cells' most "
            f"frequent call) against its label: **{sp['accuracy']['mean']:.4f} ± {sp['accuracy']['std']:.4f}** "
            "over the splits ("
            + ", ".join(f"{k} {v:.3f} of {sp['n'][k]}" for k, v in sp["accuracy"]["per_split"].items())
            + "). "
            + (f"Wrong: {'; '.join(wrong)}." if wrong else "No specimen wrong."),
        ]
    lines += list(note)
    lines += [
        "",
        "## Per class (pooled over splits)",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        for c, m in metrics["per_class"].items()
    ]
    conf = metrics["confusion"]
    lines += [
        "",
        "## Confusion matrix (rows predicted, columns true class, % of each true class)",
        "",
        "| predicted \\ true | " + " | ".join(conf["classes"]) + " |",
        "|---" * (len(conf["classes"]) + 1) + "|",
    ]
    lines += [
        f"| {c} | " + " | ".join(f"{v:.1f}" for v in row) + " |" for c, row in zip(conf["classes"], conf["percent"])
    ]
    lines += ["", "![confusion](confusion.png)", ""]
    return "\n".join(lines)


def markdown(metrics: dict, config: dict, cells) -> str:
    p = metrics["protocol"]
    preset = config["preset"]["name"]
    lines = [
        f"# hep2 run: {metrics['dataset']}",
        "",
        f"- **Dataset**: `{metrics['dataset']}` ({len(cells)} cells, classes: {', '.join(cells.classes)})",
        f"- **Protocol**: `{p}`: {metrics['protocol_description']}"
        + (f"; subset `{config['subset']}`" if config.get("subset") else ""),
        (
            f"- **Method**: {dcae_description(config['preset'], len(cells.classes))}"
            if config["method"] == "dcae-mlp"
            else f"- **Method**: `{config['method']}`: {config.get('method_description', '')}"
        ),
        f"- **Preset**: `{preset}` (input {config['input_size']}x{config['input_size']}"
        + (f", widths {config['preset']['widths']})" if config["method"] == "dcae-mlp" else ")"),
        "",
    ]
    lines += [f"> **The data**: {problem}." for problem in cells.problems] + ([""] if cells.problems else [])
    from .methods import PUBLISHED_INPUT  # the input settings

    used = config.get("preprocess") or {}  # what the method's input was (the baselines keep theirs published)
    on = [f"`{k}` = {used[k]!r}" for k in PUBLISHED_INPUT if used.get(k)]
    if on and config["method"] != "dcae-mlp":  # dcae-mlp lists them among its departures below
        lines[-1:-1] = [f"- **Input settings**: {', '.join(on)}"]
    if config["method"] == "bow":  # an unsupervised stage other than an autoencoder: the codebook
        lines += [
            (
                "> The codebook was learnt, without labels, from images that include the held-out test cells of "
                "each split."
                if config.get("autoencoder_saw_test_images")
                else "> The codebook was learnt from the training images only; no test image was seen."
            ),
            "",
        ]
    elif config["method"] != "dcae-mlp":
        lines += ["> This method has no unsupervised stage: nothing was learnt from test images.", ""]
    elif config.get("autoencoder_saw_test_images"):
        lines += [
            "> The autoencoder was trained, without labels, on images that include the held-out "
            "test cells of each split" + (" (cell-level cv: the paper's reading)." if p == "cv" else "."),
            "",
        ]
    else:
        lines += ["> The autoencoder was trained on the training images only; no test image was seen.", ""]
    if config["method"] == "dcae-mlp":
        changed, scaled = levers(config["preset"]), levers(config["preset"], SCALE)
        lines += ["## Departures from the paper's method", ""]
        lines += (
            changed
            + [
                "",
                "Their effect, one by one under both protocols, is the README's ablation table "
                "(`benchmarks/ablation.py`, from run folders).",
            ]
            if changed
            else ["None of the method's: the paper's features and classifier."]
        )
        if scaled:
            lines += [
                "",
                "Sizes and training settings unlike preset `paper`'s (Table I's sizes; the paper gives no "
                "training schedule, so `paper`'s is this project's reading):",
                "",
                *scaled,
            ]
        lines += [""]
    note = []
    if metrics.get("paper_accuracy"):  # set on SNPHEp-2 only
        note = [
            "",
            f"The paper reports {metrics['paper_accuracy']:.2%} on SNPHEp-2 with this method; its "
            "protocol appears to be cell-level cross-validation, which is optimistic compared with the "
            "official specimen-disjoint split.",
        ]
    lines += [results_markdown(metrics, note)]
    if metrics.get("reconstruction_mse") is not None:
        lines += [
            "## Autoencoder",
            "",
            f"Held-out reconstruction MSE: {metrics['reconstruction_mse']:.5f}",
            "",
            "![reconstructions](reconstructions.png)",
            "",
        ]
    lines += ["![curves](curves.png)", ""]
    lines += ["## Time", ""]
    lines += [f"- {k}: {v:.1f} s" for k, v in metrics["seconds"].items()]
    lines += [
        "",
        "Files: config.json (all settings), environment.json, data.json (fingerprint), metrics.json, "
        "predictions.csv, features.npy + features_ids.csv, model/ (weights for `hep2 predict`).",
        "",
    ]
    return "\n".join(lines)


def html_page(md: str, folder: Path) -> str:
    """A self-contained HTML page from the report's Markdown subset (headings, lists, tables,
    quotes, images embedded as data URIs)."""
    out, table = [], []

    def inline(s: str) -> str:
        s = html.escape(s)
        import re

        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
            out.append(
                "<table><tr>"
                + "".join(f"<th>{inline(c)}</th>" for c in cells[0])
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
                + "</table>"
            )
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{inline(line[2:])}</li>")
        elif line.startswith("> "):
            out.append(f"<blockquote>{inline(line[2:])}</blockquote>")
        elif line.startswith("!["):
            name = line[line.index("(") + 1 : -1]
            f = folder / name
            if f.exists():
                data = base64.b64encode(f.read_bytes()).decode()
                out.append(f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></p>')
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#f3f3f3}blockquote{border-left:4px solid #e0a000;margin:1em 0;"
        "padding:.3em 1em;background:#fff8e0}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>hep2 report</title><style>{style}</style>"
        f"</head><body>{''.join(out)}</body></html>\n"
    )


def write_report(out: Path, *, metrics: dict, config: dict, cells, history: dict, originals, reconstructions) -> None:
    caption = f"{metrics['dataset']} | protocol {metrics['protocol']} | preset {config['preset']['name']}"
    confusion_figure(
        metrics,
        out / "confusion.png",
        f"{metrics['dataset']} | {metrics['protocol']}, preset {config['preset']['name']} | accuracy "
        f"{metrics['accuracy']['mean']:.2%}",
    )
    # several autoencoders (ae_ensemble) or classifiers (mlp_ensemble, one block per autoencoder):
    # the figures show the first
    n_ae = max(int(config["preset"].get("ae_ensemble", 1)), 1) if config.get("method") == "dcae-mlp" else 1
    n_clf = n_ae * max(int(config["preset"].get("mlp_ensemble", 1)), 1) if config.get("method") == "dcae-mlp" else 1
    first = [f"the first of {n} {what}" for n, what in ((n_ae, "autoencoders"), (n_clf, "classifiers")) if n > 1]
    if reconstructions is not None:
        reconstructions_figure(
            originals, reconstructions, out / "reconstructions.png", caption + (f" | {first[0]}" if n_ae > 1 else "")
        )
    if any(history.values()):
        curves_figure(
            {k: v for k, v in history.items() if v},
            out / "curves.png",
            caption + (f" | {', '.join(first)}" if first else ""),
        )
    md = markdown(metrics, config, cells)
    if not (out / "curves.png").exists():
        md = md.replace("![curves](curves.png)\n", "")
    atomic_write_bytes(out / "report.md", md.encode())
    atomic_write_bytes(out / "report.html", html_page(md, out).encode())


__all__ = [
    "LEVERS",
    "SCALE",
    "confusion_figure",
    "curves_figure",
    "dcae_description",
    "html_page",
    "levers",
    "markdown",
    "reconstructions_figure",
    "results_markdown",
    "save_figure",
    "write_report",
]
