"""`mentor demo`: every recipe on the data that ships with mentor, each part into its own
folder of one run directory."""

from __future__ import annotations

from mentor.console import print_metrics
from mentor.errors import MentorError

DEMO_PARTS = {  # part → (preset, what it shows)
    "supervised": ("demo", "small CNN on embedded MNIST-5k"),
    "consistency": ("demo-consistency", "a noisy student of that model, under 19 corruptions"),
    "distill": ("demo-distill", "that model distilled into a student with 7× fewer parameters"),
    "adamatch": ("demo-adamatch", "AdaMatch from UCI digit scans to MNIST, against source-only"),
}


def run_demo(parts, overrides, out=None):
    from mentor.config import load_config
    from mentor.recipes import get_recipe
    from mentor.runs import RunDir, default_run_path

    root = out or default_run_path("demo")
    parts = parts or list(DEMO_PARTS)
    unknown = [p for p in parts if p not in DEMO_PARTS]
    if unknown:
        raise MentorError(f"unknown demo part {unknown[0]!r}; parts: {', '.join(DEMO_PARTS)}.")
    done = {}
    for part in parts:
        preset, what = DEMO_PARTS[part]
        part_overrides = list(overrides)
        if part in ("consistency", "distill") and "supervised" in done:
            part_overrides.append(f"teacher.path={done['supervised']}")
        config, _ = load_config(preset, part_overrides)
        run_dir = RunDir(f"{root}/{part}")
        print(f"\nmentor demo, {part}: {what} → {run_dir.path}", flush=True)
        metrics = get_recipe(config.recipe).run(config, run_dir, name=preset)
        print_metrics(metrics, run_dir.path)
        done[part] = run_dir.path
    return done
