"""Train the learned kick (:mod:`flashmd.models.kick`) of a model's energy model.

The kick regresses the energy model's forces ``-∇V`` (not the reference's: the chain samples
the energy model's ``V``, and its acceptance falls with ``a + ∇V``) on frames of a trajectory
store. The energy model stays fixed, so what it computes on its way to ``V`` and its forces are
computed once per frame and cached; each training step then costs only the kick's own small
maps. Loss: mean squared error per force component (eV²/Å²).

Fitting the forces is not what the chain needs. :func:`tune_kick` then fine-tunes the kick on
the chain's own figure of merit for one step ``h``: ``E[(ΔH/kT)²]`` of one kick-drift-kick step
from Maxwell-Boltzmann momenta at each frame's temperature, ``H = K + V`` under the energy model.
For a harmonic mode of frequency ``ω`` a step with the force scaled by
``c = 2(1 - √(1 - h²ω²))/(h²ω²)`` preserves ``H`` exactly (it rotates phase space, by another
angle than the true flow) for every ``hω < 1``, where velocity Verlet's error grows as
``h²ω²``: the kick learns such stiffness-dependent scaling, and the chain accepts longer steps.

:func:`add_kick` is what ``flashmd train-kick`` runs: frames drawn from a store, the kick fitted
(and, with a step, tuned), and the model returned with it; ``retune`` starts instead from the
kick the model carries and only tunes it, for another step.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from functools import partial

import ase
import numpy as np
import torch
from tqdm.auto import tqdm

from flashmd import keys
from flashmd.data.graph import batch_from_atoms, edge_vectors
from flashmd.data.store import TrajectoryStore
from flashmd.md.splitting import VELOCITY_VERLET, Splitting, split_steps
from flashmd.models.energy import EnergyFeatures, EnergyModel
from flashmd.models.kick import KickConfig, KickField, energy_and_kick
from flashmd.models.model import FlashMDModel
from flashmd.units import FS, KB


@dataclasses.dataclass
class KickFrame:
    """What the kick reads of one frame, cached: the energy model's features, edge vectors
    ``(E, 3)`` Å, edge index ``(2, E)`` and the energy model's forces ``(A, 3)`` eV/Å (the
    label)."""

    features: EnergyFeatures
    vectors: torch.Tensor
    edge_index: torch.Tensor
    forces: torch.Tensor


def sample_frames(
    location: str, per_trajectory: int, seed: int = 0, skip: float = 0.1
) -> list[ase.Atoms]:
    """``per_trajectory`` frames drawn at random (after the first ``skip`` fraction) from
    every complete trajectory of the store at ``location``; each frame's ``info["trajectory"]``
    names its trajectory."""
    store = TrajectoryStore.open(location)
    rng = np.random.default_rng(seed)
    frames = []
    for info in store.info():
        if info.status != "complete" or info.n_frames < 2:
            continue
        reader = store[info.id]
        population = np.arange(int(skip * info.n_frames), info.n_frames)
        size = min(per_trajectory, len(population))  # a short trajectory gives what it has
        picks = rng.choice(population, size=size, replace=False)
        for index in sorted(picks):
            atoms = reader.to_atoms(int(index))
            atoms.info["trajectory"] = info.id
            atoms.info["temperature_K"] = info.temperature_K
            frames.append(atoms)
    if not frames:
        raise ValueError(f"{location} holds no complete trajectory to draw kick frames from")
    return frames


def cache_frames(
    model: FlashMDModel, frames: Sequence[ase.Atoms], progress: bool = False
) -> list[KickFrame]:
    """The energy model's features, edges and forces of every frame (see :class:`KickFrame`)."""
    energy_model = model.energy_model
    if energy_model is None:
        raise ValueError("the model has no energy model: a kick regresses its forces")
    model.check_species(torch.tensor(sorted({int(z) for a in frames for z in a.numbers})))
    cached = []
    for atoms in tqdm(frames, desc="energy model on the frames", disable=not progress):
        batch = batch_from_atoms(atoms, model.cutoff, device=model.device, dtype=model.dtype)
        positions = batch[keys.POSITIONS].requires_grad_(True)
        vectors = edge_vectors(batch)  # one pass gives the features and, backwards, the forces
        energies, features = energy_model.atomic_energies_and_features(batch, vectors)
        (gradient,) = torch.autograd.grad(energies.sum(), positions)
        features = EnergyFeatures(*(tensor.detach() for tensor in features))
        edge_index = batch[keys.EDGE_INDEX]
        cached.append(KickFrame(features, vectors.detach(), edge_index, -gradient))
    return cached


def kick_error(kick: KickField, frames: Sequence[KickFrame]) -> tuple[float, float]:
    """RMS of ``a + ∇V`` and of the forces themselves over every atom's components, eV/Å."""
    squared_error = squared_force = count = 0.0
    with torch.no_grad():
        for frame in frames:
            predicted = kick(frame.features, frame.vectors, frame.edge_index)
            squared_error += float(((predicted - frame.forces) ** 2).sum())
            squared_force += float((frame.forces**2).sum())
            count += frame.forces.numel()
    return math.sqrt(squared_error / count), math.sqrt(squared_force / count)


def train_kick(
    model: FlashMDModel,
    train: Sequence[KickFrame],
    validation: Sequence[KickFrame],
    steps: int = 8000,
    batch_frames: int = 8,
    learning_rate: float = 3e-3,
    seed: int = 0,
    config: KickConfig | None = None,
    log: Callable[[int, float, float], None] | None = None,
    log_every: int = 250,
) -> KickField:
    """Fit a :class:`KickField` to the energy model's forces on ``train``.

    Adam with a cosine-decayed learning rate, ``batch_frames`` frames per step; ``log(step,
    train RMS, validation RMS)`` (eV/Å) every ``log_every`` steps and at the end.
    """
    assert model.energy_model is not None
    torch.manual_seed(seed)
    if config is None:
        scale = float(torch.cat([f.forces.flatten() for f in train]).std())
        config = KickConfig.for_energy_model(model.energy_model.config, force_scale=scale)
    kick = KickField(config).to(device=model.device, dtype=model.dtype)
    optimizer = torch.optim.Adam(kick.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        picks = torch.randint(len(train), (batch_frames,), generator=generator).tolist()
        loss = (
            sum(
                ((kick(f.features, f.vectors, f.edge_index) - f.forces) ** 2).mean()
                for f in (train[i] for i in picks)
            )
            / batch_frames
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if log is not None and (step % log_every == 0 or step == steps):
            log(step, math.sqrt(float(loss.detach())), kick_error(kick, validation)[0])
    return kick.eval()


@dataclasses.dataclass
class ThermalFrame:
    """One system prepared for tuning: its batch, temperature (K), and what the fixed energy
    model gives at it: ``V`` (eV, a 0-d tensor), its features and edge vectors ``(E, 3)`` Å."""

    batch: dict[str, torch.Tensor]
    temperature_K: float
    energy: torch.Tensor
    features: EnergyFeatures
    vectors: torch.Tensor


def thermal_frames(model: FlashMDModel, frames: Sequence[ase.Atoms]) -> list[ThermalFrame]:
    """Each frame (with ``info["temperature_K"]``, as :func:`sample_frames` sets) batched and
    evaluated once by the energy model, so tuning steps only move from it."""
    if model.energy_model is None:
        raise ValueError("the model has no energy model: the kick is tuned on its H")
    prepared = []
    with torch.no_grad():
        for atoms in frames:
            batch = batch_from_atoms(atoms, model.cutoff, device=model.device, dtype=model.dtype)
            vectors = edge_vectors(batch)
            energies, features = model.energy_model.atomic_energies_and_features(batch, vectors)
            temperature = float(atoms.info["temperature_K"])
            prepared.append(ThermalFrame(batch, temperature, energies.sum(), features, vectors))
    return prepared


def step_energy_error(
    model: FlashMDModel,
    kick: KickField,
    frames: Sequence[ThermalFrame],
    step_fs: float,
    generator: torch.Generator,
    splitting: Splitting = VELOCITY_VERLET,
) -> torch.Tensor:
    """``(ΔH/kT)²`` ``(F,)`` of one step of ``step_fs`` (split by ``splitting``: kick-drift-kick,
    or more stages) on each frame, from momenta drawn at its temperature; differentiable in the
    kick's weights."""
    assert model.energy_model is not None
    h = step_fs * FS
    errors = []
    for frame in frames:
        batch = frame.batch
        masses = batch[keys.MASSES][:, None]
        kT = KB * frame.temperature_K
        momenta = torch.randn(masses.shape[0], 3, generator=generator, dtype=masses.dtype)
        momenta = momenta.to(model.device) * torch.sqrt(masses * kT)
        _, moving, end, _ = split_steps(
            batch[keys.POSITIONS],
            momenta,
            kick(frame.features, frame.vectors, batch[keys.EDGE_INDEX]),
            partial(_energy_and_kick_at, model.energy_model, kick, batch),
            h,
            1.0 / masses,
            1,
            splitting,
        )
        kinetic = ((moving**2 - momenta**2) / (2 * masses)).sum()
        errors.append((end.sum() - frame.energy + kinetic) / kT)
    return torch.stack(errors) ** 2


def _energy_and_kick_at(
    energy_model: EnergyModel, kick: KickField, batch: dict, positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``energy_and_kick`` of ``batch`` moved to ``positions`` (A, 3) Å."""
    return energy_and_kick(energy_model, kick, {**batch, keys.POSITIONS: positions})


def tune_kick(
    model: FlashMDModel,
    kick: KickField,
    frames: Sequence[ThermalFrame],
    step_fs: float,
    steps: int = 2000,
    batch_frames: int = 4,
    learning_rate: float = 1e-3,
    seed: int = 0,
    log: Callable[[int, float], None] | None = None,
    log_every: int = 50,
    splitting: Splitting = VELOCITY_VERLET,
) -> KickField:
    """Fine-tune ``kick`` on ``E[(ΔH/kT)²]`` of one step of ``step_fs`` split by ``splitting``
    (module docstring) over ``frames`` (:func:`thermal_frames`), Adam, ``batch_frames`` frames
    per step, fresh momenta each time; ``log(step, mean (ΔH/kT)² since the last log)``. Returns
    the kick with ``config.step_fs`` and ``config.splitting`` set; the energy model is only
    read."""
    if model.energy_model is None:
        raise ValueError("the model has no energy model: the kick is tuned on its H")
    if not step_fs > 0:
        raise ValueError(f"step_fs must be positive, got {step_fs}")
    frozen = [p for p in model.energy_model.parameters() if p.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(False)
    kick.train()
    optimizer = torch.optim.Adam(kick.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    recent: list[float] = []
    try:
        for step in range(1, steps + 1):
            picks = torch.randint(len(frames), (batch_frames,), generator=generator).tolist()
            loss = step_energy_error(
                model, kick, [frames[i] for i in picks], step_fs, generator, splitting
            ).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            recent.append(float(loss.detach()))
            if log is not None and (step % log_every == 0 or step == steps):
                log(step, float(np.mean(recent)))
                recent = []
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
    kick.config = dataclasses.replace(kick.config, step_fs=float(step_fs), splitting=splitting.name)
    return kick.eval()


@dataclasses.dataclass
class KickReport:
    """What :func:`add_kick` measured: frames used and the RMS of ``a + ∇V`` against the RMS
    force (eV/Å) on the validation frames, in all and per validation trajectory, of the kick
    before this call's tuning, which trades force error for a smaller ``ΔH`` (the fitted kick;
    when retuning, the kick the model carried); ``train_frames`` 0 when retuning."""

    train_frames: int
    validation_frames: int
    validation_error: float
    validation_force: float
    seconds: float
    per_trajectory: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    """Trajectory id -> (RMS of ``a + ∇V``, RMS force), eV/Å."""
    step_energy_error: tuple[float, float] | None = None
    """With a tuning step: mean ``(ΔH/kT)²`` of one step on the validation frames (the same
    momenta) before and after tuning."""


def add_kick(
    model: FlashMDModel,
    store: str,
    validation_store: str | None = None,
    frames_per_trajectory: int = 12,
    steps: int = 8000,
    seed: int = 0,
    progress: bool = False,
    step_fs: float | None = None,
    tune_steps: int = 2000,
    retune: bool = False,
    splitting: Splitting = VELOCITY_VERLET,
) -> tuple[FlashMDModel, KickReport]:
    """Train a kick for ``model``'s energy model on frames of ``store`` and return the model
    carrying it (the same predictor, energy model and generating function) with the report.

    Validation frames come from ``validation_store`` (half as many per trajectory), or else
    from ``store`` with another seed. With ``step_fs`` the fitted kick is then tuned for that
    leapfrog step split by ``splitting`` (:func:`tune_kick`, ``tune_steps`` steps on a third of
    the training frames).
    With ``retune`` nothing is fitted: a copy of the model's own kick is tuned for ``step_fs``
    (e.g. a kick tuned for 12 fs retuned for 14 fs), and ``steps`` is not used.

    Raises:
        ValueError: no energy model; ``retune`` without a kick on the model or without a step.
    """
    started = time.perf_counter()
    if model.energy_model is None:
        raise ValueError("the model has no energy model: a kick stands in for its forces")
    if retune and (model.kick is None or step_fs is None):
        raise ValueError(
            "retuning tunes the kick a model carries for a new leapfrog step: it needs a model "
            "with a kick (flashmd train-kick without --retune makes one) and --step-fs"
        )
    per_validation = max(1, frames_per_trajectory // 2)
    validation_atoms = sample_frames(validation_store or store, per_validation, seed + 1)
    validation = cache_frames(model, validation_atoms, progress)
    if retune:
        assert model.kick is not None
        kick, train_count = copy.deepcopy(model.kick), 0
    else:
        train = cache_frames(model, sample_frames(store, frames_per_trajectory, seed), progress)
        kick, train_count = _fit(model, train, validation, steps, seed, progress), len(train)
    error, force = kick_error(kick, validation)
    with_kick = FlashMDModel(
        model.predictor, model.energy_model, model.masses, model.generating, kick
    )
    groups: dict[str, list[KickFrame]] = {}
    for atoms, frame in zip(validation_atoms, validation, strict=True):
        groups.setdefault(atoms.info["trajectory"], []).append(frame)
    per_trajectory = {name: kick_error(kick, frames) for name, frames in groups.items()}
    tuned = None
    if step_fs is not None:
        tune_atoms = sample_frames(store, max(1, frames_per_trajectory // 3), seed + 2)
        tune_frames = thermal_frames(model, tune_atoms)
        checked = thermal_frames(model, validation_atoms)

        def energy_error() -> float:
            generator = torch.Generator().manual_seed(seed + 3)
            with torch.no_grad():
                errors = step_energy_error(model, kick, checked, step_fs, generator, splitting)
            return float(errors.mean())

        before = energy_error()
        bar = tqdm(total=tune_steps, desc=f"tune for {step_fs:g} fs", disable=not progress)

        def log_tune(step: int, mean: float) -> None:
            bar.update(step - bar.n)
            bar.set_postfix(dH2=f"{mean:.3f}")

        tune_kick(
            model,
            kick,
            tune_frames,
            step_fs,
            tune_steps,
            seed=seed,
            log=log_tune,
            splitting=splitting,
        )
        bar.close()
        tuned = (before, energy_error())
    seconds = time.perf_counter() - started
    report = KickReport(train_count, len(validation), error, force, seconds, per_trajectory, tuned)
    return with_kick, report


def _fit(
    model: FlashMDModel,
    train: Sequence[KickFrame],
    validation: Sequence[KickFrame],
    steps: int,
    seed: int,
    progress: bool,
) -> KickField:
    """:func:`train_kick` with a progress bar (train and validation RMS, eV/Å)."""
    bar = tqdm(total=steps, desc="kick", disable=not progress)

    def log(step: int, train_rms: float, validation_rms: float) -> None:
        bar.update(step - bar.n)
        bar.set_postfix(train=f"{train_rms:.3f}", validation=f"{validation_rms:.3f}")

    kick = train_kick(model, train, validation, steps=steps, seed=seed, log=log, log_every=100)
    bar.close()
    return kick
