"""Cost of one symplectic solver iteration, by part: the energy model's forces, the gradient of
the model's generating function ``W`` and of freshly initialised ``W`` of other sizes, and the
direct predictor's start, on a random 108-atom Cu3Au cell at 700 K (one thread)::

    python scripts/profile_generating.py emt-metals

Sizes are timed untrained (timing does not depend on the weights); milliseconds per call,
mean of ``--calls`` after one warm-up call.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

import flashmd
from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import model_batch
from flashmd.md.state import state_from_atoms
from flashmd.models.generating import GeneratingConfig, GeneratingFunction, stride_gradients

#: Backbone overrides of the generating function's ``small`` preset that are timed.
SIZES = {
    "two layers (small)": {},
    "two layers, 16 scalars, 4 tensors": {"n_scalars": 16, "n_tensors": 4},
    "one layer": {"n_layers": 1},
}


def milliseconds(call, calls: int) -> float:
    """Mean wall time of ``call()`` in ms over ``calls`` calls, after one warm-up call."""
    call()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return 1e3 * (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="shipped name or checkpoint with a generating function")
    parser.add_argument("--stride-fs", type=float, default=32.0)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = flashmd.load_model(args.model, device="cpu")
    model.check_symplectic()
    rng = np.random.default_rng(0)
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((3, 3, 3))
    numbers = atoms.numbers.copy()
    numbers[rng.choice(len(atoms), len(atoms) // 4, replace=False)] = 79
    atoms.numbers = numbers
    MaxwellBoltzmannDistribution(atoms, temperature_K=700, rng=rng)
    state = state_from_atoms([atoms])
    batch = model_batch(model, state, NeighborCache(model.cutoff, 0.5).edges(state), args.stride_fs)
    energy = model.energy_model
    forces = milliseconds(lambda: energy.compute(batch, forces=True), args.calls)
    print(f"energy-model forces: {forces:.1f} ms")
    start = milliseconds(lambda: model.predictor(batch), args.calls)
    print(f"direct predictor (the solve's start): {start:.1f} ms")

    def w_gradient(generating: GeneratingFunction) -> float:
        both = milliseconds(lambda: stride_gradients(generating, energy, batch), args.calls)
        return both - forces

    shipped = w_gradient(model.generating)
    print(f"W gradient, {args.model}: {shipped:.1f} ms ({shipped / forces:.2f} x forces)")
    config = model.generating.config
    for name, overrides in SIZES.items():
        sized = GeneratingConfig.preset(
            "small",
            species=config.species,
            cutoff=config.cutoff,
            strides_fs=config.strides_fs,
            receiver_messages=True,
            **overrides,
        )
        generating = GeneratingFunction(sized).to(model.dtype)
        with torch.no_grad():
            generating.stride_scale.fill_(0.05)  # a(h) != 0, as in a trained W
        cost = w_gradient(generating)
        print(f"W gradient, {name} (untrained): {cost:.1f} ms ({cost / forces:.2f} x forces)")


if __name__ == "__main__":
    main()
