"""Drop-in ASE dynamics running a long-stride model: ``FlashMD`` (NVE), ``FlashMDLangevin``,
``FlashMDBussi``, and ``FlashMDMetropolis`` (exact canonical sampling,
:mod:`flashmd.md.metropolis`).

They subclass ``ase.md.md.MolecularDynamics`` and work with ``attach``, ``MDLogger``,
``ase.io.Trajectory``, ``run`` and ``irun``, and ``FixAtoms``. One ``step`` is one stride of the
batched engine (:class:`~flashmd.md.stepper.Stepper`) on a one-system state that lives on the
model's device; the atoms are updated after every stride and re-read only if changed from outside.
They never ask a calculator for forces: the potential energy computed by the energy filter is
cached in the attached :class:`~flashmd.ase.calculator.EnergyCalculator` for loggers. (The rare
velocity-Verlet fallback of the filter needs forces: those of the model's energy model, by
autograd; only when ``V`` comes from ``atoms.calc`` itself does a fallback ask it for forces.)
"""

from __future__ import annotations

import os
from typing import Any

import ase
import numpy as np
import torch
from ase.md.md import MolecularDynamics

from flashmd.ase.calculator import EnergyCalculator
from flashmd.ase.checks import check_constraints, check_momenta
from flashmd.md.barostats import DEFAULT_COMPRESSIBILITY, StochasticCellRescaling
from flashmd.md.consistency import StrideConsistency
from flashmd.md.contacts import check_contacts
from flashmd.md.filters import FilterConfig
from flashmd.md.leapfrog import LeapfrogProposal, leapfrog_potential
from flashmd.md.metropolis import MetropolisConfig, MetropolisStepper
from flashmd.md.propagators import (
    CalculatorPotential,
    ModelPotential,
    ModelPropagator,
    Potential,
    Propagator,
)
from flashmd.md.splitting import splitting_named
from flashmd.md.state import MDState, state_from_atoms
from flashmd.md.stepper import DEFAULT_THRESHOLD_A, AdaptiveStride, Stepper, StrideStats
from flashmd.md.symplectic import SolverConfig, SymplecticPropagator, model_propagator
from flashmd.md.thermostats import Bussi, Langevin, Thermostat
from flashmd.models.io import load_model
from flashmd.models.model import FlashMDModel
from flashmd.units import FS

Model = FlashMDModel | Propagator
#: What the classes' ``model`` argument takes: a model or propagator, or a shipped model's name or
#: a checkpoint path, loaded with :func:`flashmd.load_model` (on the GPU when there is one).
ModelLike = Model | str | os.PathLike


def _loaded(model: ModelLike) -> Model:
    """``model``, loaded first when it is a shipped model's name or a checkpoint path."""
    if isinstance(model, str | os.PathLike):
        return load_model(model)
    return model


def _components(
    model: Model, atoms: ase.Atoms, symplectic: bool | str, solver: SolverConfig | None
) -> tuple[Propagator, Potential | None]:
    """The propagator of ``model`` (symplectic strides when asked) and the potential for the
    filter: the model's energy model, the model itself when it is also a potential (the harmonic
    crystal), else ``atoms.calc``."""
    if isinstance(model, FlashMDModel):
        propagator: Propagator = model_propagator(model, symplectic, solver)
        if model.energy_model is not None:
            if atoms.calc is None:
                atoms.calc = EnergyCalculator(model)
            return propagator, ModelPotential(model)
    elif isinstance(model, Propagator):
        if symplectic or solver is not None:
            raise ValueError("symplectic strides need a FlashMDModel with a generating function")
        propagator = model
        if isinstance(model, Potential):
            return propagator, model
    else:
        raise TypeError(f"model must be a FlashMDModel or a Propagator, got {type(model).__name__}")
    return propagator, None if atoms.calc is None else CalculatorPotential(atoms.calc)


def _adaptive(
    model: Model, symplectic: bool, adaptive: bool, threshold_A: float, stride_fs: float
) -> AdaptiveStride | None:
    """The adaptive stride of ``model`` when asked (None otherwise)."""
    if not adaptive:
        return None
    if not isinstance(model, FlashMDModel) or symplectic:
        raise ValueError("adaptive strides need a FlashMDModel and direct (not symplectic) strides")
    found = AdaptiveStride(StrideConsistency(ModelPropagator(model), model.strides_fs), threshold_A)
    if not found.checks(stride_fs):
        raise ValueError(
            f"an adaptive {stride_fs:g} fs stride needs the model to serve its half too; it "
            f"serves {model.strides_fs} fs"
        )
    return found


def _device(model: Model) -> torch.device:
    return model.device if isinstance(model, FlashMDModel) else torch.device("cpu")


class FlashMD(MolecularDynamics):
    """Long-stride NVE dynamics with the energy filter (and momentum constraints) on.

    Args:
        atoms: the system; momenta must be set.
        timestep: the stride in ASE time units; must be one of the model's strides.
        model: a :class:`FlashMDModel`, a shipped model's name or a checkpoint path (loaded with
            :func:`flashmd.load_model`, e.g. ``model="emt-metals"``), or any propagator (e.g.
            ``HarmonicCrystal``).
        energy_filter: rescale momenta to conserve the total energy. Needs a potential: the
            model's energy model, a propagator that is also a potential, or ``atoms.calc``.
        max_cooling, max_heating: the accepted band ``[1 - max_cooling, 1 + max_heating]`` of
            the rescaling factor; outside it the stride is redone as two half strides (when the
            model serves them) or by velocity Verlet (see :mod:`flashmd.md.filters` for what
            widening the heating side costs).
        fallback_timestep_fs: timestep of the velocity-Verlet fallback, fs.
        split_depth: halvings tried before velocity Verlet (see
            :class:`~flashmd.md.filters.FilterConfig`).
        skin: neighbour-list skin, Å.
        symplectic: take symplectic, time-reversible strides, solved at the stride's
            midpoint (:mod:`flashmd.md.symplectic`): ``True`` or ``"learned"`` from the model's
            generating function (the model must carry one), ``"midpoint"`` the implicit
            midpoint rule on its energy model, ``"modified"`` that rule with the parameter-free
            correction that cancels its leading error (fourth order; about 5x the cost per
            solver iteration).
        solver: settings of that solver (default :class:`~flashmd.md.symplectic.SolverConfig`);
            ``SolverConfig(max_iterations=3, corrector=True)`` takes corrector strides, the
            direct predictor's stride and three solver iterations (about a quarter of the
            solve's cost; not exactly symplectic).
        adaptive: decline strides the predictor is unsure of (its stride self-consistency,
            :mod:`flashmd.md.consistency`, above ``adaptive_threshold_A``) and take them as half
            strides; ``timestep`` is then the output interval and the longest stride tried
            (the model must serve its half). Needs a :class:`FlashMDModel`, direct strides.
        adaptive_threshold_A: Å (default :data:`~flashmd.md.stepper.DEFAULT_THRESHOLD_A`).
        min_distance: refuse atoms closer than this (Å), the closest contact of the model's
            training data; checkpoints do not record it yet, so the default is a fraction of
            the sum of covalent radii (see :mod:`flashmd.md.contacts`).
        allow_close_contacts: warn about such atoms instead of refusing them.
        seed: seed of the thermostat noise (None: fresh entropy).
        trajectory, logfile, loginterval: as for ``MolecularDynamics``, which also takes any
            further keyword argument.

    Raises:
        ValueError: no momenta, atoms in close contact, a timestep not among the model's
            strides, species the model does not know, masses it was not trained with, an
            unsupported constraint, an energy filter without any potential, or symplectic
            strides from a model without a generating function.
    """

    thermostat: Thermostat | None = None
    barostat: StochasticCellRescaling | None = None

    def __init__(
        self,
        atoms: ase.Atoms,
        timestep: float,
        model: ModelLike,
        *,
        energy_filter: bool = True,
        max_cooling: float = FilterConfig.max_cooling,
        max_heating: float = FilterConfig.max_heating,
        fallback_timestep_fs: float = FilterConfig.fallback_timestep_fs,
        split_depth: int = FilterConfig.split_depth,
        skin: float = 1.0,
        symplectic: bool | str = False,
        solver: SolverConfig | None = None,
        adaptive: bool = False,
        adaptive_threshold_A: float = DEFAULT_THRESHOLD_A,
        min_distance: float | None = None,
        allow_close_contacts: bool = False,
        seed: int | None = None,
        trajectory: str | None = None,
        logfile: Any = None,
        loginterval: int = 1,
        **kwargs: Any,
    ) -> None:
        check_momenta(atoms)
        check_constraints(atoms)
        check_contacts(atoms, min_distance, allow_close_contacts)
        model = _loaded(model)
        propagator, potential = self._components(model, atoms, symplectic, solver)
        if energy_filter and potential is None:
            raise ValueError(
                "the energy filter needs V(q): use a model with an energy model, attach a "
                "calculator to the atoms, or pass energy_filter=False"
            )
        self.stepper = self._make_stepper(
            propagator,
            timestep / FS,
            potential,
            FilterConfig(
                energy_filter, max_cooling, max_heating, fallback_timestep_fs, split_depth
            ),
            skin,
            _adaptive(model, symplectic, adaptive, adaptive_threshold_A, timestep / FS),
        )
        self._device = _device(model)
        self._seed = int(np.random.default_rng().integers(2**62)) if seed is None else int(seed)
        self._state = self._read(atoms)
        #: Statistics of the last stride (scale, fallback, potential energy), or None.
        self.last_stats: StrideStats | None = None
        super().__init__(atoms, timestep, trajectory, logfile, loginterval, **kwargs)

    def _components(
        self, model: Model, atoms: ase.Atoms, symplectic: bool | str, solver: SolverConfig | None
    ) -> tuple[Propagator, Potential | None]:
        """The propagator and the filter's potential of ``model`` (see :func:`_components`)."""
        return _components(model, atoms, symplectic, solver)

    def _make_stepper(
        self,
        propagator: Propagator,
        stride_fs: float,
        potential: Potential | None,
        filters: FilterConfig,
        skin: float,
        adaptive: AdaptiveStride | None,
    ) -> Stepper:
        """The engine one :meth:`step` runs (subclasses change the kind of stride)."""
        return Stepper(
            propagator,
            stride_fs,
            potential=potential,
            thermostat=self.thermostat,
            filters=filters,
            skin=skin,
            adaptive=adaptive,
            barostat=self.barostat,
        )

    def _read(self, atoms: ase.Atoms, generator: torch.Generator | None = None) -> MDState:
        """A prepared state from ``atoms`` (target energy ``K + V`` now); raises clear errors."""
        state = state_from_atoms(atoms, device=self._device, seed=self._seed)
        if generator is not None:
            state = state.replace(generator=generator)
        try:
            state = self.stepper.prepare(state)
        except ValueError as error:
            raise ValueError(f"{error} (timestep = {self.stepper.stride_fs:g} fs)") from None
        self._written = (atoms.positions.copy(), atoms.get_momenta().copy(), atoms.cell[:].copy())
        if self._caches_energy(atoms):  # V = target - K, just computed
            potential = state.target_energy - state.kinetic_energy()
            atoms.calc.store_energy(atoms, float(potential[0]))
        return state

    def _caches_energy(self, atoms: ase.Atoms) -> bool:
        """Whether ``atoms.calc`` computes the very V of the filter, so its cache can be set."""
        potential = self.stepper.potential
        return (
            isinstance(atoms.calc, EnergyCalculator)
            and isinstance(potential, ModelPotential)
            and atoms.calc.model is potential.model
        )

    def _current(self) -> MDState:
        """The state, re-read from the atoms if something changed them since the last stride."""
        positions, momenta, cell = self._written
        atoms = self.atoms
        if (
            np.array_equal(atoms.positions, positions)
            and np.array_equal(atoms.get_momenta(), momenta)
            and np.array_equal(atoms.cell[:], cell)
        ):
            return self._state
        return self._read(atoms, self._state.generator)

    def step(self) -> None:
        """Advance the atoms by one stride."""
        state, stats = self.stepper.step(self._current())
        self._state, self.last_stats = state, stats
        positions = state.positions.cpu().numpy()
        momenta = state.momenta.cpu().numpy()
        if self.barostat is not None:
            self.atoms.set_cell(state.cell[0].cpu().numpy(), scale_atoms=False)
        self.atoms.set_positions(positions, apply_constraint=False)
        self.atoms.set_momenta(momenta, apply_constraint=False)
        self._written = (
            self.atoms.positions.copy(),
            self.atoms.get_momenta().copy(),
            self.atoms.cell[:].copy(),
        )
        if self._caches_energy(self.atoms):
            self.atoms.calc.store_energy(self.atoms, float(stats.potential_energy[0]))

    def _refresh_properties(self) -> None:
        """Nothing to refresh: ``step`` caches the energy; forces are never requested."""

    @property
    def fallbacks(self) -> int:
        """Strides the energy filter rejected so far (redone as half strides or by Verlet)."""
        return self.stepper.fallbacks

    @property
    def declined(self) -> int:
        """Strides the adaptive stride declined as unsure and took as half strides so far."""
        return self.stepper.declined

    @property
    def mean_solver_iterations(self) -> float:
        """Evaluations of the generating function's gradient per symplectic stride so far (NaN
        for direct strides or before the first)."""
        propagator = self.stepper.propagator
        if isinstance(propagator, SymplecticPropagator):
            return propagator.mean_iterations
        return float("nan")

    def todict(self) -> dict[str, Any]:
        return {
            **super().todict(),
            "energy_filter": self.stepper.filters.energy,
            "symplectic": isinstance(self.stepper.propagator, SymplecticPropagator),
            "adaptive": self.stepper.adaptive is not None,
        }


class FlashMDLangevin(FlashMD):
    """Long-stride Langevin dynamics: exact Ornstein-Uhlenbeck half-strides around the map.

    Args:
        atoms, timestep, model: as for :class:`FlashMD`.
        temperature_K: target temperature in K.
        friction: friction in 1/(ASE time), as for ``ase.md.langevin.Langevin``.
        **kwargs: as for :class:`FlashMD`.
    """

    def __init__(
        self,
        atoms: ase.Atoms,
        timestep: float,
        *,
        temperature_K: float,
        friction: float,
        model: ModelLike,
        **kwargs: Any,
    ) -> None:
        self.thermostat = Langevin(temperature_K, friction)
        super().__init__(atoms, timestep, model, **kwargs)


class FlashMDBussi(FlashMD):
    """Long-stride dynamics with Bussi stochastic velocity rescaling half-strides.

    Args:
        atoms, timestep, model: as for :class:`FlashMD`.
        temperature_K: target temperature in K.
        taut: time constant in ASE time units, as for ``ase.md.bussi.Bussi``.
        **kwargs: as for :class:`FlashMD`.
    """

    def __init__(
        self,
        atoms: ase.Atoms,
        timestep: float,
        *,
        temperature_K: float,
        taut: float,
        model: ModelLike,
        **kwargs: Any,
    ) -> None:
        self.thermostat = Bussi(temperature_K, taut)
        super().__init__(atoms, timestep, model, **kwargs)


class FlashMDNPT(FlashMD):
    """Long-stride dynamics at constant pressure and temperature: Langevin half-strides and
    stochastic cell rescaling once per stride (:mod:`flashmd.md.barostats`); the stress comes
    from the model's energy model (or ``atoms.calc``). The atoms' cell changes every stride.

    Args:
        atoms, timestep, model: as for :class:`FlashMD`; the atoms must be fully periodic.
        temperature_K: target temperature in K.
        pressure_au: target pressure in eV/Å³ (ASE units, as ASE's MTK barostats take it:
            ``pressure_GPa * ase.units.GPa``); negative values put the cell under tension.
        friction: Langevin friction in 1/(ASE time) (default 0.01/fs).
        taup: relaxation time of the volume in ASE time units (default 1 ps).
        compressibility_au: a rough isothermal compressibility in Å³/eV (default 1/(100 GPa));
            it sets how fast the volume relaxes, not its distribution.
        mask: (3,) Cartesian axes that scale independently, e.g. ``(True, True, False)`` for
            a slab in the xy plane; None (default) scales the cell isotropically.
        **kwargs: as for :class:`FlashMD`.
    """

    def __init__(
        self,
        atoms: ase.Atoms,
        timestep: float,
        *,
        temperature_K: float,
        pressure_au: float,
        model: ModelLike,
        friction: float = 0.01 / FS,
        taup: float = 1000.0 * FS,
        compressibility_au: float = DEFAULT_COMPRESSIBILITY,
        mask: tuple[bool, bool, bool] | None = None,
        **kwargs: Any,
    ) -> None:
        self.thermostat = Langevin(temperature_K, friction)
        self.barostat = StochasticCellRescaling(
            pressure_au, temperature_K, taup, compressibility_au, mask
        )
        super().__init__(atoms, timestep, model, **kwargs)


class FlashMDMetropolis(FlashMD):
    """Exact canonical sampling: the model's symplectic strides (or, with ``leapfrog_steps``,
    velocity-Verlet steps on its energy model: hybrid Monte Carlo) as Metropolis proposals with
    momentum refreshes (:mod:`flashmd.md.metropolis`). The chain samples ``exp(-(K + V)/kT)``
    exactly, whatever the stride's error; its time correlations are not dynamics (use it for
    equilibrium averages, not for diffusion or spectra).

    Args:
        atoms, timestep, model: as for :class:`FlashMD`; the model must carry a generating
            function and an energy model (or be a volume-preserving propagator such as
            ``HarmonicCrystal``).
        temperature_K: the canonical temperature, K.
        persistence: momentum persistence between strides (0: fresh momenta every stride).
        uniform_drift: carry the accept/reject uniform between strides, moved by this much
            each time (Neal 2020; still exact): rejections come in runs (measured in the
            docs/guide/exact-sampling.md: no gain on Cu); 0 draws a fresh uniform every stride.
        extra_chances: continue a proposal that would be rejected by up to this many more
            strides before reversing the momenta (still exact; each chance taken costs a
            stride); 0 is the plain chain.
        check_reversibility: solve each proposal back and reject it unless it returns to its
            start (exact; doubles the cost).
        reversibility_tolerance_A: Å that return may miss by.
        sample: whose ``V`` is sampled: ``"model"`` (the energy model) or ``"calculator"``
            (``atoms.calc``, e.g. the reference: one energy evaluation per stride, no forces).
        leapfrog_steps: 0 proposes the model's symplectic strides; ``n > 0`` proposes ``n``
            velocity-Verlet steps of ``timestep / n`` on the energy model instead (hybrid Monte
            Carlo, :mod:`flashmd.md.leapfrog`: exactly reversible, so never solved back, and
            no generating function needed).
        learned_kick: with ``leapfrog_steps``, step on the model's learned kick (read with
            ``V`` in one forward pass; ``flashmd train-kick``) instead of its forces.
        splitting: with ``leapfrog_steps``, how each step splits into kicks and drifts:
            ``"verlet"`` or ``"two-stage"`` (two evaluations per step, a smaller energy error
            per evaluation; :mod:`flashmd.md.splitting`).
        solver, skin, min_distance, allow_close_contacts, seed: as for :class:`FlashMD`.
        trajectory, logfile, loginterval: as for ``MolecularDynamics``, which also takes any
            further keyword argument.

    Attributes:
        acceptance_rate: accepted over proposed strides so far.

    Raises:
        ValueError: a model without a generating function and no ``leapfrog_steps`` (the
            message says how to train one), a temperature not above 0 K,
            ``sample="calculator"`` without a calculator, negative ``leapfrog_steps``, an
            unknown ``splitting`` or one without ``leapfrog_steps``.
    """

    def __init__(
        self,
        atoms: ase.Atoms,
        timestep: float,
        *,
        temperature_K: float,
        model: ModelLike,
        persistence: float = 0.0,
        uniform_drift: float = 0.0,
        extra_chances: int = 0,
        check_reversibility: bool = True,
        reversibility_tolerance_A: float = 1e-4,
        sample: str = "model",
        leapfrog_steps: int = 0,
        learned_kick: bool = False,
        splitting: str = "verlet",
        **kwargs: Any,
    ) -> None:
        if leapfrog_steps < 0:
            raise ValueError(f"leapfrog_steps must be >= 0, got {leapfrog_steps}")
        if learned_kick and not leapfrog_steps:
            raise ValueError(
                "learned_kick moves the atoms of leapfrog proposals: set leapfrog_steps"
            )
        splitting_named(splitting)
        if splitting != "verlet" and not leapfrog_steps:
            raise ValueError(
                "a splitting splits the steps of leapfrog proposals: set leapfrog_steps"
            )
        self.leapfrog_steps = int(leapfrog_steps)
        self.learned_kick = bool(learned_kick)
        self.splitting = splitting
        if sample not in ("model", "calculator"):
            raise ValueError(f"sample must be 'model' or 'calculator', got {sample!r}")
        if sample == "calculator" and atoms.calc is None:
            raise ValueError("sample='calculator' needs a calculator attached to the atoms")
        self._sampled = atoms.calc if sample == "calculator" else None
        self.config = MetropolisConfig(
            temperature_K,
            persistence,
            check_reversibility,
            reversibility_tolerance_A,
            uniform_drift=uniform_drift,
            extra_chances=extra_chances,
        )
        for name in ("energy_filter", "symplectic", "adaptive"):
            if name in kwargs:
                raise TypeError(f"FlashMDMetropolis does not take {name!r}")
        model = _loaded(model)
        symplectic = isinstance(model, FlashMDModel) and not leapfrog_steps
        super().__init__(
            atoms, timestep, model, energy_filter=False, symplectic=symplectic, **kwargs
        )

    def _components(
        self, model: Model, atoms: ase.Atoms, symplectic: bool | str, solver: SolverConfig | None
    ) -> tuple[Propagator, Potential | None]:
        """With leapfrog steps: velocity Verlet on the model's ``V`` (its energy model, or the
        model itself when it is a potential), which the chain also samples unless
        ``sample="calculator"``; the one object lets the chain reuse the proposal's energy."""
        if not self.leapfrog_steps:
            return _components(model, atoms, symplectic, solver)
        if isinstance(model, FlashMDModel):  # refuses a model without V (or without a kick)
            potential: Potential = leapfrog_potential(model, self.learned_kick)
        elif isinstance(model, Potential):
            potential = model
        else:
            raise ValueError(
                "leapfrog proposals need V(q): a FlashMDModel with an energy model or a potential"
            )
        proposal = LeapfrogProposal(potential, self.leapfrog_steps, splitting=self.splitting)
        return proposal, potential

    def _make_stepper(
        self,
        propagator: Propagator,
        stride_fs: float,
        potential: Potential | None,
        filters: FilterConfig,
        skin: float,
        adaptive: AdaptiveStride | None,
    ) -> Stepper:
        if self._sampled is not None:  # a leapfrog proposal still moves on the model's V
            potential = CalculatorPotential(self._sampled)
        if potential is None:
            raise ValueError("a Metropolis chain needs V(q): a model with an energy model")
        return MetropolisStepper(propagator, stride_fs, potential, self.config, skin)

    @property
    def acceptance_rate(self) -> float:
        """Accepted over proposed strides so far (NaN before the first)."""
        assert isinstance(self.stepper, MetropolisStepper)
        return self.stepper.acceptance_rate
