"""`mentor demo`: every recipe on the data that ships with mentor, each part into its own
folder of one run directory, then one page (index.html) and one console table that
compare the parts' results."""

from __future__ import annotations

import html
import pathlib
import time

from mentor import recipes
from mentor.atomic import write_atomically
from mentor.console import duration, print_metrics
from mentor.core.recipe import Demo
from mentor.errors import UsageError


def parts() -> dict[str, Demo]:
    """recipe name → its demo part, in the registry's order."""
    return {r.name: r.demo for r in recipes.every() if r.demo is not None}


def check_parts(names) -> list[str]:
    """The parts asked for (all when none), or a UsageError naming the unknown one."""
    known = parts()
    unknown = [p for p in names if p not in known]
    if unknown:
        raise UsageError(f"unknown demo part {unknown[0]!r}; parts: {', '.join(known)}.")
    return list(names) or list(known)


def _eta(chosen: list[str], done: dict[str, float]) -> str:
    """Time left for the parts not yet done: their yardstick seconds, scaled by how this
    machine compared with the yardstick on the parts already done."""
    yardstick = {name: demo.seconds for name, demo in parts().items()}
    left = [yardstick[p] for p in chosen if p not in done]
    if not left:
        return ""
    ref_done = sum(yardstick[p] for p in done)
    speed = sum(done.values()) / ref_done if ref_done else 1.0
    return f"about {duration(speed * sum(left))} left"


def run_demo(chosen, overrides, out=None, *, resume_anyway: bool = False) -> dict:
    """Run the parts (default all) in order; returns part → metrics."""
    from mentor.run_folders import RunDir, claim, default_run_path

    root = pathlib.Path(out or default_run_path("demo"))
    chosen = check_parts(chosen)
    claim(root, "demo")  # its index.html and part folders go only into a folder of mentor's
    started, seconds, results, dirs = time.time(), {}, {}, {}
    for i, part in enumerate(chosen, 1):
        recipe = recipes.get(part)
        demo = recipe.demo
        part_overrides = list(overrides)
        if demo.teacher_from in dirs:
            part_overrides.append(f"teacher.path={dirs[demo.teacher_from]}")
        config, _ = recipes.load_config(demo.preset, part_overrides)
        run_dir = RunDir(root / part, resume_anyway=resume_anyway)
        print(f"\n[{i}/{len(chosen)}] {part}: {demo.shows} → {run_dir.path}"
              f" ({_eta(chosen, seconds) or 'last part'})", flush=True)
        part_start = time.time()
        results[part] = recipe.run(config, run_dir, name=demo.preset)
        seconds[part] = time.time() - part_start
        print_metrics(results[part], run_dir.path, recipe.say(results[part]))
        dirs[part] = run_dir.path
    total = time.time() - started
    index = write_index(root, results, seconds, total)
    print_summary(results, seconds, total, index)
    return results


def print_summary(results: dict, seconds: dict, total: float, index):
    lines = {part: recipes.get(part).headline(m) for part, m in results.items()}
    width = max(len(line) for line in lines.values())
    print(f"\nmentor demo: {len(results)} part{'s' * (len(results) > 1)} in "
          f"{duration(total)}")
    print(f"  {'part':<12} {'result':<{width}}  time")
    for part, metrics in results.items():
        print(f"  {part:<12} {lines[part]:<{width}}  {duration(seconds[part])}")
    print(f"compare them in {index}")


def write_index(root: pathlib.Path, results: dict, seconds: dict, total: float) -> pathlib.Path:
    """index.html: one row per part (what it shows, its verdict, its key figure, a link to
    its report), the total time."""
    from mentor.runtime import writes

    rows = []
    for i, (part, metrics) in enumerate(results.items(), 1):
        recipe = recipes.get(part)
        preset, what, figure = recipe.demo.preset, recipe.demo.shows, recipe.figure
        img = (f'<a href="{part}/report.html"><img src="{part}/{figure}" alt="{part}: '
               f'{html.escape(figure)}"></a>' if figure and (root / part / figure).is_file()
               else "")
        rows.append(f"""<section id="{part}">
<h2>{i}. {html.escape(part)} <small>{html.escape(what)} · preset <code>{preset}</code> ·
{duration(seconds[part])}</small></h2>
<p class="verdict">{html.escape(recipe.say(metrics))}</p>
{img}
<p><a href="{part}/report.html">the full report</a> · <code>{part}/metrics.json</code></p>
</section>""")
    summary = "\n".join(
        f"<tr><td><a href=\"#{p}\">{html.escape(p)}</a></td><td>{html.escape(recipes.get(p).headline(m))}</td>"
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
        write_atomically(path, page)
    return path
