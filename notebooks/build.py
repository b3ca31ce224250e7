"""Write the tutorial notebooks from their cells (run: python notebooks/build.py).

The notebooks are committed without outputs; editing a cell here and rebuilding keeps their
source reviewable as code. Every cell only imports and calls the library.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

SETUP = """\
from pathlib import Path
import tempfile

# the repository root (notebooks/ or the root itself as working directory)
ROOT = Path.cwd() if (Path.cwd() / "data").is_dir() else Path.cwd().parent
WORK = Path(tempfile.mkdtemp(prefix="flashmd-notebook-"))
print("writing to", WORK)"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "02_data.ipynb": [
        (
            "md",
            """\
# Reference trajectories: recipes, generation, the Zarr store

flashmd learns from reference molecular dynamics. A **recipe** (YAML) says which systems to
simulate, with which calculator, at which temperatures, and how often to store frames.
`flashmd generate` runs it in parallel into a **Zarr store** that training, rollouts and
evaluation all read. This notebook uses the tiny Al recipe (seconds on a laptop).""",
        ),
        ("code", SETUP),
        (
            "code",
            """\
from flashmd.data.recipes import load_recipe

recipe = load_recipe(ROOT / "data" / "al-emt-tiny.yaml")
print(recipe.calculator, recipe.timestep_fs, recipe.sample_interval_fs)
for task in recipe.tasks():
    print(task.id)""",
        ),
        (
            "md",
            """\
Every trajectory is (system, temperature, replica) and gets a stable id. A bad field gets an
error that names it:""",
        ),
        (
            "code",
            """\
from flashmd.data.recipes import RecipeError, parse_recipe

try:
    parse_recipe({**recipe.model_dump(), "timestep_fs": 0})
except RecipeError as error:
    print(error)""",
        ),
        (
            "md",
            """\
## Generate

The same call is `flashmd generate data/al-emt-tiny.yaml -o STORE.zarr --workers 2` on the
command line. Re-running it skips complete trajectories and resumes partial ones.""",
        ),
        (
            "code",
            """\
from flashmd.data.generate import generate

store_path = str(WORK / "al-emt-tiny.zarr")
report = generate(recipe, store_path, workers=1)
report""",
        ),
        (
            "code",
            """\
from flashmd.data.inspect import format_store

print(format_store(store_path))   # what `flashmd inspect` prints""",
        ),
        (
            "md",
            """\
## Read it back

`TrajectoryStore` reads lazily: asking for frames 100-109 decompresses only the chunk that
holds them. Positions are unwrapped (continuous in time), momenta in ASE units.""",
        ),
        (
            "code",
            """\
from flashmd.data.store import TrajectoryStore

store = TrajectoryStore.open(store_path)
traj = store[store.ids()[1]]
frames = traj.read(100, 110)
print(traj.attrs["calculator"])
print({key: value.shape for key, value in frames.items()})""",
        ),
        ("md", "Plain zarr and xarray read the same store (see `data/README.md`):"),
        (
            "code",
            """\
import xarray as xr

ds = xr.open_zarr(store_path, group=f"trajectories/{traj.name.split(':')[-1]}",
                  consolidated=False)
ds""",
        ),
        (
            "code",
            """\
import matplotlib.pyplot as plt
from flashmd.analysis import kinetic_temperature

data = traj.read()
temperature = kinetic_temperature(data["momenta"], traj.masses, fixed_com=True)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.plot(data["time_fs"] / 1000, temperature.total)
ax1.axhline(traj.attrs["temperature_K"], color="k", ls="--", label="target")
ax1.set(xlabel="time (ps)", ylabel="kinetic temperature (K)")
ax1.legend()
ax2.plot(data["time_fs"] / 1000, data["energy"] / traj.n_atoms)
ax2.set(xlabel="time (ps)", ylabel="potential energy (eV/atom)")
fig.tight_layout()""",
        ),
    ],
    "03_training.ipynb": [
        (
            "md",
            """\
# Training a long-stride predictor and its energy model

One recipe trains the **predictor** (one model for several strides) and the **energy model**
that the rollout's energy filter uses. Validation reports, per stride, the error of the
predicted positions and momenta as a fraction of the free-flight baseline `(q + S p/m, p)`.
This notebook trains the tiny recipe for a few seconds; `training/al-emt.yaml` is the real one
(`flashmd train training/al-emt.yaml`, or `torchrun ... -m flashmd.cli train ...` on GPUs).""",
        ),
        ("code", SETUP),
        (
            "code",
            """\
from flashmd.data.generate import generate
from flashmd.data.recipes import load_recipe

store_path = str(WORK / "al-emt-tiny.zarr")
generate(load_recipe(ROOT / "data" / "al-emt-tiny.yaml"), store_path, progress=False)""",
        ),
        (
            "code",
            """\
from flashmd.train.config import load_train_config

config = load_train_config(ROOT / "training" / "tiny.yaml").model_copy(
    update={"store": store_path, "output": str(WORK / "run"), "steps": 60, "validate_every": 20})
config.model_dump()""",
        ),
        (
            "code",
            """\
from flashmd.train.trainer import Trainer

trainer = Trainer(config)
metrics = trainer.run()
trainer.close()""",
        ),
        (
            "code",
            """\
from flashmd.train.validation import format_metrics

print(format_metrics(metrics, config.strides_fs))""",
        ),
        (
            "md",
            "The run directory holds the metrics as CSV, the resumable state and the best model:",
        ),
        (
            "code",
            """\
import csv
import matplotlib.pyplot as plt

with open(WORK / "run" / "train.csv") as f:
    rows = list(csv.DictReader(f))
steps = [int(r["step"]) for r in rows]
fig, ax = plt.subplots(figsize=(6, 3.5))
for term in ("predictor", "energy", "forces"):
    ax.semilogy(steps, [float(r[f"loss_{term}"]) for r in rows], label=term)
ax.set(xlabel="step", ylabel="normalised loss")
ax.legend()
wait = sum(float(r["data_wait_s"]) for r in rows) / sum(float(r["step_s"]) for r in rows)
print(f"time waiting for data: {100 * wait:.1f} % of step time")
sorted(p.name for p in (WORK / "run").iterdir())""",
        ),
        (
            "md",
            """\
## Use the trained model

`flashmd.load_model` takes a path or a shipped name. The model checks species, strides and
masses, and predicts one stride for a batch of any number of systems.""",
        ),
        (
            "code",
            """\
import flashmd
from flashmd.data.store import TrajectoryStore

model = flashmd.load_model(WORK / "run" / "best.pt", device="cpu")
print(model.strides_fs, model.species, model.cutoff)
atoms = TrajectoryStore.open(store_path)[TrajectoryStore.open(store_path).ids()[0]].to_atoms(0)
positions, momenta = model.predict(model.make_batch(atoms, stride_fs=32.0))
positions.shape, momenta.shape""",
        ),
        (
            "code",
            """\
try:
    model.make_batch(atoms, stride_fs=20.0)
except ValueError as error:
    print(error)""",
        ),
    ],
}


def build() -> None:
    for name, cells in NOTEBOOKS.items():
        notebook = nbformat.v4.new_notebook()
        notebook.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        notebook.cells = [
            nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
            for kind, src in cells
        ]
        nbformat.write(notebook, HERE / name)


if __name__ == "__main__":
    build()
