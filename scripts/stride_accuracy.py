"""How close one stride lands to the energy model's own flow: for frames of a store, the true end
point is velocity Verlet at a small step on each model's energy model, and each kind of stride
(direct, corrector strides of 1-3 iterations, the solved symplectic stride) is compared with
it: rms position error (Å), rms momentum error (amu·Å/ASE-time) and the mean and largest
|ΔH| per atom (meV), H being K + V of that energy model. Deterministic (no thermostat, no
filter); one table row per model and stride kind::

    python scripts/stride_accuracy.py runs/mlip/sevennet-cuau-heldout-liquid-gentle.zarr \\
        --every 40 --model sevennet-cuau sevennet-cuau-fast
    python scripts/stride_accuracy.py STORE --every 40 --model sevennet-cuau --exact
        # the exact maps instead: plain implicit midpoint and the fourth-order modified map

It separates a stride's own error from what a rollout adds (thermostat, filter, sampling
noise): the sevennet-cuau-fast card's "How close a stride lands" table is this script's.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from flashmd.data.store import TrajectoryStore
from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import ModelPotential, ModelPropagator
from flashmd.md.state import MDState, state_from_atoms
from flashmd.md.symplectic import SolverConfig, SymplecticPropagator
from flashmd.models.io import load_model
from flashmd.units import FS


def frames(store: str, every: int, only: str) -> MDState:
    """Every ``every``-th frame of the trajectories of ``store`` whose id contains ``only``,
    batched as one state."""
    reference = TrajectoryStore.open(store)
    readers = [reference[traj_id] for traj_id in reference.ids() if only in traj_id]
    atoms = [r.to_atoms(k) for r in readers for k in range(0, r.n_frames, every)]
    if not atoms:
        raise SystemExit(f"no frames: no trajectory of {store} has {only!r} in its id")
    return state_from_atoms(atoms)


def hamiltonian(potential: ModelPotential, state: MDState, q, p) -> torch.Tensor:
    """(S,) K + V in eV of each system at positions ``q`` and momenta ``p``."""
    moved = state.replace(positions=q, momenta=p)
    v = potential.energy(moved, NeighborCache(potential.cutoff, 0.0).edges(moved))
    k = 0.5 * (p**2).sum(1) / state.masses
    return v + torch.zeros_like(v).index_add_(0, state.system, k)


def true_flow(potential: ModelPotential, state: MDState, stride_fs: float, step_fs: float):
    """Velocity Verlet at ``step_fs`` over ``stride_fs``: (positions (A, 3) Å, momenta (A, 3))."""
    cache, dt = NeighborCache(potential.cutoff, 1.0), step_fs * FS
    q, p = state.positions.clone(), state.momenta.clone()
    _, f = potential.energy_and_forces(state, cache.edges(state))
    for _ in range(round(stride_fs / step_fs)):
        p = p + 0.5 * dt * f
        q = q + dt * p / state.masses[:, None]
        moved = state.replace(positions=q, momenta=p)
        _, f = potential.energy_and_forces(moved, cache.edges(moved))
        p = p + 0.5 * dt * f
    return q, p


def variants(model, exact: bool) -> dict:
    """The strides to compare, by name."""
    solved = SolverConfig(tolerance_A=1e-5, max_iterations=60)
    if exact:
        return {
            kind: SymplecticPropagator(model, solved, generating=kind)
            for kind in ("midpoint", "modified")
        }
    kinds = {"direct": ModelPropagator(model)}
    for k in (1, 2, 3):
        kinds[f"corrector {k}"] = SymplecticPropagator(
            model, SolverConfig(max_iterations=k, corrector=True)
        )
    kinds["solved"] = SymplecticPropagator(model, solved)
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="trajectory store whose frames start the strides")
    parser.add_argument("--every", type=int, default=40, help="every n-th frame (default: 40)")
    parser.add_argument("--only", default="", help="trajectories whose id contains this")
    parser.add_argument("--model", nargs="+", required=True, help="models (names or paths)")
    parser.add_argument("--stride-fs", type=float, default=32.0, help="stride (default: 32)")
    parser.add_argument("--step-fs", type=float, default=0.25, help="true flow's step (0.25)")
    parser.add_argument("--exact", action="store_true", help="the exact maps, not the model's")
    args = parser.parse_args()
    torch.set_num_threads(1)
    state = frames(args.store, args.every, args.only)
    per_system = torch.tensor(np.bincount(state.system.numpy()), dtype=torch.float64)
    print(f"{len(per_system)} frames, {state.positions.shape[0]} atoms, {args.stride_fs:g} fs")
    print("| model | stride | rms position Å | rms momentum | mean abs dH meV/atom | largest |")
    print("|---|---|---|---|---|---|")
    for name in args.model:
        model = load_model(name, device="cpu")
        potential = ModelPotential(model)
        q_true, p_true = true_flow(potential, state, args.stride_fs, args.step_fs)
        h0 = hamiltonian(potential, state, state.positions, state.momenta)
        edges = NeighborCache(model.cutoff, 0.5).edges(state)
        for kind, propagator in variants(model, args.exact).items():
            q, p = propagator.propagate(state, edges, args.stride_fs)
            dh = 1e3 * (hamiltonian(potential, state, q, p) - h0).abs() / per_system
            print(
                f"| {name} | {kind} | {float((q - q_true).pow(2).mean().sqrt()):.4f} | "
                f"{float((p - p_true).pow(2).mean().sqrt()):.4f} | {float(dh.mean()):.2f} | "
                f"{float(dh.max()):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
