"""What a partition looks like: per-client sizes, label histograms and distances to the
global label distribution, as one DataFrame (its heatmap: fedlib.lab.figures)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def report(parts: list[np.ndarray], labels: np.ndarray, num_labels: int) -> pd.DataFrame:
    """One row per client: n, label_<c> counts, tv (total variation) and emd (earth mover's,
    labels on a line 0..C-1) distance of its label distribution to the global one."""
    labels = np.asarray(labels)
    glob = np.bincount(labels, minlength=num_labels) / len(labels)
    rows = []
    for cid, idx in enumerate(parts):
        counts = np.bincount(labels[idx], minlength=num_labels)
        p = counts / max(counts.sum(), 1)
        rows.append({"client": cid, "n": int(counts.sum()),
                     **{f"label_{c}": int(v) for c, v in enumerate(counts)},
                     "tv": 0.5 * float(np.abs(p - glob).sum()),
                     "emd": float(np.abs(np.cumsum(p - glob)).sum())})
    return pd.DataFrame(rows)

