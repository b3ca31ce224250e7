"""Explicit symplectic strides, measured: one velocity-Verlet step of the whole stride on a
modified potential, with processed positions (a road not taken for issue #21; the emt-metals
card, "Tried, not shipped: explicit strides", gives the figures).

The implicit midpoint solve of :mod:`flashmd.md.symplectic` costs about seven energy-model
force evaluations per 32 fs stride. One kick-drift-kick step of length ``h`` costs one, and is
symplectic and time-reversible for any potential. For a harmonic mode of frequency ``ω`` it
turns by ``θ`` with ``cos θ = 1 - h²ω̃²/2`` and conserves ``ω̃²(1 - h²ω̃²/4) q² + p²``. The
modified potential (``--modification 1``)::

    Ṽ = V - (h²/24) ∇Vᵀ M⁻¹ ∇V,   ∇Ṽ = ∇V - (h²/12) ∇²V M⁻¹ ∇V    (one Hessian-vector product)

makes ``θ = hω + O(h⁵)``; the positions it carries are then too wide by ``hω / sin(hω)`` per
mode, so each output frame is processed (``--processing 1``, to the same order)::

    q_out = q + (h²/6) M⁻¹ F(q),   p_out = p

(the momenta need no processing: a thermostat acting on them sees the right distribution).
The processor is not symplectic, which is what the correct marginals of positions and momenta
cost; no explicit map keeps the harmonic invariant ``ω²q² + p²`` exactly.

Runs NVE without a filter from the first frame of a reference trajectory, on the checkpoint's
energy model, and prints per stride: mean kinetic temperature and vibrational frequency against
exact NVE (velocity Verlet with the reference store's calculator from the same frame), the drift
and residual fluctuation of ``K + V(q_out)``, and the cost of a stride in force evaluations of
the energy model (timed in the same process; velocity Verlet at 2 fs costs ``stride / 2``).
A run whose temperature passes ten times the start is reported as blown up:

    python scripts/explicit_strides.py emt-metals runs/heldout/reference.zarr:Cu-750 \
        --stride-fs 16 24 32 --strides 1000
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from nve_check import exact_nve_observables, temperatures, vibrational_frequency
from profile_generating import milliseconds

from flashmd import keys, load_model
from flashmd.analysis.energy import nve_drift
from flashmd.data.store import open_trajectory
from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import model_batch
from flashmd.md.state import MDState, state_from_atoms
from flashmd.models.model import FlashMDModel
from flashmd.units import FS


@dataclass
class ExplicitStrides:
    """Processed velocity Verlet on the modified potential of ``model``'s energy model
    (reads its ``energy_model``, ``cutoff`` and ``dtype``) for the systems of ``state``.

    ``modification`` scales the ``h²/24`` term of Ṽ and ``processing`` the ``h²/6`` of the
    processor (0 and 0: plain velocity Verlet with the whole stride as its timestep).
    """

    model: FlashMDModel
    state: MDState
    stride_fs: float
    modification: float = 1.0
    processing: float = 1.0

    def __post_init__(self) -> None:
        self.h = self.stride_fs * FS
        self.masses = self.state.masses[:, None]
        self.cache = NeighborCache(self.model.cutoff, 1.0)

    def _batch(self, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state.replace(positions=positions)
        return model_batch(self.model, state, self.cache.edges(state))

    def gradients(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(∇V, ∇Ṽ)`` at ``positions`` (A, 3) Å: two (A, 3) eV/Å tensors, float64."""
        energy_model = self.model.energy_model
        assert energy_model is not None
        batch = self._batch(positions)
        with torch.enable_grad():
            q = batch[keys.POSITIONS].detach().requires_grad_(True)
            energy = energy_model.compute({**batch, keys.POSITIONS: q}, forces=False)
            (gradient,) = torch.autograd.grad(
                energy[keys.ENERGY].sum(), q, create_graph=self.modification != 0
            )
            if self.modification == 0:
                return gradient.double(), gradient.double()
            weighted = (gradient * (gradient.detach() / self.masses)).sum()
            (product,) = torch.autograd.grad(weighted, q)  # ∇²V M⁻¹ ∇V
        modified = gradient.detach() - self.modification * self.h**2 / 12 * product
        return gradient.detach().double(), modified.double()

    def potential_energy(self, positions: torch.Tensor) -> float:
        """V (eV) of the whole system at ``positions`` (A, 3) Å."""
        energy_model = self.model.energy_model
        assert energy_model is not None
        with torch.no_grad():
            return float(energy_model(self._batch(positions)).sum())

    def process(self, positions: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """Output positions (A, 3) Å from internal ones and ``∇V`` there."""
        return positions - self.processing * self.h**2 / 6 * gradient / self.masses

    def step(
        self, q: torch.Tensor, p: torch.Tensor, modified: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """One kick-drift-kick stride of the internal state: positions ``q`` (A, 3) Å, momenta
        ``p`` (A, 3) amu·Å/ASE-time and ``∇Ṽ(q)`` (A, 3) eV/Å. Returns ``(q', p', ∇V(q'),
        ∇Ṽ(q'))``; the last one starts the next stride (one evaluation per stride)."""
        p_half = p - 0.5 * self.h * modified
        q = q + self.h * p_half / self.masses
        gradient, modified = self.gradients(q)
        return q, p_half - 0.5 * self.h * modified, gradient, modified

    def run(self, strides: int, energy_every: int = 10) -> dict[str, np.ndarray | float]:
        """NVE from ``state``: momenta (strides, A, 3); total energies (eV) of the output
        frames every ``energy_every`` strides and their times (fs); wall seconds per stride
        (the strides alone, not the energies). Stops early when it blows up."""
        q_out, p = self.state.positions, self.state.momenta
        gradient, _ = self.gradients(q_out)
        q = self.process(q_out, -gradient)  # inverse of the processor, to first order
        gradient, modified = self.gradients(q)
        twice_kinetic = float((p**2 / self.masses).sum())
        limit = 10 * twice_kinetic if twice_kinetic > 0 else float("inf")
        momenta, energies, energy_times, wall = [], [], [], 0.0
        for k in range(strides):
            start = time.perf_counter()
            q, p, gradient, modified = self.step(q, p, modified)
            wall += time.perf_counter() - start
            momenta.append(p.numpy().copy())
            twice_kinetic = float((p**2 / self.masses).sum())
            if not np.isfinite(twice_kinetic) or twice_kinetic > limit:
                break
            if k % energy_every == 0:
                q_out = self.process(q, gradient)
                energies.append(self.potential_energy(q_out) + 0.5 * twice_kinetic)
                energy_times.append((k + 1) * self.stride_fs)
        return {
            "momenta": np.array(momenta),
            "energies": np.array(energies),
            "energy_time_fs": np.array(energy_times),
            "wall_s": wall / len(momenta),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint with an energy model")
    parser.add_argument("start", help="STORE:ID_SUBSTRING; its first frame starts every run")
    parser.add_argument("--stride-fs", type=float, nargs="+", default=[16.0, 24.0, 32.0])
    parser.add_argument("--strides", type=int, default=1000)
    parser.add_argument("--modification", type=float, default=1.0)
    parser.add_argument("--processing", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    reader = open_trajectory(args.start)
    store, traj_id = reader.name.rsplit(":", 1)
    state = state_from_atoms(reader.to_atoms(0))
    plain = ExplicitStrides(model, state, 1.0, modification=0.0)
    force_ms = milliseconds(lambda: plain.gradients(state.positions), 20)
    print(
        f"explicit strides, modification {args.modification:g}, processing "
        f"{args.processing:g}, {args.strides} strides NVE from {args.start}"
    )
    print(
        "| stride fs | strides run | T vs exact NVE | ν THz vs exact | drift eV/atom/ps | "
        "residual std eV/atom | cost, force evaluations |"
    )
    print("|---|---|---|---|---|---|---|")
    for stride in args.stride_fs:
        explicit = ExplicitStrides(model, state, stride, args.modification, args.processing)
        run = explicit.run(args.strides)
        cost = 1e3 * run["wall_s"] / force_ms
        momenta = run["momenta"]
        done = len(momenta)
        if done < args.strides:
            print(f"| {stride:g} | {done} (blew up) | | | | | {cost:.2f} |")
            continue
        exact = exact_nve_observables(
            reader.to_atoms(0),
            traj_id,
            store,
            duration_fs=stride * args.strides,
            interval_fs=stride,
            location=f"runs/explicit-strides/exact-{stride:g}fs-x{args.strides}.zarr",
            origin=args.start,
        )
        found = temperatures(momenta, reader)["all"]
        nu = vibrational_frequency(momenta, np.arange(done) * stride, reader.masses)
        fit = nve_drift(run["energy_time_fs"], run["energies"], len(reader.numbers))
        print(
            f"| {stride:g} | {done} | {found:.1f} K ({found / exact['all'] - 1:+.3f}) | "
            f"{nu:.3f} ({nu / exact['ν'] - 1:+.3f}) | {fit.drift_eV_per_atom_per_ps:.2e} | "
            f"{fit.residual_std_eV_per_atom:.2e} | {cost:.2f} |"
        )


if __name__ == "__main__":
    main()
