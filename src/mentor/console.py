"""What a run prints when it ends: its verdict, the headline numbers formatted by kind, and
for a corruption sweep the mean per corruption (the per-cell values stay in metrics.json)."""

from __future__ import annotations

_SETUP_KEYS = ("recipe", "mode", "backend", "devices", "precision", "seconds")


def duration(seconds: float) -> str:
    """84.2 → "1 min 24 s"; 9.5 → "9.5 s"; 3725 → "1 h 2 min"."""
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def is_fraction_key(key: str) -> bool:
    """Accuracies, agreements and rates are fractions of images: shown as percentages."""
    last = key.split("/")[0]
    if key.startswith("mean over"):  # the robustness report's per-corruption means
        return True
    return last.endswith(("_acc", "_acc_all", "agreement", "_rate")) or last in (
        "acc", "corrupt_acc", "clean_acc")


def format_value(key: str, value) -> str:
    """A metric as a reader wants it: 0.985 → "98.5 %" for accuracies, 72666 → "72,666"
    for counts, 84.2 → "1 min 24 s" for times, a KL in nats to 4 decimals."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if key == "seconds" or key.endswith("_seconds"):
        return duration(float(value))
    if isinstance(value, int):
        return f"{value:,}"
    if is_fraction_key(key):
        return f"{100 * value:.1f} %"
    if key.endswith("kl"):
        return f"{value:.4f} nats"
    return f"{value:.4g}"


def corruption_means(metrics: dict) -> dict[str, dict[str, float]]:
    """model prefix ("", "teacher_", "student_") → corruption → mean over severities."""
    from mentor.corruptions.tables import (
        tables,  # here: `mentor --help` loads no corruptions
    )

    prefixes = dict.fromkeys(k.partition("corrupt_acc/")[0] for k in metrics
                             if "corrupt_acc/" in k)
    return {p: tables({k[len(p):]: v for k, v in metrics.items()
                       if k.startswith(f"{p}corrupt_acc/")})[0] for p in prefixes}


def corruption_table(metrics: dict) -> list[str]:
    """Mean accuracy per corruption, two corruptions a line, each model a column."""
    means = corruption_means(metrics)
    if not means:
        return []
    models = list(means)
    names = list(means[models[0]])
    head = " ".join(f"{(p.rstrip('_') or 'model'):>8}" for p in models)
    cells = [f"{c:<20}" + " ".join(f"{100 * means[p][c]:7.1f}%" for p in models) for c in names]
    half = -(-len(cells) // 2)
    lines = [f"mean accuracy per corruption over its severities ({len(names)} corruptions):",
             f"  {'corruption':<20}{head}    {'corruption':<20}{head}"]
    for left, right in zip(cells[:half], cells[half:] + [""]):
        lines.append(f"  {left}    {right}".rstrip())
    return lines


def print_metrics(metrics: dict, path, said: str = ""):
    """`said`: the run's verdict sentence (its recipe's `say`)."""
    print("\nresults:" + (f" {said}" if said else ""))
    for key, value in metrics.items():
        if "/" in key or key in _SETUP_KEYS:
            continue
        print(f"  {key:<26} {format_value(key, value)}")
    for line in corruption_table(metrics):
        print(line)
    setup = " · ".join(str(metrics[k]) for k in ("backend", "precision") if k in metrics)
    if "seconds" in metrics:
        setup += f" · {duration(metrics['seconds'])}"
    print(f"run directory: {path} (report.html, metrics.json, models) · {setup}")
