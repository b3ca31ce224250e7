"""Random test systems and helpers shared by the model tests (all seeded).

Imported by name (``from models_testkit import ...``): pytest puts this folder on ``sys.path``.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk

from flashmd.models.energy import EnergyConfig, EnergyModel
from flashmd.models.generating import GeneratingConfig, GeneratingFunction
from flashmd.models.predictor import Predictor, PredictorConfig

SPECIES = (13, 29)
STRIDES_FS = (16.0, 32.0, 64.0)
CUTOFF = 4.0


def random_momenta(atoms: Atoms, rng: np.random.Generator, kT: float = 0.08) -> np.ndarray:
    """Maxwell-Boltzmann-like momenta ``(N, 3)`` at ``kT`` eV (hot, so displacements are large)."""
    return rng.normal(size=(len(atoms), 3)) * np.sqrt(atoms.get_masses() * kT)[:, None]


def make_atoms(kind: str, seed: int = 0) -> Atoms:
    """A random Al/Cu system: ``periodic`` (triclinic), ``cluster`` (open) or ``slab`` (mixed)."""
    rng = np.random.default_rng(seed)
    if kind == "periodic":
        atoms = bulk("Al", "fcc", a=4.05).repeat((2, 2, 3))
    elif kind == "cluster":
        atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat(2)[:13]
        atoms.pbc = False
        atoms.cell = np.zeros((3, 3))
        atoms.positions -= atoms.positions.mean(axis=0)
    elif kind == "slab":
        atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 1))
        atoms.pbc = (True, True, False)
        atoms.cell[2] = (0.3, 0.2, 4.0)  # a slanted open direction
    else:
        raise ValueError(kind)
    numbers = atoms.numbers.copy()
    numbers[rng.random(len(atoms)) < 0.4] = 29
    atoms.numbers = numbers
    atoms.positions += rng.normal(scale=0.15, size=atoms.positions.shape)
    atoms.set_momenta(random_momenta(atoms, rng))
    return atoms


def transformed(atoms: Atoms, matrix: np.ndarray, shift: np.ndarray | None = None) -> Atoms:
    """``atoms`` with positions, momenta and cell multiplied by ``matrix`` (3, 3), then shifted."""
    out = atoms.copy()
    out.set_cell(atoms.cell[:] @ matrix.T)
    out.positions = atoms.positions @ matrix.T + (0.0 if shift is None else shift)
    out.set_momenta(atoms.get_momenta() @ matrix.T)
    return out


def random_orthogonal(rng: np.random.Generator, reflect: bool) -> np.ndarray:
    """A random rotation (``reflect=False``) or improper rotation (``det = -1``)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if reflect else q


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b| / max |b|``."""
    return float((a - b).abs().max() / b.abs().max())


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give the zero-initialised scales and shifts random values so every path is exercised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in ("correction_scale", "energy_shift", "stride_scale"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model


@functools.cache
def _built(kind: str, seed: int) -> torch.nn.Module:
    # building e3nn modules costs ~0.5 s (code generation): build each seed once per session
    torch.manual_seed(seed)
    if kind == "predictor":
        config = PredictorConfig.preset(
            "tiny", species=SPECIES, strides_fs=STRIDES_FS, cutoff=CUTOFF, receiver_messages=True
        )
        return randomized(Predictor(config), seed)
    if kind == "generating":
        config = GeneratingConfig.preset(
            "tiny", species=SPECIES, strides_fs=STRIDES_FS, cutoff=CUTOFF
        )
        return randomized(GeneratingFunction(config), seed)
    return randomized(
        EnergyModel(EnergyConfig.preset("tiny", species=SPECIES, cutoff=CUTOFF)), seed
    )


def tiny_predictor(dtype: torch.dtype = torch.float64, seed: int = 0) -> Predictor:
    """A fresh copy of a seeded, randomised tiny predictor for Al/Cu."""
    return copy.deepcopy(_built("predictor", seed)).to(dtype)


def tiny_generating(dtype: torch.dtype = torch.float64, seed: int = 0) -> GeneratingFunction:
    """A fresh copy of a seeded, randomised tiny generating function for Al/Cu."""
    return copy.deepcopy(_built("generating", seed)).to(dtype)


def tiny_energy(dtype: torch.dtype = torch.float64, seed: int = 0) -> EnergyModel:
    """A fresh copy of a seeded, randomised tiny energy model for Al/Cu."""
    return copy.deepcopy(_built("energy", seed)).to(dtype)
