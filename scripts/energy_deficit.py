"""Where a stride's energy error comes from: kinetic or potential, one stride from true NVE states.

For pairs (state, state one stride later) of NVE trajectories, the predictor's stride from the
state is split into the two parts of the energy filter's ``ln α²``:

    ln α² = ln(K'_true / K'_pred) + ln((E0 - V(q'_pred)) / (E0 - V(q'_true)))
            kinetic part            potential part

with ``V`` from the store's reference calculator and ``E0 - V(q'_true) = K'_true`` (NVE). A
predictor trained on squared error alone has a positive kinetic part (the conditional mean's
missing variance); the loss term ``loss_weights.kinetic`` removes it.

    python scripts/energy_deficit.py runs/emt-metals.zarr --model emt-metals
    python scripts/energy_deficit.py runs/emt-metals.zarr --model runs/x.pt --strides 64 --pairs 24
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from flashmd import keys, load_model
from flashmd.analysis.reference_energy import reference_calculator_spec
from flashmd.data.calculators import make_calculator
from flashmd.data.dataset import StridePairs, collate_pairs, split_trajectories
from flashmd.data.graph import batch_to
from flashmd.data.store import TrajectoryStore


def potential_energy(store: TrajectoryStore, item: dict, positions: torch.Tensor) -> float:
    """V (eV) of ``item``'s system at ``positions`` (N, 3) Å, by the store's calculator."""
    from ase import Atoms

    atoms = Atoms(
        numbers=item[keys.NUMBERS].numpy(),
        positions=positions.detach().to(torch.float64).numpy(),
        cell=item[keys.CELL].numpy().reshape(3, 3),
        pbc=item[keys.PBC].numpy().reshape(-1),
    )
    atoms.calc = make_calculator(reference_calculator_spec(store))  # one per system (asap3)
    return float(atoms.get_potential_energy())


def kinetic_energy(momenta: torch.Tensor, masses: torch.Tensor) -> float:
    return float((momenta.to(torch.float64) ** 2 / masses[:, None]).sum() / 2)


def parts(model, store: TrajectoryStore, location: str, trajectory: str, stride: float, n: int):
    """(n, 2) kinetic and potential parts of ``ln α²``, ``n`` pairs spread over ``trajectory``."""
    items = list(StridePairs(location, [trajectory], [stride], shuffle=False))
    rows = []
    for item in items[:: max(1, len(items) // n)][:n]:
        batch = batch_to(collate_pairs([item], model.cutoff), model.device, model.dtype)
        with torch.no_grad():
            positions, momenta = model.predictor(batch)
        masses = item[keys.MASSES].to(torch.float64)
        k_true = kinetic_energy(item[keys.TARGET_MOMENTA], masses)
        k_pred = kinetic_energy(momenta.cpu(), masses)
        e0 = kinetic_energy(item[keys.MOMENTA], masses) + potential_energy(
            store, item, item[keys.POSITIONS]
        )
        v_true = potential_energy(store, item, item[keys.TARGET_POSITIONS])
        v_pred = potential_energy(store, item, positions.cpu())
        rows.append((np.log(k_true / k_pred), np.log((e0 - v_pred) / (e0 - v_true))))
    return np.array(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store", help="training store with NVE production (flashmd generate)")
    parser.add_argument("--model", default="emt-metals")
    parser.add_argument("--strides", type=float, nargs="+", default=[32.0, 64.0])
    parser.add_argument("--pairs", type=int, default=12, help="pairs per trajectory")
    parser.add_argument("--validation", type=float, default=0.1, help="the recipe's split")
    parser.add_argument("--seed", type=int, default=0, help="the recipe's seed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model, device="cpu")
    store = TrajectoryStore.open(args.store)
    _, held_out = split_trajectories(store, args.validation, args.seed)
    print(
        "| stride fs | pairs | kinetic part mean | median | potential part mean | median "
        "| ln α² std | α outside [0.95, 1.05] |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for stride in args.strides:
        table = np.concatenate(
            [parts(model, store, args.store, t, stride, args.pairs) for t in held_out]
        )
        kin, pot = table[:, 0], table[:, 1]
        cells = [f"{kin.mean():+.3f}", f"{np.median(kin):+.3f}"]
        cells += [f"{pot.mean():+.3f}", f"{np.median(pot):+.3f}", f"{(kin + pot).std():.3f}"]
        alpha = np.exp((kin + pot) / 2)
        cells.append(f"{np.mean(np.abs(alpha - 1) > 0.05):.2f}")
        print(f"| {stride:g} | {len(table)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
