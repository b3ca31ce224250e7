"""Seeded systems, tiny models and helpers shared by the rollout-engine tests.

Imported by name (``from md_testkit import ...``): pytest puts this folder on ``sys.path``.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk

from flashmd.md.harmonic import HarmonicCrystal
from flashmd.md.state import MDState
from flashmd.models import EnergyConfig, EnergyModel, FlashMDModel, Predictor, PredictorConfig
from flashmd.models.generating import GeneratingConfig, GeneratingFunction
from flashmd.units import KB

STRIDES_FS = (16.0, 32.0)
CUTOFF = 4.0


def crystal(repeat: tuple[int, int, int] = (2, 1, 1)) -> Atoms:
    """Reference fcc Al crystal (4 atoms per cubic cell), periodic."""
    return bulk("Al", "fcc", a=4.05, cubic=True).repeat(repeat)


def cluster() -> Atoms:
    """Reference open 13-atom Al cluster (atom 0 and its 12 neighbours), no cell."""
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat(3)
    centre = atoms.positions[len(atoms) // 2]
    order = np.argsort(np.linalg.norm(atoms.positions - centre, axis=1))[:13]
    out = Atoms("Al13", positions=atoms.positions[order] - centre, pbc=False)
    return out


def thermal(
    reference: Atoms, seed: int, temperature_K: float = 300.0, rattle: float = 0.05
) -> Atoms:
    """``reference`` rattled, with random momenta at about ``temperature_K`` and zero total
    momentum (and zero angular momentum when open)."""
    rng = np.random.default_rng(seed)
    atoms = reference.copy()
    atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
    masses = atoms.get_masses()
    momenta = rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * KB * temperature_K)[:, None]
    momenta -= masses[:, None] * momenta.sum(0) / masses.sum()
    atoms.set_momenta(momenta)
    return atoms


def harmonic(systems: list[Atoms]) -> HarmonicCrystal:
    """Exact harmonic model with springs of 2 eV/Å² between nearest neighbours."""
    return HarmonicCrystal(systems, spring=2.0, bond_cutoff=3.2)


class Biased:
    """A propagator that spoils another: scales displacements and momenta, or returns NaN."""

    def __init__(
        self, inner, displacement: float = 1.0, momentum: float = 1.0, nan_every=0, at_fs=None
    ):
        self.inner, self.displacement, self.momentum = inner, displacement, momentum
        self.cutoff = inner.cutoff
        self.nan_every, self.calls = nan_every, 0
        self.at_fs = at_fs  # spoil only strides of this length (None: all)
        self.strides_fs: list[float] = []

    def check(self, state: MDState, stride_fs: float) -> None:
        self.inner.check(state, stride_fs)

    def propagate(self, state, edges, stride_fs):
        positions, momenta = self.inner.propagate(state, edges, stride_fs)
        self.calls += 1
        self.strides_fs.append(stride_fs)
        if self.at_fs is not None and stride_fs != self.at_fs:
            return positions, momenta
        if self.nan_every and self.calls % self.nan_every == 0:
            return positions * float("nan"), momenta
        positions = state.positions + self.displacement * (positions - state.positions)
        return positions, self.momentum * momenta


@functools.cache
def _tiny(seed: int) -> FlashMDModel:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        predictor = Predictor(
            PredictorConfig.preset("tiny", species=(13,), strides_fs=STRIDES_FS, cutoff=CUTOFF)
        )
        energy = EnergyModel(EnergyConfig.preset("tiny", species=(13,), cutoff=CUTOFF))
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in (predictor, energy):
                for name, parameter in module.named_parameters():
                    if name in ("correction_scale", "energy_shift"):
                        parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return FlashMDModel(predictor, energy)


@functools.cache
def _tiny_symplectic(seed: int) -> FlashMDModel:
    model = copy.deepcopy(_tiny(seed))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        config = GeneratingConfig.preset(
            "tiny", species=(13,), strides_fs=STRIDES_FS, cutoff=CUTOFF
        )
        generating = GeneratingFunction(config)
        with torch.no_grad():
            generating.stride_scale.copy_(torch.tensor([0.5, 1.0]))
    return FlashMDModel(model.predictor, model.energy_model, None, generating)


def tiny_symplectic_model(dtype: torch.dtype = torch.float64, seed: int = 0) -> FlashMDModel:
    """``tiny_model`` with a seeded tiny generating function whose correction is on."""
    return copy.deepcopy(_tiny_symplectic(seed)).to(dtype)


def tiny_model(dtype: torch.dtype = torch.float64, seed: int = 0) -> FlashMDModel:
    """A fresh copy of a seeded tiny Al model with its corrections on (not free flight)."""
    return copy.deepcopy(_tiny(seed)).to(dtype)
