"""Faults tried as a user would: kill -9 at random points, resume, compare; then bad input.

For each long command (``generate``, ``md``, ``train``, ``learn``) one uninterrupted run is the
reference;
then, ``--kills`` times, the same command is started afresh, killed with SIGKILL after a random
part of the reference's wall time, and run again to the end. Each kill reports what survived
(committed frames, or saved training steps), how many seconds of work it lost (kill time minus
the last commit, at most ``--commit-every-s`` plus one frame), and whether the finished result
equals the reference bit for bit. Then every bad input named in issue 18 is fed to the command
line, which must refuse it (exit 2) with one line saying what is wrong. Prints markdown tables.

    python scripts/faults.py --kills 10     # about 75 minutes on a loaded core (learn: 40)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
FLASHMD = [sys.executable, "-m", "flashmd.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(args: list[str], kill_after_s: float | None = None) -> tuple[int, float, str]:
    """(exit code, kill time or end time as time.time(), stderr's last line)."""
    process = subprocess.Popen(
        FLASHMD + args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if kill_after_s is not None:
        try:
            process.wait(timeout=kill_after_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
    _, err = process.communicate()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return process.returncode, time.time(), lines[-1] if lines else ""


def arrays(location: Path) -> dict[str, np.ndarray]:
    from flashmd.data.store import TrajectoryStore

    store = TrajectoryStore.open(location)
    found = {}
    for traj_id in store.ids():
        reader = store[traj_id]
        for key, value in reader.read().items():
            found[f"{traj_id}/{key}"] = value
    return found


def committed(location: Path) -> tuple[int, float]:
    """(frames committed over all trajectories, time of the latest commit)."""
    from flashmd.data.store import TrajectoryStore

    if not (location / "zarr.json").exists():
        return 0, 0.0
    store = TrajectoryStore.open(location)
    frames = sum(store[t].n_frames for t in store.ids())
    stamps = [
        (location / "trajectories" / t / "zarr.json").stat().st_mtime
        for t in store.ids()
        if store[t].n_frames
    ]
    return frames, max(stamps, default=0.0)


def kill_and_resume(name, start, output: Path, reference: Path, kills, rng, read) -> list[dict]:
    """One row per kill: ``start(folder, kill_after_s)`` runs the command into ``folder`` (the
    reference into ``reference``, uninterrupted), ``read(folder)`` gives its finished result as
    arrays, and :func:`progress` what a killed run kept."""
    began = time.time()
    code, ended, err = start(reference, None)
    assert code == 0, f"{name}: the uninterrupted run failed: {err}"
    full_s = ended - began
    expected = read(reference)
    rows = []
    for k in range(kills):
        shutil.rmtree(output, ignore_errors=True)
        delay = float(rng.uniform(0.15, 0.95)) * full_s
        began = time.time()
        _, killed_at, _ = start(output, delay)
        kept, last_commit = progress(output)
        lost_s = killed_at - (last_commit or began)
        code, _, err = start(output, None)
        same = code == 0 and _equal(read(output), expected)
        rows.append(
            {
                "command": name,
                "kill": k + 1,
                "killed after s": f"{delay:.1f}",
                "kept": kept,
                "work lost s": f"{lost_s:.1f}",
                "resumed": "exit 0" if code == 0 else f"exit {code}: {err}",
                "bit for bit": "yes" if same else "NO",
            }
        )
    return rows


def progress(output: Path) -> tuple[str, float]:
    """(what a killed run kept, time of its last commit or checkpoint; 0 when none)."""
    if (output / "zarr.json").exists():
        frames, stamp = committed(output)
        return f"{frames} frames", stamp
    state = output / "state.pt"
    if state.exists():
        return f"step {_steps(output)}", state.stat().st_mtime
    learning = output / "learn.json"
    if learning.exists():
        where = json.loads(learning.read_text())
        return f"iteration {where['iteration']} {where['phase']}", learning.stat().st_mtime
    return "nothing", 0.0


def _equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def _steps(run_folder: Path) -> int:
    try:
        import torch

        return int(torch.load(run_folder / "state.pt", weights_only=False)["step"])
    except FileNotFoundError:
        return 0


def trained(run_folder: Path) -> dict[str, np.ndarray]:
    import torch

    state = torch.load(run_folder / "last.pt", weights_only=True)
    found = {
        f"{part}/{name}": value.numpy()
        for part, model in state["models"].items()
        for name, value in model["state_dict"].items()
    }
    losses = np.loadtxt(run_folder / "train.csv", delimiter=",", skiprows=1, usecols=(3, 4, 5))
    return {**found, "losses": losses}


def bad_inputs(folder: Path, model: str) -> list[dict]:
    """Each bad input of issue 18 and what the command line says about it."""
    import ase.io
    from ase import Atoms
    from ase.build import bulk

    def structure(name: str, atoms: Atoms) -> str:
        path = folder / f"{name}.xyz"
        ase.io.write(path, atoms)
        return str(path)

    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    squeezed = cu.copy()
    squeezed.positions[1] = squeezed.positions[0] + [0.3, 0, 0]
    iron = bulk("Fe", "bcc", a=2.87, cubic=True).repeat((2, 2, 2))
    nan = cu.copy()
    nan.positions[3, 0] = np.nan
    lonely = Atoms("Cu", positions=[[5, 5, 5]], cell=[10] * 3, pbc=False)
    (folder / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "empty.pt").write_bytes(b"")
    import torch

    data = torch.load(REPO / "flashmd" / "pretrained" / "emt-metals.pt", weights_only=True)
    data["format_version"] = 99
    torch.save(data, folder / "future.pt")
    corrupt = folder / "corrupt.zarr"
    corrupt.mkdir(exist_ok=True)
    (corrupt / "zarr.json").write_text("{ not json")
    foreign = folder / "foreign"
    foreign.mkdir(exist_ok=True)
    (foreign / "notes.txt").write_text("my data")

    def md(source: str, model_name: str = model, stride: str = "32", out: str = "") -> list[str]:
        out = out or str(folder / f"bad-{time.time_ns()}.zarr")
        return ["md", source, "--model", model_name, "--stride-fs", stride, "--strides", "2",
                "-o", out]  # fmt: skip

    cu_file = structure("cu", cu)
    cases = {
        "wrong species (Fe for emt-metals)": md(structure("iron", iron)),
        "overlapping atoms (0.3 Å)": md(structure("squeezed", squeezed)),
        "NaN in positions": md(structure("nan", nan)),
        "one atom, no periodic cell": md(structure("lonely", lonely)),
        "wrong stride (20 fs)": md(cu_file, stride="20"),
        "random bytes as a model": md(cu_file, str(folder / "random.pt")),
        "empty model file": md(cu_file, str(folder / "empty.pt")),
        "checkpoint of another format version": md(cu_file, str(folder / "future.pt")),
        "corrupt store (zarr.json not JSON)": ["inspect", str(corrupt)],
        "foreign directory as output": md(cu_file, out=str(foreign)),
    }
    rows = []
    for name, args in cases.items():
        code, _, err = run(args)
        rows.append({"bad input": name, "exit": code, "message": err[:160]})
    return rows


def table(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(row[h]) for h in head) + " |" for row in rows]
    return "\n".join(lines)


def learned(run_folder: Path) -> dict[str, np.ndarray]:
    """A learning run's result: its final model (weights, losses) and every store it wrote
    (explorations, labels, held-out rollouts)."""
    checkpoint = Path(json.loads((run_folder / "learn.json").read_text())["checkpoint"])
    if not checkpoint.is_absolute() and not checkpoint.exists():
        checkpoint = run_folder / checkpoint
    found = {f"model/{key}": value for key, value in trained(checkpoint.parent).items()}
    for store in sorted(run_folder.rglob("*.zarr")):
        name = store.relative_to(run_folder)
        found.update({f"{name}/{key}": value for key, value in arrays(store).items()})
    return found


def learn_recipe(folder: Path, store: Path) -> dict:
    """A two-iteration learning recipe on the tiny Al store, from a model trained for 6 steps."""
    base = yaml.safe_load((REPO / "training" / "tiny.yaml").read_text())
    base.update(store=str(store), steps=6, validate_every=6)
    (folder / "learn-base.yaml").write_text(yaml.safe_dump(base))
    run(["train", str(folder / "learn-base.yaml"), "--output", str(folder / "learn-base")])
    return {
        "name": "faults-learn",
        "model": str(folder / "learn-base" / "best.pt"),
        "train": str(folder / "learn-base.yaml"),
        "iterations": 2,
        "explore": [{"temperature_K": 600, "stride_fs": 32, "strides": 16, "every": 2}],
        "select": {"reference_calls": 60, "min_gap_fs": 64, "tail_fs": 8},
        "retrain": {"steps": 4, "validate_every": 2, "warmup_steps": 1},
        "heldout": {
            "reference": str(store),
            "conditions": [{"temperature_K": 900, "stride_fs": 32, "strides": 8}],
        },
        "device": "cpu",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kills per command")
    parser.add_argument("--commit-every-s", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    parser.add_argument(
        "--commands", default="generate,md,train,learn,bad", help="which parts to run (comma list)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="flashmd-faults-"))
    folder.mkdir(parents=True, exist_ok=True)
    every = ["--commit-every-s", str(args.commit_every_s), "--quiet"]

    def into(command: list[str]):
        return lambda out, kill_after_s: run([*command, "-o", str(out)], kill_after_s)

    recipe = yaml.safe_load((REPO / "data" / "al-emt-tiny.yaml").read_text())
    recipe.update(production_fs=20000, name="faults")
    (folder / "faults.yaml").write_text(yaml.safe_dump(recipe))
    generate = into(["generate", str(folder / "faults.yaml"), *every])
    wanted = set(args.commands.split(","))
    rows = []
    if "generate" in wanted:
        rows += kill_and_resume(
            "generate", generate, folder / "gen.zarr", folder / "gen-ref.zarr", args.kills, rng,
            arrays,
        )  # fmt: skip

    import ase.io
    from ase.build import bulk

    ase.io.write(folder / "cu.xyz", bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3)))
    md = into(["md", str(folder / "cu.xyz"), "--model", "emt-metals", "--stride-fs", "32",
               "--strides", "600", "--ensemble", "langevin", "--temperature-K", "900",
               "--threads", "1", *every])  # fmt: skip
    if "md" in wanted:
        rows += kill_and_resume(
            "md", md, folder / "md.zarr", folder / "md-ref.zarr", args.kills, rng, arrays
        )

    store = folder / "tiny.zarr"
    if wanted & {"train", "learn"}:
        run(["generate", str(REPO / "data" / "al-emt-tiny.yaml"), "-o", str(store), "--quiet"])
    recipe = yaml.safe_load((REPO / "training" / "tiny.yaml").read_text())
    recipe.update(store=str(store), steps=60, checkpoint_every=5, validate_every=30)
    (folder / "train.yaml").write_text(yaml.safe_dump(recipe))

    def train(out: Path, kill_after_s: float | None):
        resume = ["--resume"] if (out / "state.pt").exists() else []
        command = ["train", str(folder / "train.yaml"), "--output", str(out), "--quiet"]
        return run([*command, "--threads", "1", *resume], kill_after_s)

    if "train" in wanted:
        rows += kill_and_resume(
            "train", train, folder / "train-run", folder / "train-ref", args.kills, rng, trained
        )
    if "learn" in wanted:
        learning = learn_recipe(folder, store)

        def learn(out: Path, kill_after_s: float | None):
            recipe = out.parent / f"{out.name}.yaml"
            recipe.write_text(yaml.safe_dump({**learning, "output": str(out)}))
            return run(["learn", str(recipe), "--quiet", "--threads", "1"], kill_after_s)

        rows += kill_and_resume(
            "learn", learn, folder / "learn-run", folder / "learn-ref", args.kills, rng, learned
        )
    if rows:
        print(table(rows))
        print()
    if "bad" in wanted:
        print(table(bad_inputs(folder, "emt-metals")))
    summary = {"kills": len(rows), "bit_for_bit": sum(r["bit for bit"] == "yes" for r in rows)}
    print()
    print(json.dumps(summary))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
