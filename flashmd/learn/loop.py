"""``flashmd learn``: active learning on the model's own states, as a resumable loop.

Each iteration ``k`` runs five public steps, each resumable on its own:

    explore   batched rollouts of the current model with per-atom uncertainty
              (:func:`flashmd.md.batch.run_md`, ``flashmd md --uncertainty``)
    select    the most uncertain frames, decorrelated, within the budget of reference calls
              (:func:`flashmd.learn.select.select_states`)
    label     NVE reference continuations from exactly those states (positions and momenta)
              into the run's labels store (:func:`flashmd.data.continuations.label_states`),
              tagged with ``origin="learn"``, the iteration and the frame they started from;
              the current model's error on them is measured first (its error on its own states)
    retrain   fine-tuning from the current checkpoint on the training store plus every label so
              far (:class:`flashmd.train.trainer.Trainer` with ``start_from`` and
              ``extra_stores``), validated on the training recipe's unchanged held-out split
    validate  (with ``heldout`` in the recipe) rollouts of the new model on held-out
              conditions, judged by :func:`flashmd.analysis.report.evaluate`
    record    one row of ``learning.csv`` and the figure ``learning.png``

The loop's state (iteration, phase, checkpoint, reference calls spent) is ``learn.json`` in the run
folder, rewritten atomically after every phase, so a killed loop resumes at the phase it was in;
labelled frames are committed as they are computed and never recomputed. Everything a recipe can
get wrong (a model that cannot serve the species, strides or reference, a store of another
recipe, a budget below one state) stops the loop before any work.

Columns of ``learning.csv`` (one row per iteration; row 0 is the starting model):
``reference_calls`` spent so far and ``labelled_states``; ``explore_fallback_<S>`` the fraction
of strides the energy filter redid and ``explore_uncertainty_<S>`` (Å) the median largest-atom
uncertainty in the exploration of stride ``S``, and ``own_pos_rmse_<S>`` (Å) the position error on
the new labels, all three of the model that *entered* the iteration; ``val_pos_rmse_<S>`` (Å),
``val_mom_ratio_<S>`` and ``val_energy_rmse_meV_atom`` on the training recipe's held-out
trajectories, and ``heldout_fallback_<T>K_<S>`` (fraction of strides redone) and
``heldout_potential_<T>K_<S>`` (mean V minus the reference's, meV/atom) and
``heldout_failed_<T>K_<S>`` (observables out of tolerance) of each held-out condition, of the
model the iteration *produced*. The generating function of symplectic strides
is not carried over by the retraining (train it again on the final model).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flashmd.data.continuations import (
    Continuation,
    ContinuationSettings,
    check_state,
    label_states,
    reference_settings,
)
from flashmd.data.recipes import RecipeError
from flashmd.data.store import TrajectoryStore
from flashmd.learn.files import read_json, write_json
from flashmd.learn.recipe import ExploreCondition, LearnRecipe
from flashmd.learn.select import (
    SelectedState,
    frame_scores,
    load_selection,
    save_selection,
    select_states,
)
from flashmd.train.config import TrainConfig, load_train_config

if TYPE_CHECKING:
    from flashmd.analysis.report import EvaluationReport

#: The phases of one iteration, in order.
PHASES = ("explore", "select", "label", "retrain", "validate", "record")
STATE_FILE = "learn.json"


@dataclass(frozen=True)
class LoopState:
    """Where a learning run stands (``learn.json``).

    Attributes:
        fingerprint: the recipe's (:meth:`LearnRecipe.fingerprint`); another recipe is refused.
        iteration: the iteration in progress (1-based); phase: its next phase (:data:`PHASES`).
        checkpoint: the model entering the iteration.
        reference_calls: reference evaluations spent on labels so far.
        labelled_states: continuations labelled so far.
    """

    fingerprint: str
    iteration: int
    phase: str
    checkpoint: str
    reference_calls: int = 0
    labelled_states: int = 0

    def save(self, folder: Path) -> None:
        write_json(folder / STATE_FILE, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> LoopState | None:
        saved = read_json(folder / STATE_FILE)
        return None if saved is None else cls(**saved)


class LearnLoop:
    """The active-learning loop of a recipe (see the module docstring).

    Args:
        recipe: the validated learning recipe.
        progress: progress bars and one line per phase.

    Raises:
        RecipeError: the recipe cannot run (checked before any work), or its output folder
            holds a run of another recipe.
    """

    def __init__(self, recipe: LearnRecipe, progress: bool = True) -> None:
        from flashmd.models.io import load_model

        self.recipe, self.progress = recipe, progress
        self.output = Path(recipe.output)
        self.base = load_train_config(recipe.train)
        if recipe.data_fraction is not None:
            self.base = self.base.model_copy(update={"data_fraction": recipe.data_fraction})
        self.labels = str(self.output / "labels.zarr")
        state = LoopState.load(self.output)
        if state is not None and state.fingerprint != recipe.fingerprint():
            raise RecipeError(
                f"{self.output} holds a learning run of another recipe (learn.json); choose "
                "another output folder or restore that recipe (nothing was changed)"
            )
        self.state = state or LoopState(recipe.fingerprint(), 1, PHASES[0], recipe.model)
        self.model = load_model(self.state.checkpoint, device=recipe.device)
        self.store = TrajectoryStore.open(self.base.store)
        self.reference = self._reference_settings()
        self._preflight()

    # ------------------------------------------------------------------ checks
    def _reference_settings(self) -> ContinuationSettings:
        """The training store's calculator and sampling, for continuations as long as the
        longest stride plus the recipe's tail (whole sample intervals)."""
        return reference_settings(
            self.store, max(self.base.strides_fs) + self.recipe.select.tail_fs
        )

    @property
    def calls_per_state(self) -> int:
        """Reference evaluations one continuation costs (its start, then every timestep)."""
        settings = self.reference
        return round(settings.duration_fs / settings.timestep_fs) + 1

    def _preflight(self) -> None:
        from flashmd.md.batch import stored_starts

        model, base = self.model, self.base
        if sorted(model.strides_fs) != sorted(float(s) for s in base.strides_fs):
            raise RecipeError(
                f"{self.state.checkpoint} serves strides {model.strides_fs} fs but "
                f"{self.recipe.train} trains {list(base.strides_fs)} fs; use a checkpoint "
                "trained on the training recipe's strides"
            )
        if self.recipe.select.reference_calls < self.calls_per_state:
            raise RecipeError(
                f"select.reference_calls {self.recipe.select.reference_calls} cannot label one "
                f"state: each continuation costs {self.calls_per_state} reference calls"
            )
        try:
            model.check_species(np.asarray(self._species()))
            for condition in self.recipe.explore:
                model.check_strides([condition.stride_fs])
                for atoms in stored_starts(self._start(condition), condition.temperature_K):
                    model.check_species(atoms.numbers)
            heldout = self.recipe.heldout
            for judged in heldout.conditions if heldout else []:
                model.check_strides([judged.stride_fs])
                for atoms in stored_starts(heldout.reference, judged.temperature_K):
                    model.check_species(atoms.numbers)
        except ValueError as error:
            raise RecipeError(f"{self.recipe.name}: {error}") from None
        TrajectoryStore.create(self.labels, self._store_recipe())  # another recipe's: refused

    def _species(self) -> list[int]:
        return sorted({int(z) for t in self.store.ids() for z in self.store[t].numbers})

    def _start(self, condition: ExploreCondition) -> str:
        return condition.start_from or self.base.store

    def _store_recipe(self) -> dict[str, Any]:
        return {"name": f"flashmd-learn:{self.recipe.name}", "learn": self.recipe.learning()}

    # ------------------------------------------------------------------ loop
    def run(self) -> list[dict[str, float]]:
        """Run (or resume) until ``recipe.iterations`` iterations are done; returns the rows
        of ``learning.csv``."""
        self.output.mkdir(parents=True, exist_ok=True)
        if not (self.output / "iter-00" / "metrics.json").exists():
            self._merge(
                0, {"reference_calls": 0, "labelled_states": 0, **self._split_metrics(None)}
            )
        for row in self.rows():  # the starting model, and iterations before ``heldout`` was set
            self._validate(int(row["iteration"]))
        while self.state.iteration <= self.recipe.iterations:
            k = self.state.iteration
            for phase in PHASES[PHASES.index(self.state.phase) :]:
                self._say(f"iteration {k}: {phase}")
                getattr(self, f"_{phase}")(k)
                following = PHASES.index(phase) + 1
                if following < len(PHASES):
                    self._advance(phase=PHASES[following])
            self._advance(iteration=k + 1, phase=PHASES[0], checkpoint=self._trained(k))
        return self.rows()

    def _advance(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)
        self.state.save(self.output)

    def _say(self, text: str) -> None:
        if self.progress:
            print(f"learn {self.recipe.name}: {text}", flush=True)

    def _folder(self, k: int) -> Path:
        folder = self.output / f"iter-{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # ------------------------------------------------------------------ phases
    def _explore(self, k: int) -> None:
        from flashmd.md.batch import run_md

        metrics: dict[str, list[float]] = {}
        for j, condition in enumerate(self.recipe.explore):
            location = self._explore_stores(k)[j]
            settings = condition.settings(
                self.state.checkpoint,
                self._start(condition),
                every=condition.every,
                replicas=condition.replicas,
                seed=1000 * k + j,
                uncertainty=True,
            )
            run_md(settings, location, device=self.recipe.device, progress=self.progress)
            fallback, uncertainty = _rollout_summary(location)
            stride = f"{condition.stride_fs:g}"
            metrics.setdefault(f"explore_fallback_{stride}", []).append(fallback)
            metrics.setdefault(f"explore_uncertainty_{stride}", []).append(uncertainty)
        self._merge(k, {name: float(np.mean(values)) for name, values in metrics.items()})

    def _explore_stores(self, k: int) -> list[str]:
        count = len(self.recipe.explore)
        return [str(self._folder(k) / f"explore-{j:02d}.zarr") for j in range(count)]

    def _select(self, k: int) -> None:
        """The most uncertain states the reference can continue from: states it cannot (atoms
        closer than 0.5 Å, where the model's rollout went wrong beyond repair) are skipped and
        counted (``unlabelable``), and the next ones taken."""
        spec = self.recipe.select
        count = spec.reference_calls // self.calls_per_state
        every = {c.every * c.stride_fs for c in self.recipe.explore}
        gap = max(1, math.ceil(spec.min_gap_fs / min(every)))
        kept, skipped = [], 0
        for state in select_states(self._explore_stores(k), None, gap, spec.per_trajectory):
            try:
                check_state(self._continuation(k, len(kept), state))
            except ValueError:
                skipped += 1
                continue
            kept.append(state)
            if len(kept) == count:
                break
        save_selection(kept, self._folder(k) / "selected.json")
        self._merge(k, {"unlabelable": skipped})

    @staticmethod
    def _continuation(k: int, n: int, state: SelectedState) -> Continuation:
        atoms = TrajectoryStore.open(state.store)[state.trajectory].to_atoms(state.frame)
        attrs = {
            "origin": "learn",
            "iteration": k,
            "start_from": {
                "store": state.store,
                "trajectory": state.trajectory,
                "frame": state.frame,
            },
            "uncertainty_A": state.score,
            "temperature_K": state.temperature_K,
        }
        return Continuation(f"i{k:02d}-{n:04d}", atoms, attrs)

    def _continuations(self, k: int) -> list[Continuation]:
        selected = load_selection(self._folder(k) / "selected.json")
        return [self._continuation(k, n, state) for n, state in enumerate(selected)]

    def _label(self, k: int) -> None:
        continuations = self._continuations(k)
        label_states(
            self.reference,
            continuations,
            self.labels,
            self._store_recipe(),
            workers=self.recipe.workers,
            progress=self.progress,
        )
        self._merge(k, self._own_error(k, [c.id for c in continuations]))
        self._advance(
            reference_calls=self.state.reference_calls + len(continuations) * self.calls_per_state,
            labelled_states=self.state.labelled_states + len(continuations),
            phase="retrain",  # spent once, even if the loop is killed right after
        )

    def _own_error(self, k: int, ids: list[str]) -> dict[str, float]:
        """The current model's stride errors on the new labels (its own states)."""
        if not ids:
            return {}
        metrics = self._metrics(self.labels, ids, self.state.checkpoint)
        own = {name: value for name, value in metrics.items() if name.startswith("pos_rmse")}
        return {f"own_{name}": value for name, value in own.items()}

    def _train_config(self, k: int) -> TrainConfig:
        retrain, checkpoint = self.recipe.retrain, self.state.checkpoint
        energy = {"start_from" if retrain.energy_model == "train" else "checkpoint": checkpoint}
        data = self.base.model_dump(mode="json")
        data.update(
            name=f"{self.recipe.name}-iter{k:02d}",
            output=str(self._folder(k) / "train"),
            predictor={"start_from": checkpoint},
            energy_model=energy,
            generating=None,
            extra_stores=[self.labels],
            steps=retrain.steps,
            lr=retrain.lr,
            warmup_steps=retrain.warmup_steps,
            validate_every=retrain.validate_every,
            checkpoint_every=min(retrain.validate_every, self.base.checkpoint_every),
            device=self.recipe.device,
            seed=self.base.seed,
        )
        if retrain.loss_weights is not None:
            data.update(loss_weights=retrain.loss_weights.model_dump(mode="json"))
        return TrainConfig.model_validate(data)

    def _retrain(self, k: int) -> None:
        from flashmd.train.trainer import Trainer

        config = self._train_config(k)
        resume = (Path(config.output) / "state.pt").exists()
        trainer = Trainer(config, resume=resume, progress=self.progress)
        try:
            trainer.run()
        except BaseException:
            trainer.close(failed=True)
            raise
        trainer.close()

    def _trained(self, k: int) -> str:
        return str(self._folder(k) / "train" / "last.pt") if k else self.recipe.model

    def _validate(self, k: int) -> None:
        """Held-out rollouts of iteration ``k``'s model (0: the starting one), each judged by
        ``flashmd evaluate``; resumable, and skipped when already recorded."""
        from flashmd.analysis.report import evaluate
        from flashmd.md.batch import run_md

        spec = self.recipe.heldout
        if spec is None:
            return
        done = self._metrics_of(k)
        for condition in spec.conditions:
            name = f"{condition.temperature_K:g}K_{condition.stride_fs:g}"
            if f"heldout_failed_{name}" in done:
                continue
            self._say(f"iteration {k}: held-out {name} fs")
            location = str(self._folder(k) / f"heldout-{name}.zarr")
            settings = condition.settings(self._trained(k), spec.reference)
            run_md(settings, location, device=self.recipe.device, progress=self.progress)
            # under a thermostat, V of the rollout's frames from the reference calculator (where
            # the dynamics went), not the energy model's (whose offset would be judged too)
            energy = "stored" if condition.ensemble == "nve" else "reference"
            report = evaluate(
                spec.reference,
                location,
                self._folder(k) / f"heldout-{name}-report",
                figures=False,
                energy=energy,
            )
            self._merge(
                k,
                {
                    f"heldout_fallback_{name}": _fallback_fraction(report),
                    f"heldout_potential_{name}": _potential_difference(report),
                    f"heldout_failed_{name}": len(report.failures),
                },
            )

    def _metrics_of(self, k: int) -> dict[str, float]:
        return read_json(self._folder(k) / "metrics.json", missing={})

    def _record(self, k: int) -> None:
        self._merge(
            k,
            {
                "reference_calls": self.state.reference_calls,
                "labelled_states": self.state.labelled_states,
                **self._split_metrics(self._trained(k)),
            },
        )
        from flashmd.learn.report import plot_learning, write_csv

        rows = self.rows()
        write_csv(rows, self.output / "learning.csv")
        plot_learning(rows, self.output / "learning.png")

    # ------------------------------------------------------------------ metrics
    def _split_metrics(self, checkpoint: str | None) -> dict[str, float]:
        """Metrics of ``checkpoint`` (None: the starting model) on the training recipe's
        held-out trajectories (its split of the store, or its ``validation_store``)."""
        from flashmd.train.validation import validation_set

        location, val_ids = validation_set(self.base)
        metrics = self._metrics(location, val_ids, checkpoint or self.recipe.model)
        wanted = ("pos_rmse", "mom_ratio", "pos_ratio", "energy_rmse", "forces_rmse")
        wanted += ("kinetic_ratio", "potential_shift")
        return {f"val_{n}": v for n, v in metrics.items() if n.startswith(wanted)}

    def _metrics(self, store: str, ids: list[str], checkpoint: str) -> dict[str, float]:
        from flashmd.models.io import load_model
        from flashmd.train.validation import evaluate, held_out_batches

        model = load_model(checkpoint, device=self.recipe.device)
        batches = held_out_batches(
            store,
            ids,
            tuple(model.strides_fs),
            self.base.val_pairs,
            self.base.batch_size,
            model.cutoff,
            model.device,
            model.dtype,
            seed=self.base.seed + 2,
        )
        return evaluate(model, batches)

    def _merge(self, k: int, values: dict[str, float]) -> None:
        write_json(self._folder(k) / "metrics.json", {**self._metrics_of(k), **values})

    def rows(self) -> list[dict[str, float]]:
        """One row per iteration recorded so far (iteration 0: the starting model)."""
        rows = []
        for path in sorted(self.output.glob("iter-*/metrics.json")):
            values = read_json(path)
            if "reference_calls" in values:  # written by the record phase
                values.update(_older_potentials(path.parent, values))
                rows.append({"iteration": int(path.parent.name.split("-")[1]), **values})
        return rows


def _older_potentials(folder: Path, values: dict[str, float]) -> dict[str, float]:
    """``heldout_potential_*`` of conditions judged before that column existed, read back from
    their saved evaluation summaries."""
    found = {}
    for key in values:
        name = key.removeprefix("heldout_failed_")
        summary = folder / f"heldout-{name}-report" / "summary.json"
        if key == name or f"heldout_potential_{name}" in values or not summary.exists():
            continue
        value = _mean_potential([m for c in read_json(summary)["conditions"] for m in c["metrics"]])
        if not np.isnan(value):
            found[f"heldout_potential_{name}"] = value
    return found


def _rollout_summary(location: str) -> tuple[float, float]:
    """(fraction of strides redone, median largest-atom uncertainty in Å) of an exploration."""
    store = TrajectoryStore.open(location)
    fallbacks, scores = [], []
    for traj_id in store.ids():
        reader = store[traj_id]
        fallbacks.append(np.asarray(reader.group["filter_fallback"][1 : reader.n_frames]))
        scores.append(frame_scores(store, traj_id)[1:])
    return float(np.concatenate(fallbacks).mean()), float(np.median(np.concatenate(scores)))


def _potential_difference(report: EvaluationReport) -> float:
    """Mean over the conditions of the rollout's mean potential energy minus the reference's,
    meV/atom (NaN where not compared)."""
    return _mean_potential([m.as_dict() for c in report.conditions for m in c.metrics])


def _mean_potential(metrics: list[dict]) -> float:
    """Mean ``difference`` of the ``potential_energy`` rows of evaluation ``metrics`` (as in a
    report's summary.json), NaN when there is none."""
    found = [
        m["difference"]
        for m in metrics
        if m["key"] == "potential_energy" and m["difference"] is not None
    ]
    return float(np.mean(found)) if found else float("nan")


def _fallback_fraction(report: EvaluationReport) -> float:
    """Strides redone over every condition of an evaluation (its judged fallback fraction)."""
    return float(np.mean([c.rollout.fallback_fraction for c in report.conditions]))
