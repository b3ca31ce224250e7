"""Reference constant-pressure MD with any ASE calculator: ASE's Langevin velocity Verlet and the
stochastic cell rescaling of the long strides (:mod:`flashmd.md.barostats`), so that a model's
NPT rollout and its reference use one barostat algorithm.

Every ``barostat_every`` steps the cell, positions and momenta are rescaled over that many
timesteps from the calculator's stress; the barostat's noise comes from the same NumPy generator
as the thermostat's, so a trajectory is reproducible and resumable from that generator's state.
"""

from __future__ import annotations

from typing import Any

import ase
import numpy as np
import torch
from ase.md.md import MolecularDynamics

from flashmd.data.reference import centred_langevin
from flashmd.md.barostats import StochasticCellRescaling
from flashmd.md.state import state_from_atoms


class LangevinSCR(MolecularDynamics):
    """Langevin dynamics (ASE's, centre of mass fixed) with stochastic cell rescaling.

    Args:
        atoms: fully periodic system with a calculator that gives the stress.
        timestep: ASE time units.
        temperature_K: K.
        friction: 1/(ASE time).
        barostat: the barostat (its temperature should be ``temperature_K``).
        barostat_every: timesteps between rescalings (each over that many timesteps).
        rng: NumPy generator of both noises.
        steps_taken: timesteps already taken (a resumed run continues the rescaling's phase).

    The rescaling's phase is counted by :attr:`steps_taken`, which :meth:`step` advances, so calling
    ``step()`` directly (as the generator does) and ``run()`` rescale alike.
    """

    def __init__(
        self,
        atoms: ase.Atoms,
        timestep: float,
        *,
        temperature_K: float,
        friction: float,
        barostat: StochasticCellRescaling,
        barostat_every: int = 10,
        rng: np.random.Generator,
        steps_taken: int = 0,
        **kwargs: Any,
    ) -> None:
        if barostat_every < 1:
            raise ValueError(f"barostat_every must be at least 1, got {barostat_every}")
        self.langevin = centred_langevin(atoms, timestep, temperature_K, friction, rng)
        self.barostat = barostat
        self.barostat_every = int(barostat_every)
        self.rng = rng
        #: timesteps taken; a rescaling comes before every ``barostat_every``-th
        self.steps_taken = int(steps_taken)
        barostat.check(state_from_atoms(atoms))  # FixCom holds no atom in place
        super().__init__(atoms, timestep, **kwargs)

    def step(self, forces: np.ndarray | None = None) -> None:
        if self.steps_taken % self.barostat_every == 0:
            self._rescale()
            forces = None
        self.langevin.step(forces)
        self.steps_taken += 1

    def _rescale(self) -> None:
        atoms = self.atoms
        state = state_from_atoms(atoms)
        stress = torch.as_tensor(atoms.get_stress(voigt=False), dtype=torch.float64)[None]
        noise = torch.as_tensor(
            self.rng.standard_normal(self.barostat.noise_shape(1)), dtype=torch.float64
        )
        dt = self.barostat_every * self.dt
        scale = torch.exp(self.barostat.strain(state, stress, dt, noise))[0].numpy()
        momenta = atoms.get_momenta()
        atoms.set_cell(atoms.cell[:] * scale[None, :], scale_atoms=True)
        atoms.set_momenta(momenta / scale[None, :], apply_constraint=False)
