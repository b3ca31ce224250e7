"""Training benchmarks (``flashmd bench train-memory``): peak memory against store size.

Two stores of the same Al EMT trajectories, one with ``factor`` times more of them, are each trained
for the same number of steps in a fresh process (no loader workers, so all memory is in that one
process); then the small store again with an extra store of many short trajectories, as the
labels of ``flashmd learn`` grow over its iterations (``extra_stores``). The table shows each
process's peak resident memory.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from flashmd.data.generate import generate
from flashmd.data.recipes import parse_recipe


def _recipe(replicas: int, production_fs: float = 4000.0) -> dict:
    return {
        "name": f"memory-bench-{replicas}-{production_fs:g}",
        "seed": 0,
        "calculator": {"name": "asap3-emt"},
        "systems": [{"builder": "crystal", "element": "Al", "supercell": [3, 3, 3]}],
        "temperatures_K": [700],
        "replicas": replicas,
        "timestep_fs": 2.0,
        "sample_interval_fs": 8.0,
        "equilibration_fs": 40.0,
        "production_fs": production_fs,
    }


def train_child(config_json: str) -> None:
    """Train as configured, then print the process's peak RSS in MiB (run in a fresh process)."""
    from flashmd.train.config import TrainConfig
    from flashmd.train.trainer import Trainer

    trainer = Trainer(TrainConfig.model_validate_json(config_json), progress=False)
    trainer.run()
    print(
        json.dumps(
            {
                "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "pairs": len(trainer.train_data),
            }
        )
    )


def bench_train_memory(base_trajectories: int = 4, factor: int = 20, steps: int = 40) -> str:
    """Peak RSS of training on a store, on one ``factor`` times larger, and on the first with
    an extra store of ``10 * factor * base_trajectories`` continuation-long (96 fs) ones."""
    rows = [("store", "trajectories", "frames", "training pairs", "peak RSS MiB", "ratio")]
    peaks: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        base = str(folder / f"s{base_trajectories}.zarr")
        runs = [
            (base, (), base_trajectories, 4000.0),
            (str(folder / "large.zarr"), (), base_trajectories * factor, 4000.0),
            (base, (str(folder / "labels.zarr"),), 10 * factor * base_trajectories, 96.0),
        ]
        for k, (store, extra, count, production) in enumerate(runs):
            location = extra[0] if extra else store
            report = generate(
                parse_recipe(_recipe(count, production)), location, workers=2, progress=False
            )
            result = _train(_config(store, extra, folder / f"run{k}", steps))
            peaks.append(result["peak_rss_MiB"])
            name = Path(store).name + "".join(f" + {Path(e).name}" for e in extra)
            rows.append(
                (
                    name,
                    str(count),
                    str(report.frames_written),
                    str(result["pairs"]),
                    f"{peaks[-1]:.0f}",
                    f"{peaks[-1] / peaks[0]:.3f}",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    header = (
        f"training peak memory vs store size: {steps} steps, tiny models, batch 4, "
        "no loader workers, Al 108 atoms (third row: short trajectories as an extra store)"
    )
    return header + "\n" + "\n".join(lines)


def _config(store: str, extra: tuple[str, ...], output: Path, steps: int):
    from flashmd.train.config import TrainConfig

    return TrainConfig(
        name="memory",
        store=store,
        extra_stores=extra,
        output=str(output),
        strides_fs=(16.0, 32.0, 64.0),
        validation=0.25,
        predictor={"preset": "tiny"},
        energy_model={"preset": "tiny"},
        batch_size=4,
        steps=steps,
        warmup_steps=5,
        validate_every=steps,
        checkpoint_every=steps,
        val_pairs=16,
        stats_pairs=64,
        num_workers=0,
    )


def _train(config) -> dict:
    """Peak RSS and training pairs of training ``config`` in a fresh process."""
    code = (
        "import sys; from flashmd.bench.train_memory import train_child; train_child(sys.argv[1])"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, config.model_dump_json()],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])
