"""Figures and one HTML report per run: training curves, a grid of sample views of the
augmentations, and the page that shows them with the metrics and config."""

from __future__ import annotations

import csv
import html
import pathlib

import matplotlib
import numpy as np
from keras import ops
from matplotlib.figure import Figure

from mentor.atomic import atomic_path, write_atomically
from mentor.console import format_value
from mentor.errors import MentorError
from mentor.runtime import writes
from mentor.verdict import glossary

matplotlib.use("Agg")  # files only: runs happen on servers without a display
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path, **options):
    """`fig.savefig`, in the process that writes the run directory (runtime.writes): every
    process of a multi-process job draws the same figure, one writes it. Through a
    temporary file: a figure cut short is never left under its name."""
    if writes():
        with atomic_path(path) as tmp:
            fig.savefig(tmp, **options)


def read_history(path) -> dict[str, list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                pass
    # A column Keras wrote as "NA" in every row (val_* without validation data) is no curve.
    return {k: v for k, v in columns.items() if len(v) == len(rows)}


# Curve names as a reader says them; a recipe may rename (AdaMatch's validation is source).
CURVE_LABELS = {
    "loss": "training loss", "val_loss": "validation cross-entropy",
    "acc": "training accuracy (augmented views)", "val_acc": "validation accuracy",
    "agreement": "training views", "val_agreement": "validation images",
    "kl": "training views", "val_kl": "validation images",
    "target_acc": "target test accuracy", "pseudo_acc": "pseudo-label accuracy (target)",
    "source_loss": "source cross-entropy", "target_loss": "target pseudo-label loss",
    "mu": "μ (weight of the target loss)", "mask_rate": "mask rate (pseudo-labels kept)",
    "learning_rate": "learning rate",
}


def _panels(h: dict, objective: str | None) -> list[tuple[str, list[str]]]:
    """Which columns share an axis: only quantities of one kind and scale. A recipe's
    training objective (CE + KL·T², KL on mixed views…) is not the validation
    cross-entropy, so with `objective` the two get separate panels."""
    losses = [k for k in ("loss", "source_loss", "target_loss") if k in h]
    panels = ([(objective, losses), ("validation cross-entropy", ["val_loss"])] if objective
              else [("cross-entropy", losses + ["val_loss"])])
    panels += [("accuracy", [k for k in ("acc", "val_acc", "target_acc", "pseudo_acc")
                             if k in h]),
               ("agreement with the teacher", [k for k in h if k.endswith("agreement")]),
               ("KL to the teacher (nats)", [k for k in h if k.endswith("kl")]),
               ("μ and mask rate", [k for k in ("mu", "mask_rate") if k in h]),
               ("learning rate", [k for k in h if k == "learning_rate"])]
    return [(name, [k for k in keys if k in h]) for name, keys in panels
            if any(k in h for k in keys)]


def plot_history(history_csv, path, title: str = "training", *, objective: str | None = None,
                 labels: dict | None = None) -> pathlib.Path:
    """Per-epoch curves of a history.csv, one panel per kind of quantity, train beside
    validation. `objective` names the training loss when it is not a plain cross-entropy
    (it then gets its own panel); `labels` renames curves (column → legend text)."""
    h = read_history(history_csv)
    names = {**CURVE_LABELS, **(labels or {})}
    epochs = [e + 1 for e in h.get("epoch", range(len(next(iter(h.values()), []))))]
    panels = _panels(h, objective)
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.1 * rows), squeeze=False)
    for ax, (name, keys) in zip(axes.flat, panels):
        for key in keys:
            ax.plot(epochs, h[key], marker="o", markersize=3, label=names.get(key, key))
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        if name == "accuracy":
            ax.set_ylim(min(0.0, *(min(h[k]) for k in keys)), 1.0)
        if len(keys) > 1 or names.get(keys[0], keys[0]) != name:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return pathlib.Path(path)


def sample_grid(views, path, *, n=8, title=None):
    """Save a PNG with one row per named view (e.g. "clean", "weak", "strong") of n images.

    `views` maps a row label to images N×H×W×C (or N×H×W), uint8 or floats in [0, 255];
    one-channel images show in grey. Uses matplotlib's Agg canvas (no display). Returns
    `path`.
    """
    if not views:
        raise MentorError("sample_grid needs at least one view")
    cell = 1.2  # inches per image: a 32 px image stays legible, 8 columns fit a page
    label_width = 1.0  # inches for the row labels
    title_height = 0.4 if title else 0.0
    rows = list(views.items())
    figure = Figure(figsize=(label_width + n * cell, title_height + len(rows) * cell))
    axes = figure.subplots(len(rows), n, squeeze=False)
    for (name, images), row in zip(rows, axes):
        images = np.clip(np.round(ops.convert_to_numpy(images)), 0, 255).astype(np.uint8)
        for i, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if i < len(images):
                image = images[i]
                if image.ndim == 3 and image.shape[-1] == 1:
                    image = image[..., 0]
                ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=11)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path, dpi=80)
    return path


def write_report(path, title: str, metrics: dict, figures: list[tuple[str, str]],
                 config_text: str = "", notes: list[str] = (),
                 warnings: list[str] = (), *, verdict: str = "",
                 terms: dict | None = None) -> pathlib.Path:
    """A self-contained page: warnings about the data (above all: they qualify every
    number below), the verdict sentence, the metrics table (formatted by kind), what each
    metric means (`terms`: the recipe's glossary beside the shared one), the figures
    (relative paths), notes, the config."""
    rows = "\n".join(f"<tr><td>{html.escape(k)}</td>"
                     f"<td>{html.escape(format_value(k, v))}</td></tr>"
                     for k, v in metrics.items())
    meanings = "\n".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(text)}</dd>"
                         for k, text in glossary(metrics, terms).items())
    figs = "\n".join(f'<figure><img src="{html.escape(src)}" alt="{html.escape(cap)}">'
                     f"<figcaption>{html.escape(cap)}</figcaption></figure>"
                     for cap, src in figures)
    lead = f'<p class="verdict">{html.escape(verdict)}</p>' if verdict else ""
    extra = "".join(f"<p class=\"note\">{html.escape(n)}</p>" for n in notes)
    alarms = "".join(f"<p class=\"warning\">Warning: {html.escape(w)}</p>" for w in warnings)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }}
.verdict {{ font-size: 1.25rem; background: #eef5fb; border-left: 4px solid #1f77b4;
            padding: .8rem 1rem; }}
.note {{ color: #555; }}
.warning {{ font-size: 1.1rem; background: #fdecea; border-left: 4px solid #c62828;
            padding: .8rem 1rem; }}
table {{ border-collapse: collapse; }} td {{ padding: .2rem .8rem; border-bottom: 1px solid #ddd; }}
td:last-child {{ text-align: right; font-variant-numeric: tabular-nums; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; font-size: .92rem; }}
dt {{ font-family: ui-monospace, monospace; }} dd {{ margin: 0; color: #444; }}
img {{ max-width: 100%; }} figure {{ margin: 1.5rem 0; }} figcaption {{ color: #555; }}
pre {{ background: #f6f6f6; padding: 1rem; overflow-x: auto; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{alarms}{lead}{extra}
<h2>Metrics</h2><table>{rows}</table>
<h2>What the numbers mean</h2><dl>{meanings}</dl>
<h2>Figures</h2>{figs}
<h2>Config</h2><pre>{html.escape(config_text)}</pre>
</body></html>
"""
    path = pathlib.Path(path)
    if writes():
        write_atomically(path, page)
    return path


def bars(rows: list[tuple[str, float, str]], path, ylabel: str = "test accuracy",
         colors=("#555", "#1f77b4", "#aaa")):
    """Side-by-side bars: (label, value in [0, 1], text under the value) per bar."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(rows), 3.2))
    shown = ax.bar([r[0] for r in rows], [r[1] for r in rows], color=list(colors)[:len(rows)])
    for bar, (_, value, text) in zip(shown, rows):
        ax.text(bar.get_x() + bar.get_width() / 2, value,
                f"{100 * value:.1f} %" + (f"\n{text}" if text else ""),
                ha="center", va="bottom", fontsize=8)
    # Accuracies a point apart look equal on an axis from 0: start it twice the spread
    # below the lowest bar (whole percents), and say so on the axis.
    values = [r[1] for r in rows]
    low = max(0.0, int(100 * (min(values) - 2 * (max(values) - min(values)))) / 100)
    ax.set_ylim(low, 1.0 + 0.18 * (1.0 - low))
    ax.set_ylabel(ylabel + (f" (axis from {100 * low:.0f} %)" if low else ""))
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return pathlib.Path(path)


def teacher_student_bars(metrics: dict, path):
    """Teacher, student and (when trained) labels-only student: accuracy and parameters."""
    size = f"{metrics['student_params']:,} params"
    rows = [("teacher", metrics["teacher_acc"], f"{metrics['teacher_params']:,} params"),
            ("student\n(distilled)", metrics["student_acc"], size)]
    if "student_labels_only_acc" in metrics:
        rows.append(("student\n(labels only)", metrics["student_labels_only_acc"], size))
    return bars(rows, path)


def curves(histories: dict, key: str, path, ylabel: str):
    """One column (`key`) of several history.csv files over epochs, one line each: label →
    history path (None or a missing file is left out)."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for label, history in histories.items():
        if history is None or not pathlib.Path(history).is_file():
            continue
        h = read_history(history)
        if key in h:
            ax.plot([e + 1 for e in h.get("epoch", range(len(h[key])))], h[key], marker="o",
                    markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return pathlib.Path(path)
