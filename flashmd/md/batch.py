"""Batch trajectory generation with a model (``flashmd md``): many systems and replicas advance
together in one batched graph and are written to a store in the reference schema.

Trajectory ``k`` is (system ``k // replicas``, replica ``k % replicas``) with id
``{k:05d}_{formula}_r{replica}``; ``shard=(i, n)`` keeps the trajectories with ``k % n == i``.
Systems come from structure files, a generation recipe, or (``start_from``) the first frame of
the trajectories at ``temperature_K`` in a reference store: an equilibrated start, positions and
momenta as stored, the natural way to compare a model with its reference (``flashmd
evaluate``). Otherwise initial momenta are Maxwell-Boltzmann at ``temperature_K`` from
``SeedSequence(seed, spawn_key=(k,))`` without centre-of-mass motion (and rotation, for open
systems). The thermostat
noise of the batch comes from one generator seeded by ``seed`` and the shard, so a run is fixed
by its settings and shard. Re-running the same command skips complete trajectories and resumes
partial ones from their last committed frame; other settings on the same store are refused.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import ase
import ase.io
import numpy as np
import torch
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
from tqdm.auto import tqdm

from flashmd import __version__
from flashmd.data.calculators import serving_calculator
from flashmd.data.recipes import CalculatorSpec, load_recipe
from flashmd.data.store import COMMIT_INTERVAL_S, StoreError, TrajectoryStore
from flashmd.data.systems import build_system
from flashmd.md.barostats import GPA, StochasticCellRescaling
from flashmd.md.consistency import StrideConsistency
from flashmd.md.contacts import check_contacts
from flashmd.md.filters import FilterConfig
from flashmd.md.leapfrog import LeapfrogProposal, leapfrog_potential
from flashmd.md.metropolis import MetropolisConfig, MetropolisStepper
from flashmd.md.output import RolloutWriter
from flashmd.md.propagators import (
    CalculatorPotential,
    ModelPotential,
    ModelPropagator,
    Potential,
    Propagator,
)
from flashmd.md.rollout import RolloutReport, rollout
from flashmd.md.splitting import splitting_named
from flashmd.md.state import MDState, state_from_atoms
from flashmd.md.stepper import DEFAULT_THRESHOLD_A, AdaptiveStride, Stepper
from flashmd.md.symplectic import SolverConfig, SymplecticPropagator, model_propagator
from flashmd.md.thermostats import Bussi, Langevin, Thermostat
from flashmd.models.compiled import compile_model
from flashmd.models.io import load_model
from flashmd.models.model import FlashMDModel
from flashmd.units import FS

#: What ``flashmd md --ensemble`` takes.
ENSEMBLES = ("nve", "langevin", "bussi", "metropolis", "npt")
#: The ensembles whose thermostat is Langevin (their rollouts record ``friction_per_fs``).
LANGEVIN_ENSEMBLES = ("langevin", "npt")


@dataclass(frozen=True)
class MDSettings:
    """Everything that fixes a batch of rollouts (stored as the store's recipe).

    Times in fs, temperatures in K; ``friction_per_fs`` is the Langevin friction in 1/fs.
    ``max_cooling``, ``max_heating`` and ``contact_fraction`` are the filter's settings (see
    :class:`~flashmd.md.filters.FilterConfig`; ``contact_fraction`` None or 0: no contact check).
    ``symplectic`` takes symplectic strides (:mod:`flashmd.md.symplectic`) solved to
    ``solver_tolerance_A`` in at most ``solver_max_iterations`` iterations, or as corrector strides
    (``corrector_iterations``: that many iterations from the direct predictor's stride, their
    iterate kept, converged or not). ``uncertainty``
    stores the stride self-consistency of every frame per atom (:mod:`flashmd.md.consistency`;
    three more predictor passes per frame). ``stride_fs = "auto"`` takes the model's longest
    stride adaptively (:class:`~flashmd.md.stepper.AdaptiveStride`): a stride whose predictor
    disagrees with itself by more than ``adaptive_threshold_A`` (default
    :data:`~flashmd.md.stepper.DEFAULT_THRESHOLD_A`) is taken as half strides; frames stay on
    the grid of ``every`` longest strides. ``ensemble = "metropolis"`` samples the canonical
    distribution of the energy model at ``temperature_K`` exactly (:mod:`flashmd.md.metropolis`):
    symplectic strides as proposals (``symplectic`` is implied), momenta refreshed with
    ``persistence`` before each, every proposal solved back when ``check_reversibility``, the
    accept/reject uniform carried between strides when ``uniform_drift`` (Neal 2020), a
    proposal that would be rejected continued by up to ``extra_chances`` strides first; with
    ``leapfrog_steps`` the proposals are that many velocity-Verlet steps on the energy model
    instead (hybrid Monte Carlo, :mod:`flashmd.md.leapfrog`), on the model's learned kick instead
    of the energy model's forces with ``learned_kick``, each step split by ``splitting``
    (:data:`flashmd.md.splitting.SPLITTINGS`). ``sample_calculator`` (a recipe's
    calculator name, e.g. ``sevennet-0``) makes the chain sample that calculator's ``V`` exactly
    instead of the energy model's: one call per stride, the proposals still move on the model.
    """

    model: str
    structures: tuple[str, ...] = ()
    recipe: str | None = None
    start_from: str | None = None
    ensemble: str = "nve"
    temperature_K: float = 300.0
    stride_fs: float | str = 32.0
    strides: int = 100
    every: int = 1
    replicas: int = 1
    seed: int = 0
    friction_per_fs: float = 0.01
    taut_fs: float = 100.0
    energy_filter: bool = True
    max_cooling: float = FilterConfig.max_cooling
    max_heating: float = FilterConfig.max_heating
    contact_fraction: float | None = FilterConfig.contact_fraction
    symplectic: bool | str = False
    solver_tolerance_A: float = SolverConfig.tolerance_A
    solver_max_iterations: int = SolverConfig.max_iterations
    corrector_iterations: int | None = None
    uncertainty: bool = False
    adaptive_threshold_A: float | None = None
    persistence: float = 0.0
    check_reversibility: bool = True
    uniform_drift: float = 0.0
    extra_chances: int = 0
    leapfrog_steps: int = 0
    learned_kick: bool = False
    splitting: str = "verlet"
    sample_calculator: str | None = None
    pressure_GPa: float | None = None
    barostat_tau_fs: float = 1000.0
    compressibility_per_GPa: float = 0.01
    cell_mask: tuple[bool, bool, bool] | None = None

    def __post_init__(self) -> None:
        if self.ensemble not in ENSEMBLES:
            raise ValueError(
                f"ensemble must be one of {', '.join(ENSEMBLES)}, got {self.ensemble!r}"
            )
        if self.leapfrog_steps < 0:
            raise ValueError(f"leapfrog_steps must be >= 0, got {self.leapfrog_steps}")
        if self.leapfrog_steps and (self.ensemble != "metropolis" or self.symplectic):
            raise ValueError(
                "leapfrog steps are the proposals of the metropolis ensemble, instead of "
                "symplectic strides: use them with --ensemble metropolis and without --symplectic"
            )
        if self.learned_kick and not self.leapfrog_steps:
            raise ValueError(
                "the learned kick moves the atoms of leapfrog proposals: use it with "
                "--ensemble metropolis --leapfrog-steps N"
            )
        splitting_named(self.splitting)
        if self.splitting != "verlet" and not self.leapfrog_steps:
            raise ValueError(
                "a splitting splits the steps of leapfrog proposals: use it with "
                "--ensemble metropolis --leapfrog-steps N"
            )
        if self.sample_calculator is not None and self.ensemble != "metropolis":
            raise ValueError(
                f"sampling {self.sample_calculator}'s V exactly is what the metropolis ensemble "
                "does: use --sample with --ensemble metropolis (the other ensembles move on the "
                "model alone)"
            )
        if self.ensemble == "metropolis" and not self.leapfrog_steps and not self.symplectic:
            object.__setattr__(self, "symplectic", True)  # its proposals are symplectic strides
        for flag, value in (
            ("--uniform-drift", self.uniform_drift),
            ("--extra-chances", self.extra_chances),
        ):
            if value and self.ensemble != "metropolis":
                raise ValueError(
                    f"{flag} sets how the metropolis ensemble accepts or rejects its "
                    "proposals: use it with --ensemble metropolis"
                )
        # refuses impossible settings
        MetropolisConfig(
            self.temperature_K,
            self.persistence,
            uniform_drift=self.uniform_drift,
            extra_chances=self.extra_chances,
        )
        sources = [bool(self.structures), self.recipe is not None, self.start_from is not None]
        if sum(sources) != 1:
            raise ValueError(
                "give structure files, a recipe or a store to start from (exactly one of them)"
            )
        if self.strides < 1 or self.every < 1 or self.replicas < 1:
            raise ValueError("strides, every and replicas must be at least 1")
        if isinstance(self.stride_fs, str) and self.stride_fs != "auto":
            raise ValueError(f"stride_fs must be a number of fs or 'auto', got {self.stride_fs!r}")
        if self.adaptive_threshold_A is not None and not self.adaptive_threshold_A > 0:
            raise ValueError(
                f"adaptive_threshold_A must be positive, got {self.adaptive_threshold_A}"
            )
        if self.adaptive_threshold_A is not None and self.stride_fs != "auto":
            raise ValueError("an adaptive threshold needs stride_fs 'auto' (--stride-fs auto)")
        if self.stride_fs == "auto" and self.symplectic:
            raise ValueError(
                "adaptive strides are the direct predictor's; drop --symplectic (and the "
                "metropolis ensemble) or give a stride"
            )
        if (self.ensemble == "npt") != (self.pressure_GPa is not None):
            raise ValueError(
                "the npt ensemble needs a pressure (--pressure-GPa), and a pressure needs the npt "
                "ensemble (--ensemble npt)"
            )
        if self.ensemble == "npt":
            self.barostat()  # refuses impossible barostat settings before any work
        if self.corrector_iterations is not None:
            self._check_corrector()
        if self.strides % self.every:
            raise ValueError(f"strides ({self.strides}) must be a multiple of every ({self.every})")

    def _check_corrector(self) -> None:
        if self.corrector_iterations < 1:
            raise ValueError(f"corrector iterations must be >= 1, got {self.corrector_iterations}")
        if not self.symplectic:
            raise ValueError(
                "corrector strides correct the direct predictor with the symplectic solver: "
                "add --symplectic (or drop --corrector-iterations)"
            )
        if self.ensemble == "metropolis":
            raise ValueError(
                "a Metropolis proposal must be exactly volume-preserving and reversible, and "
                "corrector strides are not: drop --corrector-iterations (solve the strides)"
            )
        if self.solver_max_iterations != SolverConfig.max_iterations:
            raise ValueError(
                "corrector strides take exactly --corrector-iterations iterations: drop "
                "--solver-max-iterations"
            )

    @property
    def n_frames(self) -> int:
        return self.strides // self.every + 1

    def barostat(self) -> StochasticCellRescaling | None:
        """The npt ensemble's barostat (None for the others)."""
        if self.pressure_GPa is None:
            return None
        mask = None if self.cell_mask is None else tuple(bool(m) for m in self.cell_mask)
        return StochasticCellRescaling(
            pressure=self.pressure_GPa * GPA,
            temperature_K=self.temperature_K,
            tau=self.barostat_tau_fs * FS,
            compressibility=self.compressibility_per_GPa / GPA,
            mask=mask,  # type: ignore[arg-type]
        )


#: Settings added after rollout stores were first written, with the value a run had before: a
#: field at that value is left out of the store's recipe, so an older store still resumes.
ADDED_SETTINGS: dict[str, object] = {
    "uncertainty": False,
    "adaptive_threshold_A": None,
    "persistence": 0.0,
    "check_reversibility": True,
    "uniform_drift": 0.0,
    "extra_chances": 0,
    "leapfrog_steps": 0,
    "learned_kick": False,
    "splitting": "verlet",
    "sample_calculator": None,
    "pressure_GPa": None,
    "barostat_tau_fs": 1000.0,
    "compressibility_per_GPa": 0.01,
    "cell_mask": None,
    "corrector_iterations": None,
}


#: The added settings that flashmd listed in every store for a while, at any value.
_ONCE_LISTED = ("uncertainty", "adaptive_threshold_A")


def store_recipe(settings: MDSettings, keep: tuple[str, ...] = ()) -> dict:
    """The recipe a rollout store records (and must match to be resumed): added settings at
    their old values are left out, except those named in ``keep``."""
    fields = asdict(settings)
    for name, before in ADDED_SETTINGS.items():
        if fields[name] == before and name not in keep:
            del fields[name]
    return {"name": "flashmd-md", **fields}


def _open_store(location: str, settings: MDSettings) -> TrajectoryStore:
    """The rollout store at ``location`` for ``settings``, created or resumed; a store whose
    recipe lists the settings flashmd listed for a while at their old values too resumes."""
    try:
        return TrajectoryStore.create(location, store_recipe(settings))
    except StoreError as error:
        try:
            return TrajectoryStore.create(location, store_recipe(settings, _ONCE_LISTED))
        except StoreError:
            raise error from None


def stride_for(settings: MDSettings, model: FlashMDModel) -> float:
    """The stride in fs: the settings' own, or the model's longest for ``"auto"``."""
    if settings.stride_fs == "auto":
        return max(model.strides_fs)
    return float(settings.stride_fs)


def adaptive_for(settings: MDSettings, model: FlashMDModel) -> AdaptiveStride | None:
    """The adaptive stride of ``"auto"`` settings (None: a fixed stride)."""
    if settings.stride_fs != "auto":
        return None
    threshold = settings.adaptive_threshold_A
    if threshold is None:
        threshold = DEFAULT_THRESHOLD_A
    return AdaptiveStride(StrideConsistency(ModelPropagator(model), model.strides_fs), threshold)


def load_systems(settings: MDSettings) -> list[ase.Atoms]:
    """The input systems: every structure file (first frame), a recipe's built systems, or the
    first frames (with momenta) of a store's trajectories at ``settings.temperature_K``."""
    if settings.start_from is not None:
        return stored_starts(settings.start_from, settings.temperature_K)
    if settings.recipe is None:
        systems = []
        for path in settings.structures:
            try:
                atoms = ase.io.read(path, index=0)
            except FileNotFoundError:
                raise ValueError(f"structure file {path} does not exist") from None
            assert isinstance(atoms, ase.Atoms)  # a single index reads one frame
            systems.append(atoms)
        return systems
    recipe = load_recipe(settings.recipe)
    melted = [f"systems.{k}" for k, spec in enumerate(recipe.systems) if spec.melt_K is not None]
    if melted:
        warnings.warn(
            f"{', '.join(melted)} of {settings.recipe} ask to be melted first (melt_K), which "
            "only the reference generator does: these rollouts start from the built crystal. For "
            "a liquid, generate its reference and start from it (--start-from STORE).",
            stacklevel=2,
        )
    rng = np.random.default_rng(np.random.SeedSequence(settings.seed))
    return [build_system(spec, rng, f"systems.{k}") for k, spec in enumerate(recipe.systems)]


def stored_starts(location: str, temperature_K: float) -> list[ase.Atoms]:
    """First frames (positions and momenta as stored) of the trajectories of the store at
    ``location`` run at ``temperature_K``; ``atoms.info["start_from"]`` names each source."""
    store = TrajectoryStore.open(location)
    found: dict[float, list[str]] = {}
    for traj_id in store.ids():
        value = store[traj_id].attrs.get("temperature_K")
        if value is not None and store[traj_id].n_frames > 0:
            found.setdefault(round(float(value), 3), []).append(traj_id)
    chosen = found.get(round(float(temperature_K), 3), [])
    if not chosen:
        available = ", ".join(f"{t:g} K" for t in sorted(found)) or "none"
        raise ValueError(
            f"{location} has no trajectory at {temperature_K:g} K to start from (its "
            f"temperatures: {available}); pass one of them with --temperature-K"
        )
    starts = []
    for traj_id in chosen:
        atoms = store[traj_id].to_atoms(0)
        atoms.info["start_from"] = {"store": str(location), "trajectory": traj_id}
        starts.append(atoms)
    return starts


def make_thermostat(
    ensemble: str, temperature_K: float, friction_per_fs: float, taut_fs: float
) -> Thermostat | None:
    """The thermostat of ``ensemble``: Langevin at ``friction_per_fs`` (1/fs) for
    :data:`LANGEVIN_ENSEMBLES`, Bussi at ``taut_fs`` (fs) for ``bussi``, else None."""
    if ensemble in LANGEVIN_ENSEMBLES:
        return Langevin(temperature_K, friction_per_fs / FS)
    if ensemble == "bussi":
        return Bussi(temperature_K, taut_fs * FS)
    return None


def thermostat_attrs(ensemble: str, friction_per_fs: float, taut_fs: float) -> dict[str, float]:
    """What a rollout records of its thermostat: ``friction_per_fs`` under Langevin (evaluate's
    frequency row reads it), ``taut_fs`` under Bussi, nothing otherwise."""
    if ensemble in LANGEVIN_ENSEMBLES:
        return {"friction_per_fs": friction_per_fs}
    if ensemble == "bussi":
        return {"taut_fs": taut_fs}
    return {}


def _thermostat(settings: MDSettings) -> Thermostat | None:
    return make_thermostat(
        settings.ensemble, settings.temperature_K, settings.friction_per_fs, settings.taut_fs
    )


def sampled_calculator(settings: MDSettings, systems: list[ase.Atoms]) -> Potential | None:
    """The reference ``V`` a metropolis chain samples instead of the energy model's
    (``settings.sample_calculator``; None without one), checked to cover every element of
    ``systems`` before any work.

    Raises:
        RecipeError: an unknown calculator, a missing package (the message names the extra to
            install), an element the calculator has no parameters for.
    """
    if settings.sample_calculator is None:
        return None
    labels = [f"system {k} ({a.get_chemical_formula('metal')})" for k, a in enumerate(systems)]
    spec = CalculatorSpec(name=settings.sample_calculator)
    calculator = serving_calculator(spec, list(zip(systems, labels, strict=True)))
    return CalculatorPotential(calculator)


def make_stepper(
    settings: MDSettings,
    model: FlashMDModel,
    stride_fs: float,
    sampled: Potential | None = None,
) -> Stepper:
    """The engine of ``settings``: filtered strides, or a Metropolis chain (``metropolis``)
    that samples ``sampled`` (:func:`sampled_calculator`) or, without it, the energy model.

    Raises:
        ValueError: a Metropolis chain from a model without an energy model, or strides the
            model cannot take (e.g. symplectic ones without a generating function).
    """
    potential = ModelPotential(model) if model.energy_model is not None else None
    solver = SolverConfig(
        tolerance_A=settings.solver_tolerance_A,
        max_iterations=settings.corrector_iterations or settings.solver_max_iterations,
        corrector=settings.corrector_iterations is not None,
    )
    if settings.ensemble == "metropolis":
        if potential is None:
            raise ValueError("the metropolis ensemble samples exp(-V/kT): the model needs V")
        config = MetropolisConfig(
            settings.temperature_K,
            settings.persistence,
            check_reversibility=settings.check_reversibility,
            uniform_drift=settings.uniform_drift,
            extra_chances=settings.extra_chances,
        )
        if settings.leapfrog_steps:
            potential = leapfrog_potential(model, settings.learned_kick)
            proposal: Propagator = LeapfrogProposal(
                potential, settings.leapfrog_steps, splitting=settings.splitting
            )
        else:
            proposal = model_propagator(model, settings.symplectic, solver)
        chain_potential = potential if sampled is None else sampled
        return MetropolisStepper(proposal, stride_fs, chain_potential, config)
    propagator = model_propagator(
        model, settings.symplectic, solver if settings.symplectic else None
    )
    return Stepper(
        propagator,
        stride_fs,
        potential=potential,
        thermostat=_thermostat(settings),
        filters=FilterConfig(
            energy=settings.energy_filter and potential is not None,
            max_cooling=settings.max_cooling,
            max_heating=settings.max_heating,
            contact_fraction=settings.contact_fraction or None,
        ),
        adaptive=adaptive_for(settings, model),
        barostat=settings.barostat(),
    )


def _check_system(atoms: ase.Atoms, index: int, allow_close_contacts: bool) -> None:
    """Refuse (``ValueError``) a system that cannot be run: one atom, close contacts."""
    if len(atoms) < 2:
        raise ValueError(
            f"system {index} has {len(atoms)} atom(s): with its centre of mass at rest (as every "
            "rollout starts) it has no motion to thermalise or predict; give it two atoms or more"
        )
    name = f"system {index} ({atoms.get_chemical_formula('metal')})"
    check_contacts(atoms, None, allow_close_contacts, name, "--allow-close-contacts")


def _initial(atoms: ase.Atoms, settings: MDSettings, index: int) -> ase.Atoms:
    atoms = atoms.copy()
    atoms.calc = None
    if settings.start_from is not None:
        return atoms  # an equilibrated state: keep its momenta
    rng = np.random.default_rng(np.random.SeedSequence(settings.seed, spawn_key=(index,)))
    thermalize_momenta(atoms, temperature_K=settings.temperature_K, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    return atoms


def _final_attrs(stepper: Stepper) -> dict[str, float | int]:
    """Counts written to every trajectory of a finished run."""
    attrs: dict[str, float | int] = {
        "fallbacks": stepper.fallbacks,
        "verlet_fallbacks": stepper.verlet_fallbacks,
    }
    if isinstance(stepper, MetropolisStepper):
        attrs["metropolis_acceptance"] = stepper.acceptance_rate
        attrs["metropolis_mean_probability"] = stepper.mean_acceptance_probability
        attrs["metropolis_irreversible"] = stepper.irreversible
        attrs["metropolis_extra_strides"] = stepper.extra_strides
    propagator = stepper.propagator
    if isinstance(propagator, SymplecticPropagator):
        attrs["solver_mean_iterations"] = propagator.mean_iterations
        attrs["solver_unconverged"] = propagator.unconverged
    return attrs


def _uncertainty_probe(
    model: FlashMDModel, stride_fs: float
) -> Callable[[MDState], dict[str, torch.Tensor]]:
    """Per-atom self-consistency (Å) of the direct predictor's ``stride_fs`` from a state (for
    symplectic strides too: the predictor starts their solver, and is far cheaper to probe)."""
    consistency = StrideConsistency(ModelPropagator(model), model.strides_fs)
    consistency.long_stride(stride_fs)  # no comparison for this stride: say so now

    def probe(state: MDState) -> dict[str, torch.Tensor]:
        return {"uncertainty": consistency(state, stride_fs).positions}

    return probe


def run_md(
    settings: MDSettings,
    location: str,
    shard: tuple[int, int] = (0, 1),
    device: str = "auto",
    progress: bool = True,
    commit_interval_s: float | None = COMMIT_INTERVAL_S,
    allow_close_contacts: bool = False,
    compiled: bool = False,
) -> RolloutReport:
    """Run (or resume) the shard's trajectories in one batch into the store at ``location``;
    frames are committed every chunk and at least every ``commit_interval_s`` seconds (None:
    per chunk only), so a killed run loses at most that much work. ``compiled``: the model's
    layers compiled (:func:`~flashmd.models.compiled.compile_model`), not part of the settings
    (a run may resume either way; results agree to float rounding).

    Raises:
        ValueError: a system with atoms in close contact (:mod:`flashmd.md.contacts`; with
            ``allow_close_contacts`` a warning), or one the model cannot serve.
    """
    model = load_model(settings.model, device=device)
    if compiled:
        compile_model(model)
    systems = load_systems(settings)
    chosen = [
        (k, s, r)
        for s in range(len(systems))
        for r in range(settings.replicas)
        for k in [s * settings.replicas + r]
        if k % shard[1] == shard[0]
    ]
    if not chosen:
        return RolloutReport(0, 0, 0, 0, 0.0)
    for s in sorted({s for _, s, _ in chosen}):
        _check_system(systems[s], s, allow_close_contacts)
    atoms = [_initial(systems[s], settings, k) for k, s, _ in chosen]
    seed = settings.seed * 1_000_003 + shard[0] * 1_009 + shard[1]
    state = state_from_atoms(atoms, device=model.device, seed=seed)
    stride = stride_for(settings, model)
    sampled = sampled_calculator(settings, systems)
    stepper = make_stepper(settings, model, stride, sampled)
    stepper.prepare(state)  # bad species, stride or masses stop here, before any write
    probe = _uncertainty_probe(model, stride) if settings.uncertainty else None
    store = _open_store(location, settings)
    ids = [f"{k:05d}_{systems[s].get_chemical_formula('metal')}_r{r}" for k, s, r in chosen]
    if all(i in store and store[i].status == "complete" for i in ids):
        return RolloutReport(0, 0, 0, 0, 0.0)
    attrs = [
        {
            "calculator": {"name": "flashmd", "model": settings.model, "version": __version__},
            "ensemble": settings.ensemble,
            **thermostat_attrs(settings.ensemble, settings.friction_per_fs, settings.taut_fs),
            "temperature_K": settings.temperature_K,
            "timestep_fs": stride,
            "sample_interval_fs": stride * settings.every,
            "seed": {"seed": settings.seed, "spawn_key": [k]},
            "system": {"index": s, "formula": systems[s].get_chemical_formula("metal")},
            "pbc": [bool(p) for p in systems[s].pbc],
            "replica": r,
            **({"start_from": systems[s].info["start_from"]} if settings.start_from else {}),
        }
        for k, s, r in chosen
    ]
    writer = RolloutWriter(
        store,
        ids,
        attrs,
        state,
        capacity=settings.n_frames,
        atom_arrays=("uncertainty",) if probe else (),
        commit_interval_s=commit_interval_s,
    )
    bar = tqdm(
        total=settings.n_frames,
        initial=writer.n_frames,
        unit="frame",
        desc=f"md {len(ids)} trajectories",
        disable=not progress,
    )
    complete = False
    try:
        _, report = rollout(
            stepper,
            state,
            settings.n_frames,
            settings.every,
            writer,
            on_frame=bar.update,
            probe=probe,
        )
        complete = True
    finally:
        bar.close()
        writer.close(
            complete=complete,
            attrs=_final_attrs(stepper) if complete else None,
        )
    return report
