"""`mentor demo`: every recipe on the data that ships with mentor, each part into its own
folder of one run directory, then one page (index.html) and one console table that
compare the parts' results."""

from __future__ import annotations

import html
import pathlib
import time

from mentor.console import duration, print_metrics
from mentor.errors import MentorError
from mentor.verdict import percent, verdict

# part → (preset, what it shows, seconds it took on a 2-core CPU on 2026-11-30, the ETA's
# yardstick: the presets' headers)
DEMO_PARTS = {
    "supervised": ("demo", "small CNN on embedded MNIST-5k", 43),
    "consistency": ("demo-consistency", "a noisy student of that model, under 19 corruptions",
                    66),
    "distill": ("demo-distill", "that model distilled into a student with 7× fewer "
                "parameters and the labels of 200 of its 3600 digits",
                87),
    "adamatch": ("demo-adamatch", "AdaMatch from UCI digit scans to MNIST, against source-only",
                 73),
}

# The figure each part's row of index.html shows: the one that carries its comparison.
_KEY_FIGURE = {"supervised": "curves.png", "consistency": "per_corruption.png",
               "distill": "accuracy.png", "adamatch": "target_accuracy.png"}


def headline(metrics: dict) -> str:
    """The comparison that matters for a part, in one short line."""
    m, recipe = metrics, metrics.get("recipe")
    if recipe == "supervised":
        return f"test {percent(m['test_acc'])} ({m['params']:,} parameters)"
    if recipe == "consistency":
        return (f"corrupted: teacher {percent(m['teacher_corrupt_acc'])} → student "
                f"{percent(m['student_corrupt_acc'])}; clean {percent(m['teacher_clean_acc'])}"
                f" → {percent(m['student_clean_acc'])}")
    if recipe == "distill":
        text = (f"student {percent(m['student_acc'])} ({m['student_params']:,} params)")
        if "student_labels_only_acc" in m:
            text += f" vs labels-only {percent(m['student_labels_only_acc'])}"
        return text + f" vs teacher {percent(m['teacher_acc'])} ({m['teacher_params']:,})"
    if recipe == "adamatch":
        before = (f"source-only {percent(m['source_only_target_acc'])} → "
                  if "source_only_target_acc" in m else "")
        return f"target: {before}AdaMatch {percent(m['target_acc'])}"
    return ""


def _eta(parts: list[str], done: dict[str, float]) -> str:
    """Time left for the parts not yet done: their yardstick seconds, scaled by how this
    machine compared with the yardstick on the parts already done."""
    left = [DEMO_PARTS[p][2] for p in parts if p not in done]
    if not left:
        return ""
    ref_done = sum(DEMO_PARTS[p][2] for p in done)
    speed = sum(done.values()) / ref_done if ref_done else 1.0
    return f"about {duration(speed * sum(left))} left"


def run_demo(parts, overrides, out=None, *, resume_anyway: bool = False) -> dict:
    """Run the parts (default all) in order; returns part → metrics."""
    from mentor.config import load_config
    from mentor.recipes import get_recipe
    from mentor.runs import RunDir, claim, default_run_path

    root = pathlib.Path(out or default_run_path("demo"))
    parts = parts or list(DEMO_PARTS)
    unknown = [p for p in parts if p not in DEMO_PARTS]
    if unknown:
        raise MentorError(f"unknown demo part {unknown[0]!r}; parts: {', '.join(DEMO_PARTS)}.")
    claim(root, "demo")  # its index.html and part folders go only into a folder of mentor's
    started, seconds, results, dirs = time.time(), {}, {}, {}
    for i, part in enumerate(parts, 1):
        preset, what, _ = DEMO_PARTS[part]
        part_overrides = list(overrides)
        if part in ("consistency", "distill") and "supervised" in dirs:
            part_overrides.append(f"teacher.path={dirs['supervised']}")
        config, _ = load_config(preset, part_overrides)
        run_dir = RunDir(root / part, resume_anyway=resume_anyway)
        print(f"\n[{i}/{len(parts)}] {part}: {what} → {run_dir.path}"
              f" ({_eta(parts, seconds) or 'last part'})", flush=True)
        part_start = time.time()
        results[part] = get_recipe(config.recipe).run(config, run_dir, name=preset)
        seconds[part] = time.time() - part_start
        print_metrics(results[part], run_dir.path)
        dirs[part] = run_dir.path
    total = time.time() - started
    index = write_index(root, results, seconds, total)
    print_summary(results, seconds, total, index)
    return results


def print_summary(results: dict, seconds: dict, total: float, index):
    width = max(len(headline(m)) for m in results.values())
    print(f"\nmentor demo: {len(results)} part{'s' * (len(results) > 1)} in "
          f"{duration(total)}")
    print(f"  {'part':<12} {'result':<{width}}  time")
    for part, metrics in results.items():
        print(f"  {part:<12} {headline(metrics):<{width}}  {duration(seconds[part])}")
    print(f"compare them in {index}")


def write_index(root: pathlib.Path, results: dict, seconds: dict, total: float) -> pathlib.Path:
    """index.html: one row per part (what it shows, its verdict, its key figure, a link to
    its report), the total time."""
    from mentor.runtime import writes

    rows = []
    for i, (part, metrics) in enumerate(results.items(), 1):
        preset, what, _ = DEMO_PARTS[part]
        figure = _KEY_FIGURE.get(part)
        img = (f'<a href="{part}/report.html"><img src="{part}/{figure}" alt="{part}: '
               f'{html.escape(figure)}"></a>' if figure and (root / part / figure).is_file()
               else "")
        rows.append(f"""<section id="{part}">
<h2>{i}. {html.escape(part)} <small>{html.escape(what)} · preset <code>{preset}</code> ·
{duration(seconds[part])}</small></h2>
<p class="verdict">{html.escape(verdict(metrics))}</p>
{img}
<p><a href="{part}/report.html">the full report</a> · <code>{part}/metrics.json</code></p>
</section>""")
    summary = "\n".join(
        f"<tr><td><a href=\"#{p}\">{html.escape(p)}</a></td><td>{html.escape(headline(m))}</td>"
        f"<td>{duration(seconds[p])}</td></tr>" for p, m in results.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mentor demo</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .3rem .8rem; border-bottom: 1px solid #ddd;
       text-align: left; }}
.verdict {{ font-size: 1.1rem; background: #eef5fb; border-left: 4px solid #1f77b4;
            padding: .6rem 1rem; }}
small {{ color: #666; font-weight: normal; font-size: .8rem; }}
img {{ max-width: 100%; max-height: 26rem; }} section {{ margin: 2.5rem 0; }}
</style></head><body>
<h1>mentor demo</h1>
<p>Every recipe on data that ships with mentor: 5000 MNIST digits (4000 to train, the same 1000
held back to test the first three parts) and 1797 UCI digit scans (AdaMatch's labeled source;
it adapts to the 5000 MNIST digits and is tested on them, their labels never trained on).
{len(results)} part{"s" * (len(results) > 1)} in {duration(total)}.</p>
<table><tr><th>part</th><th>result</th><th>time</th></tr>
{summary}
</table>
{''.join(rows)}
</body></html>
"""
    path = root / "index.html"
    if writes():  # process 0's, in a multi-process job
        path.write_text(page)
    return path
