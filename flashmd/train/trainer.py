"""The training loop: data, model, optimiser, validation, checkpoints and resume.

Files in the run directory (``config.output``)::

    state.pt     everything to resume (weights, optimiser, schedule, data position), atomic
    best.pt      the best model by validation loss, loadable with ``flashmd.load_model``
    last.pt      the latest model, loadable with ``flashmd.load_model``
    train.csv    step, learning rate, loss terms, step time, time waiting for data
    val.csv      step and every validation metric
    config.yaml  the training recipe as validated
"""

from __future__ import annotations

import csv
import functools
import gc
import itertools
import math
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from ase.data import chemical_symbols
from tqdm.auto import tqdm

from flashmd.data.dataset import StridePairs, collate_pairs, split_trajectories
from flashmd.data.graph import batch_to
from flashmd.data.store import StoreError, TrajectoryStore
from flashmd.models.energy import EnergyConfig, EnergyModel
from flashmd.models.generating import GeneratingConfig, GeneratingFunction
from flashmd.models.io import (
    checkpoint_dict,
    checkpoint_path,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from flashmd.models.model import FlashMDModel
from flashmd.models.predictor import Predictor, PredictorConfig
from flashmd.models.species import species_change, with_species
from flashmd.train import distributed
from flashmd.train.config import TrainConfig
from flashmd.train.errors import TrainingError
from flashmd.train.losses import Normalisation, compute_normalisation, input_noise
from flashmd.train.objective import Objective
from flashmd.train.rereference import energy_shift_correction
from flashmd.train.validation import evaluate, held_out_batches, validation_set

STATE_VERSION = 1
_LOCATIONS = {"store", "extra_stores", "validation_store", "output"}
"""Recipe fields that say where things are: a resumed run compares the stores' identities
(:func:`_store_identities`) instead, and its folder is wherever its ``state.pt`` is."""
_RESUMABLE_CHANGES = {"steps", "validate_every", "checkpoint_every", "num_workers", "device"}
_ADDED_FIELDS: dict[str, Any] = {
    "extra_stores": [],
    "unroll_strides": 0,
    "data_fraction": 1.0,
    "validation_store": None,
}
"""Recipe fields newer than some saved runs, with the value such a run had (JSON)."""
_ADDED_LOSS_WEIGHTS: dict[str, Any] = {"unroll": 1.0, "potential_bias": 0.0, "stress": 0.0}
"""Loss weights newer than some saved runs (their terms were off in such a run)."""
_ADDED_MODEL_FIELDS: dict[str, Any] = {"refit_energy_shift": None}
"""Model-spec fields newer than some saved runs, with the value such a run had."""
CALCULATOR_IDENTITY = ("name", "params", "weights_sha256")
"""The fields of a store's or checkpoint's ``calculator`` that say which reference it is."""


def species_and_masses(
    store: TrajectoryStore, traj_ids: list[str], known: dict[int, float] | None = None
) -> dict[int, float]:
    """Atomic number -> mass (amu) over the trajectories; one mass per species is required.

    Args:
        known: masses found already (e.g. in another store) that these trajectories must agree
            with and that the result includes.
    """
    masses: dict[int, float] = dict(known or {})
    for traj_id in traj_ids:
        reader = store[traj_id]
        for z, m in zip(reader.numbers.tolist(), reader.masses.tolist(), strict=True):
            if not math.isclose(masses.setdefault(z, m), m, rel_tol=1e-9):
                where = traj_id if known is None else f"{store.location}:{traj_id}"
                raise TrainingError(f"species {z} has masses {masses[z]} and {m} in {where}")
    return dict(sorted(masses.items()))


def reference_calculator(sources: Sequence[tuple[str, Sequence[str]]]) -> dict[str, Any]:
    """The reference calculator the trajectories of ``sources`` (``(store, ids)`` pairs) were
    made with, as each store's first trajectory records it (name, package, version, parameters,
    and an MLIP's weights; a store holds one recipe's, so one calculator's, trajectories); ``{}``
    when none records one.

    Raises:
        TrainingError: two stores name different calculators or parameters (asap3's and ASE's
            EMT, say, are different potentials and must not be mixed).
    """
    found: dict[str, Any] = {}
    where = ""
    identity = CALCULATOR_IDENTITY
    for location, ids in sources:
        if not ids:
            continue
        calculator = TrajectoryStore.open(location)[ids[0]].attrs.get("calculator")
        if not isinstance(calculator, dict) or "name" not in calculator:
            continue
        key = {k: calculator.get(k) for k in identity}
        if not found:
            found, where = calculator, f"{location}:{ids[0]}"
        elif key != (known := {k: found.get(k) for k in identity}):
            raise TrainingError(
                f"{location}:{ids[0]} was made with {key}, {where} with {known}: one model "
                "learns one reference; train on stores of one calculator (regenerate the other, "
                "or drop it)"
            )
    return found


def extra_trajectories(locations: Sequence[str], base: str) -> list[tuple[str, list[str]]]:
    """(location, complete trajectory ids) of each extra store of a recipe; all of them train.

    Raises:
        TrainingError: a store cannot be opened, holds no complete trajectory, is the base store
            ``base`` or is given twice.
    """
    extras: list[tuple[str, list[str]]] = []
    seen = {_same_store_key(base): "the base store (store)"}
    for location in locations:
        key = _same_store_key(location)
        if key in seen:
            raise TrainingError(
                f"extra_stores: {location} is {seen[key]} already; list each extra store once "
                "and never the base store, whose validation trajectories must not train"
            )
        seen[key] = "listed in extra_stores"
        try:
            store = TrajectoryStore.open(location)
        except StoreError as error:
            raise TrainingError(
                f"extra_stores: cannot open {location} ({error}); give a trajectory store "
                "written by `flashmd learn` or `flashmd generate`, or remove it from extra_stores"
            ) from None
        ids = [t for t in store.ids() if store[t].status == "complete"]
        if not ids:
            raise TrainingError(
                f"extra_stores: {location} holds no complete trajectory to train on; let the "
                "run that writes it finish, or remove it from extra_stores"
            )
        extras.append((location, ids))
    return extras


def _same_store_key(location: str) -> str:
    """A key equal for two spellings of one local store path (URLs compared as written)."""
    return location if "://" in location else str(Path(location).resolve())


def build_model(config: TrainConfig, masses: dict[int, float]) -> FlashMDModel:
    """The models of the recipe for the store's species (``masses``: atomic number -> amu).

    A model taken from a checkpoint (``checkpoint``) is frozen (``requires_grad`` off); one
    started from a checkpoint (``start_from``) is trained further. An energy model from a
    checkpoint fixes the species order and cutoff the other models are built with.
    """
    species, cutoff = tuple(masses), {}
    predictor = energy = None
    spec = config.energy_model
    if spec is not None and (spec.checkpoint or spec.start_from):
        energy = model_from_checkpoint(
            spec.checkpoint or spec.start_from, "energy_model", species, spec.start_from is not None
        )
        energy.requires_grad_(spec.start_from is not None)
        species, cutoff = energy.config.species, {"cutoff": energy.config.cutoff}
    elif spec is not None:
        energy = EnergyModel(EnergyConfig.preset(spec.preset, species=species, **spec.overrides))
    spec = config.predictor
    if spec is not None and (spec.start_from or spec.checkpoint):
        predictor = model_from_checkpoint(
            spec.start_from or spec.checkpoint, "predictor", species, spec.start_from is not None
        )
        if spec.start_from and tuple(predictor.config.strides_fs) != tuple(config.strides_fs):
            raise TrainingError(
                f"predictor.start_from {spec.start_from!r} serves strides "
                f"{list(predictor.config.strides_fs)} fs but the recipe asks for "
                f"{list(config.strides_fs)}; set strides_fs to the checkpoint's"
            )
        predictor.requires_grad_(spec.start_from is not None)
    elif spec is not None:
        predictor = Predictor(
            PredictorConfig.preset(
                spec.preset,
                species=species,
                strides_fs=config.strides_fs,
                **{**cutoff, **spec.overrides},
            )
        )
    generating = _generating(config, species, cutoff)
    try:
        return FlashMDModel(predictor, energy, {z: masses[z] for z in species}, generating)
    except ValueError as error:
        raise TrainingError(f"the recipe's models do not fit together: {error}") from None


def _generating(
    config: TrainConfig, species: tuple[int, ...], cutoff: dict[str, float]
) -> GeneratingFunction | None:
    """The recipe's generating function: new from a preset, or trained further from a
    checkpoint (its strides must be the recipe's)."""
    spec = config.generating
    if spec is None:
        return None
    if spec.start_from:
        generating = model_from_checkpoint(spec.start_from, "generating", species)
        if tuple(generating.config.strides_fs) != tuple(config.strides_fs):
            raise TrainingError(
                f"generating.start_from {spec.start_from!r} serves strides "
                f"{list(generating.config.strides_fs)} fs but the recipe asks for "
                f"{list(config.strides_fs)}; set strides_fs to the checkpoint's"
            )
        return generating.requires_grad_(True)
    return GeneratingFunction(
        GeneratingConfig.preset(
            spec.preset,
            species=species,
            strides_fs=config.strides_fs,
            **{**cutoff, **spec.overrides},
        )
    )


def model_from_checkpoint(
    checkpoint: str,
    kind: Literal["predictor", "energy_model", "generating"],
    species: tuple[int, ...],
    trained: bool = True,
) -> Predictor | EnergyModel | GeneratingFunction:
    """The ``kind`` model of ``checkpoint`` (path or shipped name) for ``species``.

    A model kept fixed (``trained`` False) must know every species of the store; one trained
    further is carried over to the store's species (:func:`flashmd.models.species.with_species`:
    known species keep their weights, new ones start from the mean embedding).
    """
    part = getattr(load_model(checkpoint, device="cpu"), kind)
    name = kind.replace("_", " ")
    if part is None:
        raise TrainingError(f"{kind}: checkpoint {checkpoint!r} holds no {name}")
    known = part.config.species
    if set(known) == set(species):
        return part
    if not trained and not set(species) <= set(known):
        raise TrainingError(
            f"the {name} of {checkpoint!r} knows species {list(known)} but the store holds "
            f"{list(species)}; a model kept fixed cannot learn new species: train it further "
            "with start_from instead of checkpoint"
        )
    print(f"{name} from {checkpoint}: {species_change(known, species)}", flush=True)
    return with_species(part, species if trained else [z for z in known if z in species])


def _with_canonical_grads(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every parameter that has a dimension of size one given its gradient in
    the parameter's own (row-major) strides. Autograd can hand such a parameter (the energy
    readout's (1, 16) weight, as einsum does) a transposed gradient, strides (1, 1) instead of
    (16, 1): the same
    numbers, but DistributedDataParallel then warned on every rank, at every step, that the
    "grad strides do not match bucket view strides"."""
    for parameter in module.parameters():
        if parameter.requires_grad and 1 in parameter.shape:
            parameter.register_hook(lambda g: g.clone(memory_format=torch.contiguous_format))
    return module


def _store_identities(config: TrainConfig) -> list[list[str | int]]:
    """[recipe hash, number of trajectories] of the training store and each extra store: what
    decides the data, wherever the stores lie."""
    identities: list[list[str | int]] = []
    for location in (config.store, *config.extra_stores):
        store = TrajectoryStore.open(location)
        identities.append([str(store.root.attrs.get("recipe_sha256", "")), len(store.ids())])
    return identities


def _portable(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the paths of :data:`_LOCATIONS` relative to the working directory where
    they lie below it (config.yaml then reads as the recipe did, and survives a moved tree)."""

    def relative(location: str) -> str:
        if "://" in location:
            return location
        path = Path(location)
        try:
            return str(path.relative_to(Path.cwd())) if path.is_absolute() else location
        except ValueError:
            return location

    portable = dict(config)
    portable["store"] = relative(config["store"])
    portable["extra_stores"] = [relative(s) for s in config["extra_stores"]]
    if config.get("validation_store") is not None:
        portable["validation_store"] = relative(config["validation_store"])
    portable["output"] = relative(config["output"])
    return portable


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine


class Trainer:
    """Trains the predictor and/or energy model of ``config`` (see the module docstring).

    Args:
        config: the validated training recipe.
        resume: continue the run in ``config.output`` (else that directory must hold no run).
        progress: show a progress bar (main process only).
    """

    def __init__(self, config: TrainConfig, resume: bool = False, progress: bool = True):
        self.config = config
        self.dist = distributed.setup(config.device)
        self.device = self.dist.device
        self.dtype = getattr(torch, config.dtype)
        self.output = Path(config.output)
        self.progress = progress and self.dist.is_main
        self._check_output(resume)
        torch.manual_seed(config.seed)  # this run's weight initialisation, not a global default
        self.store = TrajectoryStore.open(config.store)
        self.train_ids, _ = split_trajectories(self.store, config.validation, config.seed)
        #: Where the validation trajectories lie: the store itself, or a held-out store.
        self.val_store, self.val_ids = validation_set(config)
        self.extra = extra_trajectories(config.extra_stores, config.store)
        #: What decides the data, wherever the stores lie (saved with, and checked on, resume).
        self.store_identities = _store_identities(config)
        #: The reference the stores were made with (recorded in every checkpoint).
        self.calculator = reference_calculator(
            [(config.store, self.store.ids()), *self.extra, (self.val_store, self.val_ids)]
        )
        masses = species_and_masses(self.store, self.store.ids())
        for location, ids in self.extra:
            masses = species_and_masses(TrajectoryStore.open(location), ids, known=masses)
        self.model = build_model(config, masses)
        self.model.to(device=self.device, dtype=self.dtype)
        self.cutoff = self.model.cutoff
        self.train_data = StridePairs(
            [location for location, _ in self.training_sources],
            [ids for _, ids in self.training_sources],
            config.strides_fs,
            shuffle=True,
            buffer_blocks=config.buffer_blocks,
            rotate=config.rotate,
            time_reversal=config.time_reversal,
            seed=config.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            pairs_per_block=config.pairs_per_block,
            unroll=config.unroll_strides,
            frame_fraction=config.data_fraction,
        )
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best = math.inf
        state = self._load_state() if resume else None
        # one draw of sample pairs for the statistics and the energy re-referencing
        sample = [] if state else list(self._sample_pairs())
        self.norm = (
            Normalisation.from_state_dict(state["normalisation"])
            if state
            else compute_normalisation(sample, self.model.species, tuple(config.strides_fs))
        )
        energy = self.model.energy_model  # frozen when build_model took it from a checkpoint
        self.train_energy = energy is not None and energy.energy_shift.requires_grad
        started = config.energy_model is not None and config.energy_model.start_from is not None
        if not state and self.train_energy and not started:
            with torch.no_grad():
                self.model.energy_model.energy_shift.copy_(self.norm.energy_per_atom_shift)
        if not state and started and self._refits_energy_shift():
            self._refit_energy_shift(sample)
        predictor = self.model.predictor
        self.objective = Objective(
            self.model,
            self.norm,
            config.loss_weights,
            train_energy=self.train_energy,
            train_predictor=predictor is not None
            and any(p.requires_grad for p in predictor.parameters()),
        )
        self.ddp = (
            torch.nn.parallel.DistributedDataParallel(
                _with_canonical_grads(self.objective),
                device_ids=[self.device] if self.device.type == "cuda" else None,
            )
            if self.dist.distributed
            else self.objective
        )
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, functools.partial(lr_factor, config=config)
        )
        if state:
            self._restore(state)
        self.use_amp = config.amp and self.device.type == "cuda"
        if self.use_amp:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.val_batches = self._validation_batches() if self.dist.is_main else []

    # ------------------------------------------------------------------ setup
    @property
    def training_sources(self) -> list[tuple[str, list[str]]]:
        """(store location, trajectory ids) that train: the base store's training split, then
        every complete trajectory of each extra store."""
        return [(self.config.store, self.train_ids), *self.extra]

    def _check_output(self, resume: bool) -> None:
        state = self.output / "state.pt"
        if resume and not state.exists():
            raise TrainingError(f"--resume: no run to resume in {self.output} (no state.pt)")
        if not resume and state.exists():
            raise TrainingError(
                f"{self.output} already holds a run; pass --resume to continue it or choose "
                "another output directory (nothing was overwritten)"
            )
        if self.dist.is_main:
            self.output.mkdir(parents=True, exist_ok=True)

    def _sample_pairs(self) -> Iterator[dict[str, torch.Tensor]]:
        """About ``stats_pairs`` pair items drawn evenly from every training trajectory (of the
        base store's split and of the extra stores), for the normalisation statistics.

        The shuffled training stream mixes only a few chunks at a time, so its first pairs come
        from a handful of trajectories and can miss whole species; drawing from each trajectory
        covers every species and condition of the training set.
        """
        # data_fraction cuts the base store (source 0) only, as in StridePairs
        trajectories = [
            (where, t, self.config.data_fraction if source == 0 else 1.0)
            for source, (where, ids) in enumerate(self.training_sources)
            for t in ids
        ]
        per_trajectory = max(1, math.ceil(self.config.stats_pairs / len(trajectories)))
        for k, (location, traj_id, fraction) in enumerate(trajectories):
            one = StridePairs(
                location,
                [traj_id],
                self.config.strides_fs,
                shuffle=True,
                buffer_blocks=1,
                seed=self.config.seed + 1 + k,
                frame_fraction=fraction,
            )
            yield from itertools.islice(one, per_trajectory)

    def _refits_energy_shift(self) -> bool:
        """Whether the energy model started from a checkpoint is re-referenced to the store:
        as the recipe says, else when the checkpoint's species or reference calculator differ."""
        spec = self.config.energy_model
        if spec.refit_energy_shift is not None:
            return spec.refit_energy_shift
        data = read_checkpoint(checkpoint_path(spec.start_from))
        recorded = data["metadata"].get("calculator") or {}
        other_reference = bool(recorded) and any(
            recorded.get(k) != self.calculator.get(k) for k in CALCULATOR_IDENTITY
        )
        return other_reference or set(data["species"]) != set(self.model.species)

    def _refit_energy_shift(self, sample: list[dict[str, torch.Tensor]]) -> None:
        """Add the least-squares per-species energy that takes the pretrained energy model to
        the reference energies of the ``sample`` pairs (:mod:`flashmd.train.rereference`)."""
        energy = self.model.energy_model
        correction, rms = energy_shift_correction(energy, sample)
        with torch.no_grad():
            energy.energy_shift.add_(correction.to(energy.energy_shift))
        if self.dist.is_main:
            pairs = zip(energy.config.species, correction.tolist(), strict=True)
            shifts = ", ".join(f"{chemical_symbols[z]} {c:+.3f}" for z, c in pairs)
            print(
                f"energy model re-referenced to this store: {shifts} eV/atom; remaining energy "
                f"error {1000 * rms:.1f} meV/atom rms",
                flush=True,
            )

    def _validation_batches(self) -> list[dict[str, torch.Tensor]]:
        return held_out_batches(
            self.val_store,
            self.val_ids,
            self.config.strides_fs,
            self.config.val_pairs,
            self.config.batch_size,
            self.cutoff,
            self.device,
            self.dtype,
            seed=self.config.seed + 2,
        )

    def _loader(self) -> Iterator[dict[str, torch.Tensor]]:
        """Endless batches; resumes inside the epoch where the run stopped."""
        while True:
            # The dataset skips whole loader rounds cheaply (a DataLoader restarts its round-robin
            # at worker 0); the at most num_workers - 1 batches left are drawn and dropped here.
            rounds = max(1, self.config.num_workers)
            cheap = self.batch_in_epoch // rounds * rounds
            self.train_data.set_epoch(self.epoch, cheap, self.config.batch_size)
            loader = torch.utils.data.DataLoader(
                self.train_data,
                batch_size=self.config.batch_size,
                collate_fn=functools.partial(collate_pairs, cutoff=self.cutoff),
                num_workers=self.config.num_workers,
                drop_last=True,
                persistent_workers=False,
                prefetch_factor=4 if self.config.num_workers else None,
            )
            for index, batch in enumerate(loader, start=cheap):
                if index < self.batch_in_epoch:
                    continue
                self.batch_in_epoch = index + 1
                yield batch
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    # ------------------------------------------------------------------ steps
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimisation step on a batch already on the device; returns the loss terms."""
        self.ddp.train()
        self.optimizer.zero_grad(set_to_none=True)
        noise = self._input_noise(batch)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.use_amp):
            terms = self.ddp(batch, noise)
        terms["total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        if not torch.isfinite(grad_norm):
            raise TrainingError(f"non-finite gradient at step {self.step}; lower lr or check data")
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {name: float(value.detach()) for name, value in terms.items()}

    def _input_noise(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """This step's predictor input noise (None when the recipe asks for none); seeded by
        (seed, step, rank), so a resumed run draws what the uninterrupted one would have."""
        spec = self.config.input_noise
        if not spec.active or self.model.predictor is None:
            return None
        generator = torch.Generator().manual_seed(
            (self.config.seed * 1_000_003 + self.step) * 1_009 + self.dist.rank
        )
        return input_noise(
            batch, self.norm, spec.positions_A, spec.momenta, generator, spec.keep_kinetic_energy
        )

    def validate(self) -> dict[str, float]:
        """Metrics on the held-out pairs plus the validation loss (main process)."""
        metrics = evaluate(self.model, self.val_batches)
        if self.val_batches:
            objective = self.objective.eval()
            # reduce batch by batch: holding every batch's graph at once costs gigabytes
            metrics["loss"] = float(
                np.mean([float(objective(batch)["total"].detach()) for batch in self.val_batches])
            )
        return metrics

    def run(self, until: int | None = None) -> dict[str, float]:
        """Train until step ``until`` (default and at most ``config.steps``); returns the last
        validation metrics. The schedule always follows ``config.steps``, so stopping early and
        resuming gives the same run as going straight through."""
        config, metrics = self.config, {}
        until = config.steps if until is None else min(until, config.steps)
        bar = tqdm(
            total=until,
            initial=self.step,
            disable=not self.progress,
            desc=config.name,
            unit="step",
            dynamic_ncols=True,
        )
        batches = self._loader()
        try:
            while self.step < until:
                waited = time.perf_counter()
                batch = batch_to(next(batches), self.device, self.dtype)
                started = time.perf_counter()
                terms = self.train_step(batch)
                finished = time.perf_counter()
                self._log_train(terms, finished - started, started - waited)
                bar.update(1)
                bar.set_postfix(loss=f"{terms['total']:.4g}", refresh=False)
                if self.step % config.validate_every == 0 or self.step == config.steps:
                    metrics = self._validate_and_export()
                if self.step % config.checkpoint_every == 0 or self.step == until:
                    self.save_state()
        finally:
            bar.close()
        return metrics

    def close(self, failed: bool = False) -> None:
        """Leave the process group (under torchrun); ``failed`` when leaving on an error.

        The DistributedDataParallel wrapper holds the group's communicators; it is released
        before the group is destroyed (with ``distributed.teardown``'s wait for the other ranks,
        each of the two removed a hang at exit of two-rank CPU runs on its own).
        """
        self.ddp = self.objective
        gc.collect()
        distributed.teardown(self.dist, wait_for_peers=not failed)

    # ------------------------------------------------------------------ outputs
    def _append_csv(self, name: str, row: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        path = self.output / name
        new = not path.exists()
        fields = list(row)
        if not new:  # a run resumed by a newer version keeps its file's columns
            with open(path, newline="") as f:
                fields = next(csv.reader(f), fields)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _drop_rows_after(self, name: str, step: int) -> None:
        path = self.output / name
        if not path.exists():
            return
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and any(int(row["step"]) > step for row in rows):
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(row for row in rows if int(row["step"]) <= step)

    def _log_train(self, terms: dict[str, float], step_s: float, wait_s: float) -> None:
        self._append_csv(
            "train.csv",
            {
                "step": self.step,
                "epoch": self.epoch,
                "lr": self.scheduler.get_last_lr()[0],
                **{f"loss_{k}": v for k, v in terms.items()},
                "step_s": step_s,
                "data_wait_s": wait_s,
            },
        )

    def _validate_and_export(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.dist.is_main and self.val_batches:
            metrics = self.validate()
            self._append_csv("val.csv", {"step": self.step, **metrics})
            meta = {
                "step": self.step,
                "validation": metrics,
                "recipe": self.config.model_dump(mode="json"),
                "calculator": self.calculator,
            }
            save_checkpoint(self.model, self.output / "last.pt", metadata=meta)
            if metrics["loss"] < self.best:
                self.best = metrics["loss"]
                save_checkpoint(self.model, self.output / "best.pt", metadata=meta)
        distributed.barrier(self.dist)
        return metrics

    def save_state(self) -> None:
        """Write everything needed to resume, atomically (main process)."""
        if not self.dist.is_main:
            return
        state = {
            "state_version": STATE_VERSION,
            "config": self.config.model_dump(mode="json"),
            "model": checkpoint_dict(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best": self.best,
            "normalisation": self.norm.state_dict(),
            "stores": self.store_identities,
        }
        path = self.output / "state.pt"
        tmp = path.with_name(f".state.{uuid.uuid4().hex}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        (self.output / "config.yaml").write_text(
            yaml.safe_dump(_portable(self.config.model_dump(mode="json")), sort_keys=False)
        )

    def _load_state(self) -> dict[str, Any]:
        state = torch.load(self.output / "state.pt", map_location="cpu", weights_only=False)
        if state.get("state_version") != STATE_VERSION:
            raise TrainingError(
                f"{self.output}/state.pt has state version "
                f"{state.get('state_version')}; this flashmd reads {STATE_VERSION}"
            )
        saved = {**_ADDED_FIELDS, **state["config"]}
        saved["loss_weights"] = {**_ADDED_LOSS_WEIGHTS, **saved.get("loss_weights", {})}
        for kind in ("predictor", "energy_model", "generating"):
            if isinstance(saved.get(kind), dict):
                saved[kind] = {**_ADDED_MODEL_FIELDS, **saved[kind]}
        now = self.config.model_dump(mode="json")
        ignored = set(_RESUMABLE_CHANGES)
        if state.get("stores") is not None:  # moved run folders and stores still resume
            ignored |= _LOCATIONS
            if state["stores"] != self.store_identities:
                raise TrainingError(
                    "the training stores hold other data than when the run started (another "
                    "recipe or another number of trajectories); resume with the same stores or "
                    "start a new output directory"
                )
        changed = sorted(k for k in now if now[k] != saved.get(k) and k not in ignored)
        if changed:
            raise TrainingError(
                f"the recipe changed since the run started ({', '.join(changed)}); "
                "resume with the same recipe or start a new output directory"
            )
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        for name, module in (
            ("predictor", self.model.predictor),
            ("energy", self.model.energy_model),
            ("generating", self.model.generating),
        ):
            if module is not None:
                module.load_state_dict(state["model"]["models"][name]["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = state["step"], state["epoch"]
        if self.dist.is_main:  # rows an interrupted run logged after its last checkpoint
            for name in ("train.csv", "val.csv"):
                self._drop_rows_after(name, self.step)
        self.batch_in_epoch, self.best = state["batch_in_epoch"], state["best"]
