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

from mentor.errors import MentorError

matplotlib.use("Agg")  # files only: runs happen on servers without a display
import matplotlib.pyplot as plt  # noqa: E402


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


def plot_history(history_csv, path, title: str = "training") -> pathlib.Path:
    """Loss, accuracy and learning rate per epoch, train beside validation."""
    h = read_history(history_csv)
    epochs = [e + 1 for e in h.get("epoch", range(len(next(iter(h.values()), []))))]
    panels = [("loss", [k for k in h if k.endswith("loss")]),
              ("accuracy" + (" and agreement with the teacher" if any("agreement" in k for k in h)
                            else ""), [k for k in h if "acc" in k or "agreement" in k]),
              ("KL to the teacher", [k for k in h if k.endswith("kl")]),
              ("μ and mask rate", [k for k in h if k in ("mu", "mask_rate")]),
              ("learning rate", [k for k in h if k == "learning_rate"])]
    panels = [(name, keys) for name, keys in panels if keys]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels):
        for key in keys:
            ax.plot(epochs, h[key], marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
    figure.savefig(path, dpi=80)
    return path


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return html.escape(str(value))


def write_report(path, title: str, metrics: dict, figures: list[tuple[str, str]],
                 config_text: str = "") -> pathlib.Path:
    """A self-contained page: the metrics table, the figures (relative paths), the config."""
    rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{_format(v)}</td></tr>"
                     for k, v in metrics.items())
    figs = "\n".join(f'<figure><img src="{html.escape(src)}" alt="{html.escape(cap)}">'
                     f"<figcaption>{html.escape(cap)}</figcaption></figure>"
                     for cap, src in figures)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }}
table {{ border-collapse: collapse; }} td {{ padding: .2rem .8rem; border-bottom: 1px solid #ddd; }}
td:last-child {{ text-align: right; font-variant-numeric: tabular-nums; }}
img {{ max-width: 100%; }} figure {{ margin: 1.5rem 0; }} figcaption {{ color: #555; }}
pre {{ background: #f6f6f6; padding: 1rem; overflow-x: auto; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Metrics</h2><table>{rows}</table>
<h2>Figures</h2>{figs}
<h2>Config</h2><pre>{html.escape(config_text)}</pre>
</body></html>
"""
    path = pathlib.Path(path)
    path.write_text(page)
    return path


def teacher_student_bars(metrics: dict, path):
    """Teacher, student and (when trained) labels-only student: accuracy and parameters."""
    rows = [("teacher", metrics["teacher_acc"], metrics["teacher_params"]),
            ("student\n(distilled)", metrics["student_acc"], metrics["student_params"])]
    if "student_labels_only_acc" in metrics:
        rows.append(("student\n(labels only)", metrics["student_labels_only_acc"],
                     metrics["student_params"]))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bars = ax.bar([r[0] for r in rows], [r[1] for r in rows],
                  color=["#555", "#1f77b4", "#aaa"][:len(rows)])
    for bar, (_, acc, params) in zip(bars, rows):
        ax.text(bar.get_x() + bar.get_width() / 2, acc, f"{acc:.3f}\n{params / 1e6:.2f} M params",
                ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("test accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
