"""Energy-filter factors a model needs on reference states: how much energy one stride loses.

For frames spread over each reference trajectory (true MD states), one stride of the model's
predictor is taken from the state, and the factor ``α`` that the energy filter would apply to
restore ``K + V`` is computed with the reference calculator (asap3 EMT) as ``V``. A predictor
trained on mean squared error loses kinetic energy (``α > 1``) by the variance of its error, so
the quantiles say what the filter's band (``flashmd.md.filters``) will accept.

    python scripts/filter_factors.py runs/heldout/reference.zarr --model emt-metals --strides 32 64
    python scripts/filter_factors.py runs/emt-metals.zarr --match Al-liquid   # NVE training states
"""

from __future__ import annotations

import argparse

import numpy as np

from flashmd import load_model
from flashmd.analysis.reference_energy import reference_calculator_spec
from flashmd.data.calculators import make_calculator
from flashmd.data.store import TrajectoryStore
from flashmd.md.filters import rescale
from flashmd.md.propagators import CalculatorPotential, ModelPropagator
from flashmd.md.state import state_from_atoms
from flashmd.md.stepper import Stepper

QUANTILES = (0.01, 0.5, 0.99)


def factors(model, store: TrajectoryStore, trajectory: str, stride_fs: float, n: int) -> np.ndarray:
    """(n,) factors ``α`` of one stride from ``n`` frames of ``trajectory`` (first 10 % skipped)."""
    traj = store[trajectory]
    frames = np.linspace(traj.n_frames // 10, traj.n_frames - 1, n).astype(int)
    state = state_from_atoms([traj.to_atoms(int(i)) for i in frames], device=model.device)
    potential = CalculatorPotential(make_calculator(reference_calculator_spec(store)))
    # a stepper without a potential: predictor and momentum constraints, no energy filter
    after, _ = Stepper(ModelPropagator(model), stride_fs).step(state)
    target = state.kinetic_energy() + potential.energy(state, None)
    after = after.replace(target_energy=target)
    return rescale(after, potential.energy(after, None)).scale.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", help="reference store (flashmd generate)")
    parser.add_argument("--model", default="emt-metals")
    parser.add_argument("--strides", type=float, nargs="+", default=[32.0, 64.0])
    parser.add_argument("--frames", type=int, default=96, help="frames per trajectory")
    parser.add_argument("--match", default="", help="only trajectories whose id contains this")
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    store = TrajectoryStore.open(args.reference)
    print("| trajectory | stride fs | α 1 % | α median | α 99 % | outside [0.95, 1.05] |")
    print("|---|---|---|---|---|---|")
    for trajectory in [t for t in store.ids() if args.match in t]:
        for stride in args.strides:
            alpha = factors(model, store, trajectory, stride, args.frames)
            low, mid, high = np.quantile(alpha, QUANTILES)
            outside = float(np.mean(np.abs(alpha - 1) > 0.05))
            cells = [trajectory, f"{stride:g}", f"{low:.3f}", f"{mid:.3f}", f"{high:.3f}"]
            print("| " + " | ".join([*cells, f"{outside:.2f}"]) + " |")


if __name__ == "__main__":
    main()
