"""Where does a stride put the energy? The predictor's bias between potential and kinetic energy.

For states of a reference store, every stride of each model is taken once from the reference's
positions and momenta, and its end is compared with the reference ``stride`` later:

  dV   V(q') - V(q'_true), meV/atom, both priced by the reference store's own calculator
  dK   K(p') - K(p'_true), meV/atom, the predicted momenta as they come (after the momentum
       constraints, before the energy filter)

A predictor that is right on average has both near zero. A positive dV with a negative dK is a
stride that turns kinetic into potential energy: the energy filter (or a thermostat) tops the
kinetic energy up again, so a thermostatted rollout drifts towards configurations of too high V
at the right kinetic temperature (the loss of equipartition between K and V). Prints one table,
mean ± standard error over the origins of each trajectory.

    python scripts/energy_partition.py runs/heldout/reference.zarr emt-metals runs/train/x/last.pt
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from flashmd.analysis.reference_energy import energy_function, reference_calculator_spec
from flashmd.data.store import TrajectoryStore
from flashmd.md import rigid
from flashmd.md.filters import constrain
from flashmd.md.neighbors import NeighborCache
from flashmd.md.state import state_from_atoms
from flashmd.md.symplectic import model_propagator
from flashmd.models.io import load_model

#: eV to meV.
MEV = 1000.0


def partition(model_name: str, store: TrajectoryStore, per_trajectory: int) -> dict:
    """{(trajectory, stride): (dV array, dK array)} in meV/atom for one model."""
    model = load_model(model_name)
    propagator = model_propagator(model, False, None)
    cache = NeighborCache(model.cutoff, 1.0)
    spec = reference_calculator_spec(store)
    interval = {float(store[t].attrs["sample_interval_fs"]) for t in store.ids()}.pop()
    strides = [s for s in model.strides_fs if (s / interval).is_integer()]
    found: dict = {}
    for traj_id in store.ids():
        reader = store[traj_id]
        price = energy_function(spec, reader)
        last = reader.n_frames - 1 - round(max(strides) / interval)
        for frame in np.unique(np.linspace(0, last, per_trajectory).round().astype(int)):
            state = state_from_atoms(reader.to_atoms(int(frame)))
            n = state.positions.shape[0]
            for stride in strides:
                true = state_from_atoms(reader.to_atoms(int(frame) + round(stride / interval)))
                q, p = propagator.propagate(state, cache.edges(state), stride)
                q, p = constrain(state, q, p, stride, rigid.conserved(state))
                cell = true.cell.numpy()
                v_pred = price(q.numpy()[None], cell)[0]
                v_true = price(true.positions.numpy()[None], cell)[0]
                k_pred = float(state.kinetic_energy(p)[0])
                k_true = float(true.kinetic_energy()[0])
                d_v, d_k = found.setdefault((traj_id, stride), ([], []))
                d_v.append(MEV * (v_pred - v_true) / n)
                d_k.append(MEV * (k_pred - k_true) / n)
    return {key: (np.array(a), np.array(b)) for key, (a, b) in found.items()}


def mean_and_error(values: np.ndarray) -> str:
    return f"{values.mean():+.2f} ± {values.std(ddof=1) / np.sqrt(len(values)):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="reference trajectory store (held-out conditions)")
    parser.add_argument("models", nargs="+", help="model names or checkpoint paths")
    parser.add_argument("--per-trajectory", type=int, default=40, help="origins per trajectory")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    store = TrajectoryStore.open(args.store)
    print("| model | trajectory | stride | dV meV/atom | dK meV/atom | dV + dK | origins |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        for (traj_id, stride), (d_v, d_k) in partition(name, store, args.per_trajectory).items():
            print(
                f"| {name} | {traj_id} | {stride:g} fs | {mean_and_error(d_v)} "
                f"| {mean_and_error(d_k)} | {mean_and_error(d_v + d_k)} | {len(d_v)} |"
            )


if __name__ == "__main__":
    main()
