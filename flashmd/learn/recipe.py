"""Learning recipes: YAML validated into a typed :class:`LearnRecipe` (errors name the field).

A recipe names the model to start from, the training recipe whose store, split and sizes the
retraining keeps, the conditions the model explores, the budget of reference calls per iteration,
and how long each retraining runs. ``training/emt-metals-learn.yaml`` is the worked example.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from flashmd.data.recipes import validate_yaml
from flashmd.train.config import LossWeights

if TYPE_CHECKING:
    from flashmd.md.batch import MDSettings


#: Loss weights added after learning recipes could set loss weights, with the value runs from
#: before had: left out of the fingerprint at that value, so those runs still resume.
_LATER_LOSS_WEIGHTS: dict[str, float] = {"potential_bias": 0.0}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RolloutCondition(_Strict):
    """A batch of rollouts from the stored states at one temperature (``flashmd md
    --start-from``)."""

    temperature_K: PositiveFloat
    """Thermostat temperature; the rollouts start from the equilibrated first frames of the
    trajectories at this temperature in the store they start from."""
    stride_fs: PositiveFloat = 64.0
    strides: PositiveInt = 500
    ensemble: Literal["nve", "langevin", "bussi"] = "langevin"
    friction_per_fs: PositiveFloat = 0.01

    def settings(self, model: str, start_from: str, **more: Any) -> MDSettings:
        """The :class:`~flashmd.md.batch.MDSettings` of these rollouts of ``model``."""
        from flashmd.md.batch import MDSettings

        return MDSettings(
            model=model,
            start_from=start_from,
            ensemble=self.ensemble,
            temperature_K=self.temperature_K,
            stride_fs=self.stride_fs,
            strides=self.strides,
            friction_per_fs=self.friction_per_fs,
            **more,
        )


class ExploreCondition(RolloutCondition):
    """One batch of rollouts of the current model (``flashmd md --uncertainty``)."""

    strides: PositiveInt = 400
    every: PositiveInt = 4
    """Strides between stored frames (each stored frame costs three more predictor passes)."""
    start_from: str | None = None
    """A reference store with states at ``temperature_K`` (default: the training store)."""
    replicas: PositiveInt = 1


class SelectSpec(_Strict):
    """How many states are labelled per iteration, and how they are spread."""

    reference_calls: PositiveInt
    """Budget of reference energy-and-force evaluations per iteration: each selected state costs
    one per timestep of its continuation, plus one at its start."""
    min_gap_fs: PositiveFloat = 512.0
    """Selected frames of one rollout trajectory are at least this far apart in time."""
    per_trajectory: PositiveInt | None = 4
    """At most this many states from one rollout trajectory per iteration (None: no limit)."""
    tail_fs: Annotated[float, Field(ge=0)] = 32.0
    """Each continuation runs the longest stride plus this tail."""


class RetrainSpec(_Strict):
    """Fine-tuning after each labelling, from the current checkpoint, on old plus new data."""

    steps: PositiveInt = 1000
    lr: PositiveFloat = 1e-3
    warmup_steps: Annotated[int, Field(ge=0)] = 50
    validate_every: PositiveInt = 250
    energy_model: Literal["train", "keep"] = "train"
    """``train``: fine-tune the energy model too on the new states' energies and forces;
    ``keep``: keep it fixed."""
    loss_weights: LossWeights | None = None
    """The retraining's loss weights (None: the training recipe's). The energy terms
    (``kinetic``, ``potential``) ask each stride to keep the true split of the energy between
    kinetic and potential; ``potential`` needs ``energy_model: keep``."""

    @model_validator(mode="after")
    def _potential_needs_fixed_energy_model(self) -> RetrainSpec:
        if self.loss_weights and self.loss_weights.prices_positions and self.energy_model != "keep":
            raise ValueError(
                "loss_weights.potential and potential_bias price the predicted positions with "
                "the energy model, "
                "which must then stay fixed: set energy_model: keep"
            )
        return self


class HeldoutCondition(RolloutCondition):
    """One held-out rollout judged by ``flashmd evaluate`` after every iteration."""


class HeldoutSpec(_Strict):
    """Held-out validation of every iteration's model (and of the starting one): rollouts from
    a reference store of conditions the training recipe does not hold, judged against it."""

    reference: str
    """A store made by ``flashmd generate`` (e.g. of ``data/emt-metals-heldout.yaml``)."""
    conditions: list[HeldoutCondition] = Field(min_length=1)


class LearnRecipe(_Strict):
    """Everything ``flashmd learn`` needs. Paths are relative to the working directory."""

    name: str
    model: str
    """The checkpoint (path or shipped name) of iteration 0."""
    train: str
    """The training recipe the retraining keeps (store, validation split, model sizes, losses);
    its ``predictor`` and ``energy_model`` are replaced by the current checkpoint."""
    data_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    """The first fraction of every training-store trajectory the retraining keeps (the labels
    always whole): active learning from a learning curve's run on scarce data, e.g. the model
    trained with ``data_fraction: 0.25``. None: the training recipe's."""
    output: str
    """Run folder: state file, rollouts, labels store, training runs, ``learning.csv``."""
    iterations: PositiveInt = 4
    explore: list[ExploreCondition] = Field(min_length=1)
    select: SelectSpec
    retrain: RetrainSpec = RetrainSpec()
    heldout: HeldoutSpec | None = None
    """Held-out validation after every iteration (None: only the training recipe's split)."""
    workers: PositiveInt = 1
    """Processes for the reference continuations."""
    device: str = "auto"

    def learning(self) -> dict:
        """What decides the learning, as JSON: everything but ``iterations`` (a run may be
        extended), ``heldout`` (validation only), ``workers`` and ``device``."""
        data = self.model_dump(mode="json", exclude={"iterations", "heldout", "workers", "device"})
        if data["data_fraction"] is None:  # so runs from before this field still resume
            del data["data_fraction"]
        weights = data["retrain"]["loss_weights"]
        if weights is None:  # so runs from before this field still resume
            del data["retrain"]["loss_weights"]
        else:  # loss weights newer than some runs, at the value those runs had
            for name, value in _LATER_LOSS_WEIGHTS.items():
                if weights.get(name) == value:
                    del weights[name]
        return data

    def fingerprint(self) -> str:
        """A short hash of :meth:`learning`."""
        data = self.learning()
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_learn_recipe(path: str | Path, **overrides: object) -> LearnRecipe:
    """Read and validate a learning recipe; ``overrides`` (not None) replace top-level fields.

    Raises:
        RecipeError: the file is missing or invalid (each wrong field named).
    """
    return validate_yaml(path, LearnRecipe, "learning recipe", overrides)
