"""``learning.csv`` and ``learning.png``: how a learning run's metrics move with the reference
calls it spends (the rows of :meth:`flashmd.learn.loop.LearnLoop.rows`)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


def write_csv(rows: Sequence[dict[str, float]], path: str | Path) -> None:
    """One row per iteration; columns are the union of the rows' keys (blank where missing)."""
    fields: list[str] = []
    for row in rows:
        fields += [name for name in row if name not in fields]
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


#: Panels of the figure: (title, column prefix, y label).
PANELS = (
    ("strides redone while exploring", "explore_fallback_", "fraction of strides"),
    ("error on its own states (before retraining)", "own_pos_rmse_", "position RMSE (Å)"),
    ("error on the held-out trajectories", "val_pos_rmse_", "position RMSE (Å)"),
)


def plot_learning(rows: Sequence[dict[str, float]], path: str | Path) -> None:
    """Each panel of :data:`PANELS` against reference calls, one line per stride."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6))
    calls = [row.get("reference_calls", 0) for row in rows]
    for ax, (title, prefix, label) in zip(axes, PANELS, strict=True):
        columns = sorted(
            {name for row in rows for name in row if name.startswith(prefix)},
            key=lambda name: float(name[len(prefix) :]),
        )
        for name in columns:
            points = [(c, row[name]) for c, row in zip(calls, rows, strict=True) if name in row]
            if points:
                x, y = zip(*points, strict=True)
                ax.plot(x, y, "o-", label=f"{name[len(prefix) :]} fs")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("reference calls spent")
        ax.set_ylabel(label)
        if columns:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
