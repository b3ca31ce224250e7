"""Training recipes: YAML validated into a typed :class:`TrainConfig` (errors name the field)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from flashmd.data.recipes import RecipeError, validate_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """A model size preset (``tiny``, ``small``, ``medium``) and field overrides; or a trained
    model from a checkpoint, either trained further (``start_from``) or (energy model only) kept
    fixed (``checkpoint``)."""

    preset: str = "small"
    overrides: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str | None = None
    """A flashmd checkpoint (path or shipped name) whose model is used as is and not trained;
    it must know exactly the store's species. Excludes ``preset`` and ``overrides``."""
    start_from: str | None = None
    """A flashmd checkpoint (path or shipped name) whose model of this kind, architecture and
    weights, starts the training (fine-tuning); for a predictor or generating function it must
    serve the recipe's strides. Its species may differ from the store's: species it knew keep
    their weights, species it did not start from the mean embedding
    (:mod:`flashmd.models.species`). Excludes ``preset``, ``overrides`` and ``checkpoint``."""
    refit_energy_shift: bool | None = None
    """Energy model with ``start_from`` only: before training, refit its per-species reference
    energies to the store's energies (least squares of the residual;
    :mod:`flashmd.train.rereference`). Default (None): when the checkpoint's species or
    recorded reference calculator differ from the store's, as when pretrained on EMT and
    fine-tuned on an MLIP."""

    @model_validator(mode="after")
    def _checkpoint_excludes_size(self) -> ModelSpec:
        taken = [name for name in ("checkpoint", "start_from") if getattr(self, name) is not None]
        if len(taken) > 1:
            raise ValueError("checkpoint (kept fixed) and start_from (trained) exclude each other")
        if taken and {"preset", "overrides"} & self.model_fields_set:
            raise ValueError(
                f"a model taken from a checkpoint ({taken[0]}) has no preset or overrides"
            )
        if self.refit_energy_shift is not None and self.start_from is None:
            raise ValueError("refit_energy_shift applies to a model trained on from start_from")
        return self


class LossWeights(_Strict):
    """Weights of the loss terms; each term is already normalised to be of order one."""

    predictor: Annotated[float, Field(ge=0)] = 1.0
    energy: Annotated[float, Field(ge=0)] = 1.0
    """Energy per atom, in units of its training standard deviation."""
    forces: Annotated[float, Field(ge=0)] = 10.0
    """Forces, in units of their training root mean square."""
    stress: Annotated[float, Field(ge=0)] = 0.0
    """Stress, in units of its training root mean square, on the systems whose trajectories store
    it (``store_stress: true`` in the data recipe; the others and slabs do not count): the
    virial a barostat follows."""
    kinetic: Annotated[float, Field(ge=0)] = 0.0
    """Kinetic energy of each species in each system after the stride, relative to its expected
    value (:func:`flashmd.train.losses.kinetic_loss`); 0 leaves the predictor a conditional mean,
    which loses kinetic energy across a stride."""
    generating: Annotated[float, Field(ge=0)] = 1.0
    """The generating function's midpoint condition ``x' - x = J ∇S((x + x')/2)`` on the true
    pairs, in the predictor's normalised units (see ``losses.midpoint_prediction``)."""
    modified: Annotated[float, Field(ge=0)] = 0.0
    """The generating function's stride against the parameter-free modified midpoint map's
    (``flashmd.models.generating.modified_stride_gradients``) at the same midpoints, in the
    predictor's normalised units: distils the correction that cancels the midpoint rule's
    leading error into ``W``, whose gradient costs a fraction of the energy model's third
    derivatives at run time."""
    unroll: Annotated[float, Field(ge=0)] = 1.0
    """The unrolled strides of ``unroll_strides`` (mean over them), in the predictor's
    normalised units."""
    potential: Annotated[float, Field(ge=0)] = 0.0
    """Potential energy (by the energy model) at the predicted positions against the true ones,
    relative to the system's expected kinetic energy (:func:`flashmd.train.losses.potential_loss`);
    needs an energy model kept fixed (``energy_model: {checkpoint: ...}``)."""
    potential_bias: Annotated[float, Field(ge=0)] = 0.0
    """The same shift's mean over the batch, squared (:func:`flashmd.train.losses.
    potential_bias_loss`): its bias alone; needs an energy model kept fixed."""

    @property
    def prices_positions(self) -> bool:
        """Whether a term prices the predicted positions with the (fixed) energy model."""
        return self.potential > 0 or self.potential_bias > 0


class InputNoise(_Strict):
    """Gaussian noise added to the predictor's inputs (never to its targets) while training.

    The predictor then learns to carry a slightly perturbed state back towards the trajectory
    it came from, as a rollout needs after its own errors (the noise of learned simulators,
    Sanchez-Gonzalez et al. 2020). The energy model always sees the clean positions.
    """

    positions_A: Annotated[float, Field(ge=0)] = 0.0
    """Standard deviation of each position component, Å."""
    momenta: Annotated[float, Field(ge=0)] = 0.0
    """Standard deviation of each momentum component as a fraction of that species' RMS momentum
    component at that stride in the training data (dimensionless)."""
    keep_kinetic_energy: bool = False
    """Rescale each system's noisy momenta to its clean kinetic energy, so the noise turns their
    directions only. Input noise makes strides lose energy (the noise's own energy and more),
    which the energy filter sees as an extra deficit (more strides redone); but on emt-metals,
    momentum noise kept this way with little position noise gave a predictor that gains energy
    in NVE (see its model card). Check any noise setting in NVE and under a thermostat."""

    @property
    def active(self) -> bool:
        return self.positions_A > 0 or self.momenta > 0


class TrainConfig(_Strict):
    """Everything a training run needs. Paths are relative to the working directory."""

    name: str
    store: str
    """Trajectory store made by ``flashmd generate``."""
    extra_stores: tuple[str, ...] = ()
    """Further trajectory stores whose complete trajectories all train (none validates), e.g.
    reference continuations written by ``flashmd learn``; validation and the split come from
    ``store`` alone, so adding extra stores never moves a validation trajectory into training.
    The models' species cover every store and the normalisation statistics include the extra
    trajectories; every store must have the base store's sample interval."""
    output: str
    """Run directory: checkpoints, metrics CSV, the exported best model."""
    strides_fs: tuple[PositiveFloat, ...] = (16.0, 32.0, 64.0)
    validation: float | list[str] = 0.15
    """Fraction of trajectories held out, or their ids (split by trajectory, never frame)."""
    validation_store: str | None = None
    """A store of held-out conditions (its own recipe, the same reference and sample interval)
    whose complete trajectories all validate; every trajectory of ``store`` then trains, and
    ``validation`` must be 0."""
    predictor: ModelSpec | None = ModelSpec()
    energy_model: ModelSpec | None = ModelSpec()
    generating: ModelSpec | None = None
    """The generating function of symplectic strides (:mod:`flashmd.models.generating`); it
    needs an energy model kept fixed (``energy_model: {checkpoint: ...}``), and the predictor
    may then be kept fixed too (``predictor: {checkpoint: ...}``: it starts the solver)."""
    loss_weights: LossWeights = LossWeights()
    input_noise: InputNoise = InputNoise()
    batch_size: PositiveInt = 8
    """Systems per optimisation step (per process under torchrun)."""
    steps: PositiveInt = 10000
    lr: PositiveFloat = 2e-3
    warmup_steps: Annotated[int, Field(ge=0)] = 200
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.02
    """Cosine schedule from ``lr`` down to ``lr * min_lr_ratio``."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    grad_clip: PositiveFloat = 10.0
    validate_every: PositiveInt = 500
    checkpoint_every: PositiveInt = 500
    val_pairs: PositiveInt = 1024
    """Validation pairs per stride (a fixed, seeded subset of the held-out trajectories)."""
    stats_pairs: PositiveInt = 512
    """Training pairs used to compute the normalisation statistics."""
    num_workers: Annotated[int, Field(ge=0)] = 1
    buffer_blocks: PositiveInt = 8
    pairs_per_block: PositiveInt | None = 64
    """Training pairs drawn from each block (one chunk of one trajectory) per pass: small values
    bring every trajectory round often; null takes every pair of a block before the next. A short
    fine-tuning over many trajectories wants a small value: 1500 steps of 8 pairs at 64 per block
    reach at most 187 blocks, which left most of 233 trajectories (450 blocks) unseen and the energy
    error swinging with whichever few were buffered (training/emt-metals-stress-liquids.yaml)."""
    rotate: bool = False
    time_reversal: bool = True
    data_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Train on the first fraction of every training trajectory's frames of ``store`` only (the
    normalisation statistics too; validation trajectories and ``extra_stores`` are untouched):
    learning curves on scarce data, and active learning that starts from them."""
    unroll_strides: Annotated[int, Field(ge=0, le=8)] = 0
    """Further strides every training pair is rolled out for: the predictor is fed its own
    prediction (its momenta energy-filtered by the energy model, as a rollout does, and detached:
    no gradient flows back through the chain) and judged against the true states further on
    (loss term ``unroll``). 0: single strides only."""
    seed: int = 0
    device: str = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    amp: bool = True
    """bfloat16 autocast and TF32 matmuls on CUDA (ignored on CPU)."""

    def resolve(self, base: Path) -> TrainConfig:
        """Relative ``store``, ``extra_stores`` and ``output`` taken relative to ``base`` (URLs
        are kept)."""
        return self.model_copy(
            update={
                "store": _resolve_store(self.store, base),
                "extra_stores": tuple(_resolve_store(s, base) for s in self.extra_stores),
                "validation_store": None
                if self.validation_store is None
                else _resolve_store(self.validation_store, base),
                "output": str(base / self.output),
            }
        )


def _resolve_store(location: str, base: Path) -> str:
    """A store path relative to ``base``; a URL (``scheme://...``) as it is."""
    return location if "://" in location else str(base / location)


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read and validate a training recipe; ``overrides`` replace top-level fields."""
    path = Path(path)
    config = validate_yaml(path, TrainConfig, "training recipe", overrides)
    if config.predictor is None and config.energy_model is None:
        raise RecipeError(f"{path}: predictor and energy_model are both null; nothing to train")
    if config.generating is not None:
        _check_generating(path, config)
    elif config.predictor is not None and config.predictor.checkpoint is not None:
        raise RecipeError(
            f"{path}: predictor.checkpoint: only the energy model can be taken from a checkpoint "
            "and kept fixed (to train an energy model alone, set predictor: null; to train a "
            "predictor further, use predictor: {start_from: CHECKPOINT})"
        )
    if config.validation_store is not None and config.validation != 0:
        raise RecipeError(
            f"{path}: validation_store validates on its own trajectories; set validation: 0 so "
            "that every trajectory of the store trains"
        )
    for kind in ("predictor", "generating"):
        spec = getattr(config, kind)
        if spec is not None and spec.refit_energy_shift is not None:
            raise RecipeError(
                f"{path}: {kind}.refit_energy_shift: only the energy model has reference energies "
                "to refit; set it under energy_model"
            )
    if config.loss_weights.prices_positions and (
        config.energy_model is None or config.energy_model.checkpoint is None
    ):
        raise RecipeError(
            f"{path}: loss_weights.potential and potential_bias price the predicted positions "
            "with an energy model "
            "kept fixed; set energy_model: {checkpoint: NAME_OR_PATH} (a trained energy model)"
        )
    if (
        config.predictor is None
        and config.generating is None
        and config.energy_model.checkpoint is not None
    ):
        raise RecipeError(f"{path}: the energy model is taken from a checkpoint; nothing to train")
    return config.resolve(Path.cwd())


def _check_generating(path: Path, config: TrainConfig) -> None:
    """A generating function is trained against a fixed energy model (it is part of ``S``)."""
    if config.energy_model is None or config.energy_model.checkpoint is None:
        raise RecipeError(
            f"{path}: generating: the generating function S = h(K + V + W) learns W on top of a "
            "trained energy model V kept fixed; set energy_model: {checkpoint: NAME_OR_PATH}"
        )
    if config.generating.checkpoint is not None:
        raise RecipeError(
            f"{path}: generating.checkpoint: a generating function is trained here; to train one "
            "further use generating: {start_from: CHECKPOINT}"
        )
