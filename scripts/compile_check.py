"""Eager against compiled (``flashmd.models.compile_model``): the cost of each network call of a
stride and how far the compiled results are from the eager ones, on a thermal fcc crystal, one
thread, in one run::

    python scripts/compile_check.py sevennet-cuau                 # 108 Cu atoms
    python scripts/compile_check.py emt-metals --element Al --cells 4

Milliseconds per call: median of ``--repeats`` interleaved runs of ``--calls`` calls each, after
the first call (which compiles, and whose wall time is printed).
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import numpy as np
import torch
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

import flashmd
from flashmd import keys
from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import model_batch
from flashmd.md.state import state_from_atoms
from flashmd.models.compiled import compile_model
from flashmd.models.generating import stride_gradients


def network_calls(model, batch) -> dict[str, tuple[Callable[[], torch.Tensor], bool]]:
    """name -> (call returning one tensor, whether it needs autograd) for each network the
    model has: the predictor's stride, the energy model's forces, a solver iteration."""
    calls = {}
    if model.predictor is not None:
        calls["predictor (one stride)"] = (lambda: torch.cat(model.predictor(batch), 1), False)
    if model.energy_model is not None:
        calls["energy model, energy and forces"] = (
            lambda: model.energy_model.compute(batch, forces=True)[keys.FORCES],
            True,
        )
    if model.generating is not None:
        calls["energy forces and W gradient (one solver iteration)"] = (
            lambda: torch.cat(stride_gradients(model.generating, model.energy_model, batch), 1),
            True,
        )
    return calls


def milliseconds(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return 1e3 * (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="shipped name or checkpoint")
    parser.add_argument("--element", default="Cu")
    parser.add_argument("--cells", type=int, default=3, help="cubic cells per side (3: 108 atoms)")
    parser.add_argument("--temperature-K", type=float, default=600.0)
    parser.add_argument("--stride-fs", type=float, default=32.0)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    eager = flashmd.load_model(args.model, device="cpu")
    compiled = compile_model(copy.deepcopy(eager))
    rng = np.random.default_rng(0)
    atoms = bulk(args.element, "fcc", cubic=True).repeat(args.cells)
    atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature_K, rng=rng)
    state = state_from_atoms(atoms)
    batch = model_batch(eager, state, NeighborCache(eager.cutoff, 0.5).edges(state), args.stride_fs)
    print(
        f"{args.model}, {len(atoms)} {args.element} atoms, {batch[keys.EDGE_INDEX].shape[1]} "
        f"edges, one thread; median of {args.repeats} interleaved runs of {args.calls} calls\n"
    )
    print("| call | eager ms | compiled ms | speed-up | max relative difference | compile s |")
    print("|---|---|---|---|---|---|")
    eager_calls, compiled_calls = network_calls(eager, batch), network_calls(compiled, batch)
    for name, (call, grad) in eager_calls.items():
        fast = compiled_calls[name][0]
        with torch.set_grad_enabled(grad):
            start = time.perf_counter()
            got = fast()
            compiling = time.perf_counter() - start
            want = call()
            difference = float((got - want).abs().max() / want.abs().max())
            times = [
                (milliseconds(call, args.calls), milliseconds(fast, args.calls))
                for _ in range(args.repeats)
            ]
        slow_ms, fast_ms = np.median(times, axis=0)
        print(
            f"| {name} | {slow_ms:.1f} | {fast_ms:.1f} | {slow_ms / fast_ms:.2f}x | "
            f"{difference:.1e} | {compiling:.0f} |"
        )


if __name__ == "__main__":
    main()
