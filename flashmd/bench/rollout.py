"""``flashmd bench rollout``: throughput of the batched engine and of the ASE drop-in.

An untrained ``small`` model (weights do not change timing) on 108-atom fcc Al at 300 K, NVE with
the energy filter. Reports atom-strides per second against the number of replicas, the fraction
of stride time spent outside the model's forward passes (filters, neighbour lists, bookkeeping),
and the ASE drop-in on one system against the batched engine with one replica.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.md.velocitydistribution import Stationary, thermalize_momenta

from flashmd.md.propagators import ModelPotential, ModelPropagator
from flashmd.md.state import MDState, state_from_atoms
from flashmd.md.stepper import Stepper
from flashmd.models import EnergyConfig, EnergyModel, FlashMDModel, Predictor, PredictorConfig

STRIDE_FS = 32.0


def bench_model(device: torch.device) -> FlashMDModel:
    """Untrained ``small`` Al model; the energy scale is small so the filter never falls back."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        predictor = Predictor(PredictorConfig.preset("small", species=(13,)))
        energy = EnergyModel(EnergyConfig.preset("small", species=(13,), energy_scale=1e-3))
    return FlashMDModel(predictor, energy).to(device).eval()


def aluminium(seed: int) -> Atoms:
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat(3)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(seed))
    Stationary(atoms)
    return atoms


class _Timed:
    """Wraps a propagator or potential and accumulates the seconds spent in its calls."""

    def __init__(self, inner, device: torch.device) -> None:
        self.inner, self.device, self.seconds = inner, device, 0.0
        self.cutoff = inner.cutoff

    def _timed(self, name: str, *args):
        _sync(self.device)
        start = time.perf_counter()
        out = getattr(self.inner, name)(*args)
        _sync(self.device)
        self.seconds += time.perf_counter() - start
        return out

    def check(self, *args):
        return self.inner.check(*args)

    def propagate(self, *args):
        return self._timed("propagate", *args)

    def energy(self, *args):
        return self._timed("energy", *args)

    def energy_and_forces(self, *args):
        return self._timed("energy_and_forces", *args)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_strides(
    stepper: Stepper, state: MDState, strides: int, device: torch.device, timers: Sequence = ()
) -> float:
    """Seconds per stride after one warm-up stride (timers are reset after the warm-up)."""
    state = stepper.prepare(state)
    state, _ = stepper.step(state)  # warm-up (first neighbour list, allocator)
    _sync(device)
    for timer in timers:
        timer.seconds = 0.0
    start = time.perf_counter()
    for _ in range(strides):
        state, _ = stepper.step(state)
    _sync(device)
    return (time.perf_counter() - start) / strides


def bench_replicas(model: FlashMDModel, replicas: int, strides: int) -> tuple[float, float, int]:
    """(atom-strides per second, fraction of time outside the model, fallbacks)."""
    device = model.device
    propagator = _Timed(ModelPropagator(model), device)
    potential = _Timed(ModelPotential(model), device)
    stepper = Stepper(propagator, STRIDE_FS, potential=potential)
    state = state_from_atoms([aluminium(k) for k in range(replicas)], device=device)
    seconds = _time_strides(stepper, state, strides, device, (propagator, potential))
    outside = 1.0 - (propagator.seconds + potential.seconds) / (seconds * strides)
    return 108 * replicas / seconds, outside, stepper.fallbacks


def bench_ase(model: FlashMDModel, strides: int, repeats: int = 3) -> tuple[float, float]:
    """Seconds per stride of (the ASE drop-in, the batched engine with one replica): the best of
    ``repeats`` alternating runs, so that load from other processes affects both alike."""
    from flashmd.ase import FlashMD

    dyn = FlashMD(aluminium(0), STRIDE_FS * units.fs, model=model)
    dyn.run(1)
    stepper = Stepper(ModelPropagator(model), STRIDE_FS, potential=ModelPotential(model))
    state = state_from_atoms(aluminium(0), device=model.device)
    ase_times, engine_times = [], []
    for _ in range(repeats):
        _sync(model.device)
        start = time.perf_counter()
        dyn.run(strides)
        _sync(model.device)
        ase_times.append((time.perf_counter() - start) / strides)
        engine_times.append(_time_strides(stepper, state, strides, model.device))
    return min(ase_times), min(engine_times)


def bench_rollout(
    replicas: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    strides: int = 5,
    devices: Sequence[str] = (),
) -> str:
    """The benchmark table as text (CPU, and CUDA when available unless ``devices`` says)."""
    names = list(devices) or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    lines = [
        f"rollout benchmark: untrained small model, 108-atom Al, NVE + energy filter, "
        f"stride {STRIDE_FS:g} fs, {strides} timed strides, "
        f"torch threads {torch.get_num_threads()}",
        f"{'device':>6} {'replicas':>8} {'atom-strides/s':>15} {'outside model':>14} "
        f"{'fallbacks':>9}",
    ]
    for name in names:
        model = bench_model(torch.device(name))
        for count in replicas:
            rate, outside, fallbacks = bench_replicas(model, count, strides)
            lines.append(
                f"{name:>6} {count:>8} {rate:>15.0f} {100 * outside:>13.1f}% {fallbacks:>9}"
            )
        ase_seconds, engine_seconds = bench_ase(model, strides)
        lines.append(
            f"{name:>6} ASE drop-in {1e3 * ase_seconds:.1f} ms/stride vs batched engine "
            f"(1 replica) {1e3 * engine_seconds:.1f} ms/stride: "
            f"{100 * (ase_seconds / engine_seconds - 1):+.1f}%"
        )
    return "\n".join(lines)
