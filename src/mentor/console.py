"""What a run prints when it ends: the headline numbers, formatted by kind."""

from __future__ import annotations


def print_metrics(metrics: dict, path):
    print("\nresults:")
    for key, value in metrics.items():
        shown = (f"{value:.4f}" if isinstance(value, float) and abs(value) <= 1 and key != "seconds"
                 else value)
        print(f"  {key:<22} {shown}")
    print(f"run directory: {path} (report.html, metrics.json, models)")
