"""Corruption speed: mentor.corruptions.corrupt against the imagecorruptions package.

    pip install -e ".[bench]"
    python benchmarks/corruptions.py [--reps 5] [--images 256] [--reference-images 32]
                                     [--severity 3] [--write]

Both run side by side in one process on the same 32×32×3 images: mentor corrupts a batch in
one call, imagecorruptions one image at a time (its API). Repetitions are interleaved
(rep 1 of every case, then rep 2, …) after one warm-up call each, and the table reports
medians, so a noisy neighbour slows every row alike; the verdict is the ratio. The two use
different parameter tables (mentor CIFAR-10-C's, imagecorruptions ImageNet-C's) at the same
severity, so the work differs somewhat; a corruption that raises in imagecorruptions (1.1.2
with NumPy 2 / scikit-image 0.26: glass_blur, gaussian_blur, fog) gets a row saying so.
Data: ../shared/data/cifar10_test2k.npz when present, else embedded MNIST-5k at 32×32×3.
--write replaces this benchmark's section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import platform
import statistics
import sys
import time
import types
import warnings
from importlib.metadata import version

import numpy as np

from mentor.corruptions import CORRUPTIONS, corrupt
from mentor.data.resize import resize_and_pad
from mentor.data.sources import load_source
from mentor.pixels import to_channels

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _bench import write_section  # noqa: E402  (benchmarks/ is not a package)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "cifar10_test2k.npz"
SIDE = 32  # px: CIFAR-10-C's image size, the one the robustness goal is stated at
GOAL = 10.0  # × images per second over imagecorruptions


def load(count: int):
    if SHARED.exists():
        return np.load(SHARED)["x"][:count], "cifar10_test2k (shared)"
    x = load_source("embedded:mnist5k").x[:count]
    return to_channels(resize_and_pad(x, SIDE), 3), "embedded:mnist5k at 32×32×3"


def import_imagecorruptions():
    """The package, or None with a message when it is not installed.

    imagecorruptions 1.1.2 imports pkg_resources, which setuptools ≥ 81 no longer ships, for
    `resource_filename` only (to find its frost images): a stand-in resolving paths inside
    the package lets it import.
    """
    try:
        return importlib.import_module("imagecorruptions")
    except ModuleNotFoundError as error:
        if error.name == "imagecorruptions":
            return None
        if error.name != "pkg_resources":
            raise
    stand_in = types.ModuleType("pkg_resources")
    stand_in.resource_filename = lambda package, path: os.path.join(
        os.path.dirname(importlib.import_module(package).__file__), path)
    sys.modules["pkg_resources"] = stand_in
    return importlib.import_module("imagecorruptions")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cases(package, batch, reference, severity):
    """(name, mentor callable, reference callable or the reason it fails) per corruption."""
    out = []
    for name in CORRUPTIONS:
        def ours(name=name):
            corrupt(batch, name, severity)

        def theirs(name=name):
            for image in reference:
                package.corrupt(image, corruption_name=name, severity=severity)

        try:
            theirs()  # also the warm-up
        except Exception as error:  # noqa: BLE001  (any failure is a result to report)
            theirs = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
        ours()
        out.append((name, ours, theirs))
    return out


def table(runs, times, n_ours, n_theirs):
    """Markdown rows, the per-corruption ratios, and the ratio for all shared corruptions
    applied one after another (seconds per image summed)."""
    rows = ["| corruption | mentor images/s | imagecorruptions images/s | ratio |",
            "|---|---|---|---|"]
    ratios, ours_total, theirs_total = [], 0.0, 0.0
    for name, _, theirs in runs:
        ours_seconds = statistics.median(times[name, "ours"]) / n_ours  # per image
        if isinstance(theirs, str):
            rows.append(f"| {name} | {1 / ours_seconds:,.0f} | fails in imagecorruptions "
                        f"(`{theirs}`) | — |")
            continue
        theirs_seconds = statistics.median(times[name, "theirs"]) / n_theirs
        ratios.append(theirs_seconds / ours_seconds)
        ours_total += ours_seconds
        theirs_total += theirs_seconds
        rows.append(f"| {name} | {1 / ours_seconds:,.0f} | {1 / theirs_seconds:,.0f} | "
                    f"{ratios[-1]:.1f}× |")
    rows.append(f"| **all {len(ratios)} in turn** | {1 / ours_total:,.0f} | "
                f"{1 / theirs_total:,.0f} | **{theirs_total / ours_total:.1f}×** |")
    return rows, ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--images", type=int, default=256, help="mentor's batch")
    parser.add_argument("--reference-images", type=int, default=32,
                        help="images imagecorruptions corrupts per repetition")
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    package = import_imagecorruptions()
    if package is None:
        sys.exit('imagecorruptions is not installed: pip install -e ".[bench]"')
    images, data_name = load(max(args.images, args.reference_images))
    batch, reference = images[: args.images], images[: args.reference_images]
    warnings.simplefilter("ignore")  # imagecorruptions' deprecation noise
    runs = cases(package, batch, reference, args.severity)
    times = {}
    for rep in range(args.reps):
        for name, ours, theirs in runs:
            times.setdefault((name, "ours"), []).append(timed(ours))
            if callable(theirs):
                times.setdefault((name, "theirs"), []).append(timed(theirs))
        print(f"rep {rep + 1}/{args.reps}", file=sys.stderr, flush=True)

    rows, ratios = table(runs, times, len(batch), len(reference))
    command = (f"python benchmarks/corruptions.py --reps {args.reps} --images {args.images} "
               f"--reference-images {args.reference_images} --severity {args.severity}")
    section = "\n".join([
        "## Corruptions: mentor.corruptions vs imagecorruptions",
        "",
        f"`{command}` · {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}) · data {data_name} · "
        f"{SIDE}×{SIDE}×3 · severity {args.severity} · imagecorruptions "
        f"{version('imagecorruptions')} · medians of {args.reps} interleaved repetitions "
        "after a warm-up.",
        "",
        *rows,
        "",
        f"Per corruption the ratio's median is {statistics.median(ratios):.1f}×, its "
        f"smallest {min(ratios):.1f}×; the goal is ≥ {GOAL:.0f}× images per second. The last "
        "row applies every corruption both run to each image in turn (the work of generating "
        f"a corrupted test set). mentor corrupts {len(batch)} images per call, "
        "imagecorruptions one per call (its API); the parameter tables differ (CIFAR-10-C "
        "against ImageNet-C), so the work per image differs too. Noise is bound by NumPy's "
        "random draws and JPEG by the codec (PIL, one image at a time, in both).",
    ])
    print(section)
    if args.write:
        write_section("corruptions", section)


if __name__ == "__main__":
    main()
