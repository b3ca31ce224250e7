"""Fallback for strides the energy filter cannot repair: velocity Verlet on the potential's forces.

Used for the systems whose predicted stride has no real rescaling factor (``V(q') >= E_target``)
or one too far from 1: the stride is integrated again from the state before it with a small
timestep. This costs about ``stride / timestep`` force evaluations of those systems only, and is
counted by the stepper.
"""

from __future__ import annotations

import math

import torch

from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import Potential
from flashmd.md.splitting import VELOCITY_VERLET, splitting_steps
from flashmd.md.state import MDState


def velocity_verlet(
    state: MDState, potential: Potential, stride_fs: float, timestep_fs: float, skin: float = 1.0
) -> tuple[MDState, torch.Tensor]:
    """Integrate ``state`` over ``stride_fs`` with velocity Verlet (fixed atoms stay put).

    Args:
        state: the systems to integrate (typically a :meth:`~MDState.select` subset).
        potential: supplies energies (S,) eV and forces (A, 3) eV/Å.
        stride_fs: time to integrate, fs.
        timestep_fs: largest timestep, fs; the stride is split into equal steps.
        skin: neighbour-list skin in Å.

    Returns:
        The state one stride later and its potential energy (S,) eV.
    """
    n_steps = max(1, math.ceil(stride_fs / timestep_fs - 1e-9))
    cache = None if potential.cutoff is None else NeighborCache(potential.cutoff, skin)

    def evaluate(current: MDState) -> tuple[torch.Tensor, torch.Tensor]:
        edges = None if cache is None else cache.edges(current)
        return potential.energy_and_forces(current, edges)

    energy, forces = evaluate(state)
    state, energy, _ = splitting_steps(
        state, forces, energy, evaluate, stride_fs / n_steps, n_steps, VELOCITY_VERLET
    )
    return state, energy
