"""A corruption sweep's cells (`corrupt_acc/<corruption>/<severity>`) summed up by row and by
column, for the console, the reports and the figures alike."""

from __future__ import annotations

import numpy as np


def tables(metrics: dict) -> tuple[dict, dict]:
    """(per corruption mean over severities, per severity mean over corruptions)."""
    cells = {tuple(k.split("/")[1:]): v for k, v in metrics.items()
             if k.startswith("corrupt_acc/")}
    per_c, per_s = {}, {}
    for (c, s), v in cells.items():
        per_c.setdefault(c, []).append(v)
        per_s.setdefault(int(s), []).append(v)
    return ({c: float(np.mean(v)) for c, v in per_c.items()},
            {s: float(np.mean(v)) for s, v in sorted(per_s.items())})
