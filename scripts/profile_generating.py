"""Cost of one symplectic solver iteration, by part: the energy model's forces, the gradient of
the model's generating function ``W`` and of freshly initialised ``W`` of other sizes, and the
direct predictor's start, on a random 108-atom Cu3Au cell at 700 K (one thread)::

    python scripts/profile_generating.py emt-metals
    python scripts/profile_generating.py emt-metals --predictor-sizes   # predictor and energy
                                                                        # model by size instead

Sizes are timed untrained (timing does not depend on the weights); milliseconds per call,
mean of ``--calls`` after one warm-up call.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
import torch
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

import flashmd
from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import model_batch
from flashmd.md.state import state_from_atoms
from flashmd.models.energy import EnergyConfig, EnergyModel
from flashmd.models.generating import GeneratingConfig, GeneratingFunction, stride_gradients
from flashmd.models.predictor import Predictor, PredictorConfig

#: Backbone overrides of the generating function's ``small`` preset that are timed.
SIZES = {
    "two layers (small)": {},
    "two layers, 16 scalars, 4 tensors": {"n_scalars": 16, "n_tensors": 4},
    "one layer": {"n_layers": 1},
}


#: Predictor and energy-model sizes timed with ``--predictor-sizes``: (preset, backbone overrides).
MODEL_SIZES = {
    "small, receiver messages": ("small", {}),
    "two layers, 64 scalars, 16 tensors": ("small", {"n_scalars": 64, "n_tensors": 16}),
    "three layers (small width)": ("small", {"n_layers": 3}),
    "medium (three layers, 64 scalars, 16 tensors)": ("medium", {}),
}


def milliseconds(call, calls: int) -> float:
    """Mean wall time of ``call()`` in ms over ``calls`` calls, after one warm-up call."""
    call()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return 1e3 * (time.perf_counter() - start) / calls


def model_size_costs(model, batch, forces: float, calls: int) -> None:
    """Print a freshly initialised predictor's cost per stride and its energy model's forces'
    cost for each of ``MODEL_SIZES``, relative to ``forces`` (the shipped energy model's, ms)."""
    predictor_config, energy_config = model.predictor.config, model.energy_model.config
    for name, (preset, overrides) in MODEL_SIZES.items():
        predictor = Predictor(
            PredictorConfig.preset(
                preset,
                species=predictor_config.species,
                cutoff=predictor_config.cutoff,
                strides_fs=predictor_config.strides_fs,
                receiver_messages=True,
                **overrides,
            )
        ).to(model.dtype)
        energy = EnergyModel(
            EnergyConfig.preset(
                preset, species=energy_config.species, cutoff=energy_config.cutoff, **overrides
            )
        ).to(model.dtype)
        stride = milliseconds(partial(predictor, batch), calls)
        own = milliseconds(partial(energy.compute, batch, forces=True), calls)
        print(
            f"{name} (untrained): predictor {stride:.1f} ms ({stride / forces:.2f} x forces), "
            f"its energy model's forces {own:.1f} ms ({own / forces:.2f} x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="shipped name or checkpoint with a generating function")
    parser.add_argument("--stride-fs", type=float, default=32.0)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument(
        "--predictor-sizes",
        action="store_true",
        help="time predictors and energy models of other sizes instead of generating functions",
    )
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
    if args.predictor_sizes:
        model_size_costs(model, batch, forces, args.calls)
        return

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
