"""``learning.csv`` and ``learning.png``: how a learning run's metrics move with the reference
calls it spends (the rows of :meth:`flashmd.learn.loop.LearnLoop.rows`)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

from flashmd.learn.files import write_atomically


def write_csv(rows: Sequence[dict[str, float]], path: str | Path) -> None:
    """One row per iteration; columns are the union of the rows' keys (blank where missing)."""
    fields: list[str] = []
    for row in rows:
        fields += [name for name in row if name not in fields]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, text.getvalue())


#: Panels of the figure: (title, column prefix, y label, whether the column describes the
#: model that *entered* the iteration, plotted at the calls spent before it).
PANELS = (
    ("strides redone while exploring", "explore_fallback_", "fraction of strides", True),
    ("error on its own new states", "own_pos_rmse_", "position RMSE (Å)", True),
    ("error on the held-out trajectories", "val_pos_rmse_", "position RMSE (Å)", False),
    ("held-out conditions: strides redone", "heldout_fallback_", "fraction of strides", False),
    ("held-out conditions: V - reference", "heldout_potential_", "meV/atom", False),
    (
        "held-out conditions: observables failed",
        "heldout_failed_",
        "metrics out of tolerance",
        False,
    ),
)


def _natural(name: str) -> tuple:
    """Sort key: numbers in ``name`` by value (``16`` before ``64``, ``750K_32`` before
    ``750K_64``)."""
    return tuple(float(part) if part else 0.0 for part in re.findall(r"(\d+\.?\d*)", name))


def plot_learning(rows: Sequence[dict[str, float]], path: str | Path) -> None:
    """Each panel of :data:`PANELS` against reference calls, one line per stride."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 7))
    axes = axes.ravel()
    produced = [row.get("reference_calls", 0) for row in rows]
    entered = [0, *produced[:-1]]  # the model entering iteration k is iteration k - 1's
    for ax, (title, prefix, label, entering) in zip(axes, PANELS, strict=True):
        calls = entered if entering else produced
        columns = sorted(
            {name for row in rows for name in row if name.startswith(prefix)}, key=_natural
        )
        for name in columns:
            points = [(c, row[name]) for c, row in zip(calls, rows, strict=True) if name in row]
            if points:
                x, y = zip(*points, strict=True)
                condition = name[len(prefix) :].replace("_", " ")
                ax.plot(x, y, "o-", label=f"{condition} fs")
        if prefix == "heldout_potential_":  # the evaluation's tolerance
            for bound in (-5.0, 5.0):
                ax.axhline(bound, color="grey", linestyle=":", linewidth=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("reference calls spent" + (" before the iteration" if entering else ""))
        ax.set_ylabel(label)
        if columns:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
