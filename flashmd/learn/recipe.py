"""Learning recipes: YAML validated into a typed :class:`LearnRecipe` (errors name the field).

A recipe names the model to start from, the training recipe whose store, split and sizes the
retraining keeps, the conditions the model explores, the budget of reference calls per iteration,
and how long each retraining runs. ``training/emt-metals-learn.yaml`` is the worked example.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from flashmd.data.recipes import RecipeError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExploreCondition(_Strict):
    """One batch of rollouts of the current model (``flashmd md --uncertainty``)."""

    temperature_K: PositiveFloat
    """Thermostat temperature; the rollouts start from the equilibrated first frames of the
    trajectories at this temperature in ``start_from``."""
    stride_fs: PositiveFloat = 64.0
    strides: PositiveInt = 400
    every: PositiveInt = 4
    """Strides between stored frames (each stored frame costs three more predictor passes)."""
    ensemble: Literal["nve", "langevin", "bussi"] = "langevin"
    friction_per_fs: PositiveFloat = 0.01
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


class HeldoutCondition(_Strict):
    """One held-out rollout judged by ``flashmd evaluate`` after every iteration."""

    temperature_K: PositiveFloat
    """The reference trajectories at this temperature are the start and the judge."""
    stride_fs: PositiveFloat = 64.0
    strides: PositiveInt = 500
    ensemble: Literal["nve", "langevin", "bussi"] = "langevin"
    friction_per_fs: PositiveFloat = 0.01


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
        return self.model_dump(mode="json", exclude={"iterations", "heldout", "workers", "device"})

    def fingerprint(self) -> str:
        """A short hash of :meth:`learning`."""
        data = self.learning()
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_learn_recipe(path: str | Path, **overrides: object) -> LearnRecipe:
    """Read and validate a learning recipe; ``overrides`` (not None) replace top-level fields."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"learning recipe {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"invalid learning recipe {path}: expected a mapping")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return LearnRecipe.model_validate(data)
    except ValidationError as error:
        lines = [f"invalid learning recipe {path}:"]
        for item in error.errors():
            where = ".".join(str(p) for p in item["loc"]) or "(top level)"
            message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
            lines.append(f"  {where}: {message}")
        raise RecipeError("\n".join(lines)) from None
