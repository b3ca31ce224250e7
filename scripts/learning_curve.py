"""Learning curve on scarce reference data: pretrained against from scratch (issue #15).

From one training recipe whose predictor and energy model start from a pretrained checkpoint
(``start_from``, e.g. ``training/sevennet-cuau.yaml``), it trains, for every fraction of the
target data (``data_fraction``: the first part of every training trajectory), the recipe as it
is ("pretrained") and the same architecture from random weights ("scratch", read from the
checkpoint, with ``--scratch-lr``), each for the recipe's steps; then it evaluates every run's
last checkpoint on the recipe's held-out store (``validation_store``) and prints a markdown table
(energy and force errors, stride errors as fractions of free flight), the fraction at which
the pretrained runs reach the from-scratch run on all the data, writes ``<out>/learning_curve.csv``
and, with ``--figure``, a plot. Runs live in ``<out>/<start>-<fraction>``; rerunning resumes
unfinished runs and skips finished ones::

    python scripts/learning_curve.py training/sevennet-cuau.yaml --fractions 0.05 0.1 0.25 1 \
        --out runs/learning-curve --figure docs/learning-curve-sevennet-cuau.png
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import torch

from flashmd.data.store import TrajectoryStore
from flashmd.models.io import checkpoint_path, read_checkpoint
from flashmd.train.config import ModelSpec, TrainConfig, load_train_config
from flashmd.train.trainer import Trainer
from flashmd.train.validation import validate_run

#: Columns of the table: metric key, heading, format.
COLUMNS = (
    ("energy_rmse_meV_atom", "E meV/atom", "{:.1f}"),
    ("forces_rmse_meV_A", "F meV/Å", "{:.0f}"),
    ("pos_ratio_16", "q 16 fs", "{:.3f}"),
    ("pos_ratio_32", "q 32 fs", "{:.3f}"),
    ("pos_ratio_64", "q 64 fs", "{:.3f}"),
    ("mom_ratio_32", "p 32 fs", "{:.3f}"),
)
#: What "reaches the from-scratch accuracy on all the data" is judged by.
CLAIM_METRICS = ("forces_rmse_meV_A", "pos_ratio_32")


def scratch_spec(checkpoint: str, kind: str) -> ModelSpec:
    """A spec building ``kind`` of ``checkpoint``'s architecture with fresh random weights."""
    entry = read_checkpoint(checkpoint_path(checkpoint))["models"][kind]
    overrides = {k: v for k, v in entry["config"].items() if k not in ("species", "strides_fs")}
    return ModelSpec(preset="small", overrides=overrides)


def run_config(base: TrainConfig, start: str, fraction: float, out: Path, lr: float) -> TrainConfig:
    """The recipe of one run of the curve."""
    update: dict = {
        "name": f"{base.name}-{start}-{fraction:g}",
        "output": str(out / f"{start}-{fraction:g}"),
        "data_fraction": fraction,
    }
    if start == "scratch":
        checkpoint = base.predictor.start_from
        update.update(
            predictor=scratch_spec(checkpoint, "predictor"),
            energy_model=scratch_spec(base.energy_model.start_from, "energy"),
            lr=lr,
        )
    return base.model_copy(update=update)


def train(config: TrainConfig) -> None:
    """Train ``config`` to its last step, resuming a run already started."""
    state = Path(config.output) / "state.pt"
    if state.exists():
        if torch.load(state, map_location="cpu", weights_only=False)["step"] >= config.steps:
            return
        Trainer(config, resume=True).run()
    else:
        Trainer(config).run()


def target_picoseconds(config: TrainConfig, fraction: float) -> float:
    """Picoseconds of the training store's trajectories the fraction keeps."""
    store = TrajectoryStore.open(config.store)
    total = 0.0
    for traj_id in store.ids():
        reader = store[traj_id]
        frames = math.ceil(fraction * reader.n_frames)
        total += (frames - 1) * float(reader.attrs["sample_interval_fs"]) / 1000
    return total


def learned_rows(base: TrainConfig, learn_recipe: str, val_pairs: int) -> list[dict]:
    """One row per finished iteration of the ``flashmd learn`` run of ``learn_recipe`` (started
    from one of the curve's runs): its model on the same held-out store, its target data the
    fraction it kept plus every label of the iterations so far."""
    from flashmd.learn.recipe import load_learn_recipe

    recipe = load_learn_recipe(learn_recipe)
    folder = Path(recipe.output)
    fraction = recipe.data_fraction or base.data_fraction
    labels = (
        TrajectoryStore.open(folder / "labels.zarr") if (folder / "labels.zarr").exists() else None
    )
    label_ps = {}  # picoseconds labelled, by iteration
    for traj_id in labels.ids() if labels else []:
        reader = labels[traj_id]
        k = int(reader.attrs["iteration"])
        span = (reader.n_frames - 1) * float(reader.attrs["sample_interval_fs"]) / 1000
        label_ps[k] = label_ps.get(k, 0.0) + span
    kept_ps = target_picoseconds(base, fraction)
    rows = []
    for run in sorted(folder.glob("iter-*/train")):
        if not (run / "last.pt").exists():
            continue
        k = int(run.parent.name.split("-")[1])
        config = base.model_copy(update={"output": str(run), "data_fraction": fraction})
        labelled = sum(ps for i, ps in label_ps.items() if i <= k)
        rows.append(
            {
                "start": f"learned-{k}",
                "fraction": fraction,
                "target_ps": kept_ps + labelled,
                **validate_run(config, val_pairs, checkpoint="last.pt"),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    heading = "| start | data | target ps | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [heading, "|" + "---|" * (3 + len(COLUMNS))]
    for row in rows:
        cells = [fmt.format(row.get(key, math.nan)) for key, _, fmt in COLUMNS]
        lines.append(
            f"| {row['start']} | {100 * row['fraction']:g} % | {row['target_ps']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def claim(rows: list[dict]) -> str:
    """The smallest fraction at which the pretrained runs are at least as accurate as the
    from-scratch run on all the data, for each metric of ``CLAIM_METRICS``."""
    full = [r for r in rows if r["start"] == "scratch" and r["fraction"] == 1.0]
    if not full:
        return "no from-scratch run on all the data to compare with"
    parts = []
    for metric in CLAIM_METRICS:
        reached = [
            r["fraction"]
            for r in rows
            if r["start"] == "pretrained" and r.get(metric, math.inf) <= full[0].get(metric, -1)
        ]
        found = f"{100 * min(reached):g} %" if reached else "not within the fractions run"
        parts.append(f"{metric}: {found}")
    return "pretraining reaches the from-scratch accuracy on 100 % of the data with " + "; ".join(
        parts
    )


def _ps(row: dict) -> float:
    return row["target_ps"]


def figure(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    metrics = [
        ("forces_rmse_meV_A", "force RMSE (meV/Å)"),
        ("pos_ratio_32", "32 fs q error / free flight"),
    ]
    fig, axes = plt.subplots(1, len(metrics), figsize=(9, 3.4))
    for ax, (key, label) in zip(axes, metrics, strict=True):
        for start, style in (("scratch", "o--"), ("pretrained", "s-")):
            mine = sorted((r for r in rows if r["start"] == start), key=lambda r: r["fraction"])
            ax.plot([r["target_ps"] for r in mine], [r[key] for r in mine], style, label=start)
        learned = sorted((r for r in rows if r["start"].startswith("learned")), key=_ps)
        if learned:
            points = [_ps(r) for r in learned], [r[key] for r in learned]
            ax.plot(*points, "*-", ms=10, label="pretrained, part + active learning")
        ax.set_xscale("log")
        ticks = sorted({round(_ps(r), 1) for r in rows if not r["start"].startswith("learned")})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("target data (ps of reference MD)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].legend(loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", help="training recipe with start_from and validation_store")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25, 1.0])
    parser.add_argument("--starts", nargs="+", default=["pretrained", "scratch"])
    parser.add_argument("--scratch-lr", type=float, default=3e-3)
    parser.add_argument("--steps", type=int, help="steps of every run (default: the recipe's)")
    parser.add_argument("--val-pairs", type=int, default=256, help="held-out pairs per stride")
    parser.add_argument("--out", default="runs/learning-curve")
    parser.add_argument("--figure", help="PNG to write the curve to")
    parser.add_argument("--no-train", action="store_true", help="evaluate finished runs only")
    parser.add_argument(
        "--learned",
        metavar="LEARN_RECIPE",
        help="also a row per iteration of this flashmd learn run started from one of the curve's",
    )
    args = parser.parse_args()
    base = load_train_config(args.recipe, **({"steps": args.steps} if args.steps else {}))
    if base.validation_store is None or base.predictor.start_from is None:
        parser.error("the recipe needs validation_store and predictor/energy_model start_from")
    out = Path(args.out)
    rows = []
    for fraction in args.fractions:
        for start in args.starts:
            config = run_config(base, start, fraction, out, args.scratch_lr)
            if not args.no_train:
                train(config)
            if not (Path(config.output) / "last.pt").exists():
                continue
            metrics = validate_run(config, args.val_pairs, checkpoint="last.pt")
            rows.append(
                {
                    "start": start,
                    "fraction": fraction,
                    "target_ps": target_picoseconds(config, fraction),
                    **metrics,
                }
            )
    if args.learned:
        rows += learned_rows(base, args.learned, args.val_pairs)
    if not rows:
        parser.error(f"no finished run in {out} to evaluate")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "learning_curve.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(table(rows))
    print(claim(rows))
    if args.figure:
        figure(rows, args.figure)


if __name__ == "__main__":
    main()
