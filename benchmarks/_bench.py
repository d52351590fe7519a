"""Shared by the benchmarks: interleaved timing and writing a section of docs/benchmarks.md.

(benchmarks/ is not a package: scripts run as `python benchmarks/NAME.py`, which puts this
folder on sys.path.)
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10_train5k.npz"


def photos_32():
    """(5,000 real images at 32×32×3 as an ImageSet, what they are): CIFAR-10 from
    ../shared/data when present, else the embedded MNIST-5k in colour. Imports mentor only
    when called, so a loader worker importing a benchmark script loads no Keras."""
    from mentor.data.prepare import prepare
    from mentor.data.sources import load_source

    if SHARED_CIFAR.exists():
        return prepare(load_source(str(SHARED_CIFAR)), 32, 3), "cifar10_train5k (shared)"
    return prepare(load_source("embedded:mnist5k"), 32, 3), "embedded:mnist5k at 32×32×3"


def interleaved(cases: dict, reps: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each case (name → zero-argument function), timing
    repetition 1 of every case, then repetition 2 of every case, …, so that a noisy
    neighbour slows all cases alike."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in cases}
    for rep in range(reps):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
        print(f"rep {rep + 1}/{reps}", file=sys.stderr, flush=True)
    return {name: statistics.median(t) for name, t in times.items()}


def limit_table(medians: dict[str, float], labels: dict[str, str],
                base: str = "limit") -> list[str]:
    """Markdown rows "label | median ms | × base" for each case in `labels`, in order."""
    rows = ["| step | median ms | × limit |", "|---|---|---|"]
    for key, label in labels.items():
        rows.append(f"| {label} | {1000 * medians[key]:.1f} | "
                    f"{medians[key] / medians[base]:.2f}× |")
    return rows


def write_section(key: str, section: str, path: pathlib.Path = DOCS):
    """Replace the text between <!-- key --> markers (append the section if absent)."""
    begin, end = f"<!-- {key} -->", f"<!-- /{key} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{section}\n{end}"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
