"""Which uncertainty signal ranks the true stride error? Measured on held-out reference pairs.

For states of a reference store (positions and momenta as the reference had them) every stride
of the model is taken once and compared with the reference ``stride`` later: the true error, per
atom (Å) and per stride (the largest atom error of the system). Candidate signals, each needing
no reference:

  consistency-q   largest |q(Φ_S x) - q(Φ_{S/2}Φ_{S/2} x)| of the system, Å (flashmd.learn)
  consistency-v   the same for velocities, Å/fs
  filter          |α - 1|, the energy filter's factor for that stride (energy model)

and, per atom, the atom's own consistency-q against its error. Prints one table (Spearman rank
correlation, and the share of the worst 5 % strides that the signal's top 5 % flags).

    python scripts/uncertainty_signal.py runs/heldout/reference.zarr --model emt-metals
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from flashmd.data.store import TrajectoryStore
from flashmd.learn.calibration import signal_quality
from flashmd.md import rigid
from flashmd.md.consistency import StrideConsistency
from flashmd.md.filters import constrain, rescale
from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import ModelPotential
from flashmd.md.state import state_from_atoms
from flashmd.md.symplectic import model_propagator
from flashmd.models.io import load_model


def origins(store: TrajectoryStore, per_trajectory: int, lookahead: int) -> list[tuple[str, int]]:
    """(trajectory, frame) origins spread evenly over each trajectory."""
    chosen = []
    for traj_id in store.ids():
        last = store[traj_id].n_frames - 1 - lookahead
        frames = np.linspace(0, last, per_trajectory).round().astype(int)
        chosen += [(traj_id, int(f)) for f in np.unique(frames)]
    return chosen


def measure(args: argparse.Namespace) -> dict[float, dict[str, np.ndarray]]:
    model = load_model(args.model)
    store = TrajectoryStore.open(args.store)
    interval = {float(store[t].attrs["sample_interval_fs"]) for t in store.ids()}.pop()
    strides = [s for s in model.strides_fs if (s / interval).is_integer()]
    propagator = model_propagator(model, args.symplectic, None)
    consistency = StrideConsistency(propagator, model.strides_fs)
    potential = ModelPotential(model)
    cache = NeighborCache(model.cutoff, 1.0)
    lookahead = round(max(strides) / interval)
    results: dict[float, dict[str, list]] = {
        s: {
            "q": [],
            "v": [],
            "filter": [],
            "error": [],
            "atom_q": [],
            "atom_error": [],
            "condition": [],
        }
        for s in strides
    }
    for traj_id, frame in origins(store, args.per_trajectory, lookahead):
        reader = store[traj_id]
        state = state_from_atoms(reader.to_atoms(frame))
        target = state.kinetic_energy() + potential.energy(state, cache.edges(state))
        for stride in strides:
            k = round(stride / interval)
            true_q = torch.as_tensor(reader.frame(frame + k)["positions"])
            signal = consistency(state, stride)
            if signal.long_fs == stride:
                q, p = signal.long_positions, signal.long_momenta
            else:
                edges = cache.edges(state)
                q, p = propagator.propagate(state, edges, stride)
                q, p = constrain(state, q, p, stride, rigid.conserved(state))
            after = state.replace(positions=q, momenta=p)
            energy = potential.energy(after, NeighborCache(model.cutoff, 0.0).edges(after))
            alpha = rescale(after.replace(target_energy=target), energy).scale
            error = torch.linalg.vector_norm(q - true_q, dim=1)
            row = results[stride]
            row["q"].append(float(signal.positions.max()))
            row["v"].append(float(signal.velocities.max()))
            row["filter"].append(float((alpha - 1).abs().max()))
            row["error"].append(float(error.max()))
            row["condition"].append(traj_id)
            row["atom_q"].append(signal.positions.numpy())
            row["atom_error"].append(error.numpy())
    return {
        s: {k: np.concatenate(v) if k.startswith("atom") else np.array(v) for k, v in row.items()}
        for s, row in results.items()
    }


def within(signal: np.ndarray, error: np.ndarray, condition: np.ndarray) -> float:
    """Mean Spearman correlation within each condition (trajectory): the ranking a signal
    gives among strides of one system, not between systems."""
    values = [
        signal_quality(signal[condition == c], error[condition == c]).spearman
        for c in np.unique(condition)
        if (condition == c).sum() >= 20
    ]
    return float(np.mean(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="reference trajectory store (held-out conditions)")
    parser.add_argument("--model", default="emt-metals")
    parser.add_argument("--per-trajectory", type=int, default=100, help="origins per trajectory")
    parser.add_argument("--symplectic", action="store_true", help="symplectic strides")
    args = parser.parse_args()
    torch.set_grad_enabled(args.symplectic)
    results = measure(args)
    print("| stride | signal | Spearman | within condition | worst 5 % flagged | samples |")
    print("|---|---|---|---|---|---|")
    for stride, row in results.items():
        for name, signal, error in [
            ("consistency-q (per stride)", row["q"], row["error"]),
            ("consistency-v (per stride)", row["v"], row["error"]),
            ("filter |α-1| (per stride)", row["filter"], row["error"]),
            ("consistency-q (per atom)", row["atom_q"], row["atom_error"]),
        ]:
            quality = signal_quality(signal, error)
            inside = within(signal, error, row["condition"]) if "stride" in name else float("nan")
            print(
                f"| {stride:g} fs | {name} | {quality.spearman:.2f} | {inside:.2f} "
                f"| {quality.recall:.0%} | {quality.count} |"
            )
        print(
            f"| {stride:g} fs | true error per stride, Å: median {np.median(row['error']):.3f}"
            f", p95 {np.percentile(row['error'], 95):.3f} | | | | |"
        )


if __name__ == "__main__":
    main()
