"""``flashmd demo``: the README's main job, long-stride MD checked against reference MD.

Three steps, each a public command of its own, into one output directory:

1. ``reference.zarr``: a short reference run of the demo recipe (``flashmd/pretrained/demo.yaml``:
   a random Cu3Au alloy, 108 atoms, 700 K, Langevin equilibration and Bussi production, asap3
   EMT at 2 fs), as ``flashmd generate`` makes it;
2. ``flashmd.zarr``: the shipped model from the reference's first (equilibrated) frame, same
   thermostat, ``strides`` strides of ``stride_fs`` (by default as many as cover the reference's
   production, symplectic when the model carries a generating function), as ``flashmd md
   --start-from [--symplectic]`` makes it;
3. ``report/``: ``flashmd evaluate --energy reference`` of the two (report.md, figures/*.png):
   the rollout's frames are priced with the reference calculator.

Every step resumes: running the demo again skips what is complete.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flashmd.analysis.report import EvaluationReport, evaluate
from flashmd.data.generate import generate
from flashmd.data.recipes import Recipe, load_recipe
from flashmd.data.systems import build_system
from flashmd.md.batch import MDSettings, run_md
from flashmd.models.io import PRETRAINED_DIR, load_model

#: The recipe of the demo's reference run (shipped with the package).
DEMO_RECIPE = "demo.yaml"


def _check_model(
    model: str, recipe: Recipe, stride_fs: float, device: str, symplectic: bool | None
) -> bool:
    """Check species and stride before any work; returns whether strides are symplectic
    (``symplectic`` None: when the model carries a generating function for the stride)."""
    loaded = load_model(model, device=device)
    rng = np.random.default_rng(recipe.seed)
    for k, spec in enumerate(recipe.systems):
        loaded.check_species(build_system(spec, rng, f"systems.{k}").numbers)
    if symplectic is None:
        symplectic = stride_fs in loaded.symplectic_strides_fs
    loaded.check_strides([stride_fs], symplectic=symplectic)
    return symplectic


#: The demo's default stride (fs). 16 fs rather than 32: under the demo's Bussi thermostat the
#: symplectic strides of ``emt-metals`` read the mean frequency 0.9 % low at 16 fs and 3.4 % at
#: 32 fs (its generating function is less accurate at 32 fs), and the potential energy +2.1
#: against +3.6 meV/atom (docs/guide/constant-pressure.md, "The demo's thermostat"), for 1.4x
#: the wall time of 32 fs over the same 32 ps (5 solver iterations per stride instead of 7).
DEMO_STRIDE_FS = 16.0


def default_strides(recipe: Recipe, stride_fs: float) -> int:
    """Strides of ``stride_fs`` that cover the recipe's production time (at least one)."""
    return max(1, math.ceil(recipe.production_fs / stride_fs - 1e-9))


def demo_recipe() -> Recipe:
    """The reference recipe of the demo, read from the installed package."""
    return load_recipe(PRETRAINED_DIR / DEMO_RECIPE)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs, and the evaluation.

    Attributes:
        reference, rollout: the two trajectory stores; report: the evaluation (its ``out`` is
            the report directory); seconds: wall time of each step (reference, flashmd, evaluate).
    """

    reference: Path
    rollout: Path
    report: EvaluationReport
    seconds: dict[str, float]


def run_demo(
    out: str | Path,
    model: str = "emt-metals",
    stride_fs: float = DEMO_STRIDE_FS,
    strides: int | None = None,
    device: str = "auto",
    progress: bool = True,
    recipe: Recipe | None = None,
    symplectic: bool | None = None,
) -> DemoResult:
    """Reference MD, flashmd from its first frame, and the evaluation report, into ``out``.

    Args:
        out: output directory (created).
        model: shipped model name or checkpoint path.
        stride_fs: one of the model's strides, fs.
        strides: strides of the flashmd run (its simulated time is ``strides * stride_fs``);
            None: as many as cover the reference's production (:func:`default_strides`).
        device: where the model runs (auto, cpu, cuda, ...).
        progress: progress bars on stderr.
        recipe: the reference recipe (default :func:`demo_recipe`); one temperature.
        symplectic: symplectic strides (:mod:`flashmd.md.symplectic`) or the direct predictor's;
            None: symplectic when the model carries a generating function for ``stride_fs``.
    """
    out = Path(out)
    recipe = demo_recipe() if recipe is None else recipe
    if len(recipe.temperatures_K) != 1:
        raise ValueError(f"the demo recipe needs one temperature, got {recipe.temperatures_K}")
    (temperature_K,) = recipe.temperatures_K
    strides = default_strides(recipe, stride_fs) if strides is None else strides
    symplectic = _check_model(model, recipe, stride_fs, device, symplectic)  # before any work
    out.mkdir(parents=True, exist_ok=True)  # a wrong model or stride leaves nothing behind
    reference, rollout = out / "reference.zarr", out / "flashmd.zarr"
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    generate(recipe, str(reference), progress=progress)
    seconds["reference"] = time.perf_counter() - started

    started = time.perf_counter()
    settings = MDSettings(
        model=model,
        start_from=str(reference),
        ensemble=recipe.ensemble.production,
        temperature_K=temperature_K,
        stride_fs=stride_fs,
        strides=strides,
        friction_per_fs=recipe.ensemble.friction_per_fs,
        taut_fs=recipe.ensemble.taut_fs,
        symplectic=symplectic,
    )
    run_md(settings, str(rollout), device=device, progress=progress)
    seconds["flashmd"] = time.perf_counter() - started

    started = time.perf_counter()
    # the rollout's frames priced by the reference calculator: where the dynamics went
    report = evaluate(reference, rollout, out / "report", progress=None, energy="reference")
    seconds["evaluate"] = time.perf_counter() - started
    return DemoResult(reference, rollout, report, seconds)
