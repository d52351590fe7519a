"""The CIFAR-10-C protocol (Hendrycks & Dietterich 2019) for any model and any data.

Accuracy on the clean images, then on each of 19 corruptions × 5 severities, generated on the
fly with the CIFAR parameters (mentor.corruptions) or read from the official CIFAR-10-C
release. `corrupt_acc` is the plain mean over the 15 benchmark corruptions × 5 severities,
the number RobustBench reports; `corrupt_acc_all` adds the 4 extra corruptions.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from mentor.corruptions import BENCHMARK_CORRUPTIONS, CORRUPTIONS, check, corrupt
from mentor.corruptions.tables import tables
from mentor.data.datasets import load_cifar10c
from mentor.data.files import scored_mask
from mentor.data.imageset import ImageSet
from mentor.data.prepare import prepare
from mentor.inference import predict
from mentor.report import save_figure
from mentor.verdict import percent, with_caveats


def _predict(models: dict, x: np.ndarray, batch_size: int) -> dict:
    return {name: np.argmax(predict(m, x, batch_size), axis=-1)
            for name, m in models.items()}


def _progress(done: int, total: int, start: float, label: str):
    if sys.stderr.isatty() or done == total or done % max(1, total // 10) == 0:
        rate = (time.time() - start) / max(done, 1)
        end = "\n" if done == total or not sys.stderr.isatty() else "\r"
        print(f"robustness: {done}/{total} cells ({label}), ~{rate * (total - done):.0f} s left",
              end=end, file=sys.stderr, flush=True)


def sweep(models: dict, data: ImageSet, *, corruptions=None, severities=(1, 2, 3, 4, 5),
          seed: int = 0, batch_size: int = 256, cifar10c_dir=None) -> dict[str, dict]:
    """Accuracy of each model (name → keras.Model) clean and on every corruption cell.

    All models see the same corrupted images. Returns name → metrics dict with `clean_acc`,
    `corrupt_acc`, `corrupt_acc_all` and `corrupt_acc/<corruption>/<severity>`.
    With `cifar10c_dir`, corrupted images and labels come from the official release and
    `data` gives only the clean accuracy.
    """
    names = list(corruptions or CORRUPTIONS)
    check(names, severities)
    clean = _predict(models, data.x, batch_size)
    # A file that could not be read stands in as another image: it counts in no cell, clean
    # or corrupted (the same rows everywhere, so cells stay comparable).
    scored = scored_mask(data.x, data.name)
    out = {m: {"clean_acc": float(np.mean((p == data.y)[scored]))} for m, p in clean.items()}
    cells = [(c, s) for c in names for s in severities]
    start = time.time()
    for i, (c, s) in enumerate(cells, 1):
        if cifar10c_dir is not None:
            cell = prepare(load_cifar10c(cifar10c_dir, c, s), data.image_shape[0],
                           data.image_shape[2])
            x, y = cell.x, cell.y
        else:
            x, y = corrupt(data.x, c, s, seed=seed), data.y
        rows = scored if cifar10c_dir is None else slice(None)
        for m, p in _predict(models, x, batch_size).items():
            out[m][f"corrupt_acc/{c}/{s}"] = float(np.mean((p == y)[rows]))
        _progress(i, len(cells), start, f"{c} {s}")
    for m, metrics in out.items():
        bench = [metrics[f"corrupt_acc/{c}/{s}"] for c in names if c in BENCHMARK_CORRUPTIONS
                 for s in severities]
        every = [metrics[f"corrupt_acc/{c}/{s}"] for c in names for s in severities]
        if bench:
            metrics["corrupt_acc"] = float(np.mean(bench))
        metrics["corrupt_acc_all"] = float(np.mean(every))
    return out


def subset(data: ImageSet, max_images: int, seed: int) -> ImageSet:
    """A seeded subset of at most `max_images` images (all of them when 0), in data order."""
    if not max_images or max_images >= len(data):
        return data
    rows = np.sort(np.random.default_rng(seed).permutation(len(data))[:max_images])
    return data.subset(rows, f"{data.name}/subset")


def _grid(metrics: dict) -> tuple[list[str], list[int], np.ndarray]:
    names = list(dict.fromkeys(k.split("/")[1] for k in metrics if k.startswith("corrupt_acc/")))
    sevs = sorted({int(k.split("/")[2]) for k in metrics if k.startswith("corrupt_acc/")})
    return names, sevs, np.array([[metrics[f"corrupt_acc/{c}/{s}"] for s in sevs]
                                  for c in names])


def heatmap(results: dict[str, dict], path, title: str = "accuracy under corruption", *,
            images: int | None = None):
    """One panel per model: corruptions × severities, accuracy in each cell. `images`: how
    many test images the sweep used (its clean accuracy is on those same images, which
    may be a subset of the test set the report's table counts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    names, sevs, _ = _grid(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 + 2.6 * len(results), 0.32 * len(names) + 1.6),
                             squeeze=False)
    for ax, (model, m) in zip(axes[0], results.items()):
        _, _, grid = _grid(m)
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (r, col), v in np.ndenumerate(grid):
            ax.text(col, r, f"{100 * v:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.6 else "black")
        ax.set_xticks(range(len(sevs)), [str(s) for s in sevs])
        ax.set_yticks(range(len(names)), names if ax is axes[0][0] else [""] * len(names))
        ax.set_xlabel("severity")
        ax.set_title(f"{model}\nclean {100 * m['clean_acc']:.1f} % · corrupted "
                     f"{100 * m.get('corrupt_acc', m['corrupt_acc_all']):.1f} %", fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="accuracy")
    fig.suptitle(title + (f" ({images:,} test images, each corrupted at every cell)"
                          if images else ""), fontsize=10)
    save_figure(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def difference_heatmap(results: dict[str, dict], path, *, base: str, other: str):
    """`other` − `base` accuracy in every corruption × severity cell, in points: blue
    where `other` is better, red where worse, white where they tie."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    names, sevs, a = _grid(results[base])
    _, _, b = _grid(results[other])
    diff = 100 * (b - a)
    reach = max(5.0, float(np.abs(diff).max()))  # symmetric: 0 is white
    fig, ax = plt.subplots(figsize=(4.6, 0.32 * len(names) + 1.6))
    im = ax.imshow(diff, vmin=-reach, vmax=reach, cmap="RdBu", aspect="auto")
    for (r, col), v in np.ndenumerate(diff):
        ax.text(col, r, f"{v:+.0f}", ha="center", va="center", fontsize=7,
                color="white" if abs(v) > 0.6 * reach else "black")
    ax.set_xticks(range(len(sevs)), [str(s) for s in sevs])
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("severity")
    ax.set_title(f"{other} − {base}, accuracy points", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="points")
    save_figure(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def compare_bars(results: dict[str, dict], path):
    """Mean accuracy over severities per corruption, one bar per model, clean first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    per = {m: tables(r)[0] for m, r in results.items()}
    names = ["clean"] + list(next(iter(per.values())))
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names) + 2), 3.4))
    for i, (model, means) in enumerate(per.items()):
        values = [results[model]["clean_acc"]] + [means[n] for n in names[1:]]
        ax.bar(np.arange(len(names)) + (i - (len(results) - 1) / 2) * width, values, width,
               label=model)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (mean over severities)")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def say(m: dict) -> str:
    """The verdict of `mentor robustness`: how much of its clean accuracy a model keeps."""
    key = "corrupt_acc" if "corrupt_acc" in m else "corrupt_acc_all"
    kept = m[key] / m["clean_acc"] if m["clean_acc"] else 0.0
    return with_caveats(m, (
        f"The model classifies {percent(m['clean_acc'])} of the {m['images']:,} clean "
        f"images and {percent(m[key])} of their corrupted versions: under corruption it "
        f"keeps {100 * kept:.0f} % of its clean accuracy."))
