"""``flashmd bench evaluate``: wall time and peak memory of ``flashmd evaluate``.

Two synthetic stores (an Einstein crystal of fcc Al: every atom oscillates harmonically about its
lattice site with a random frequency of 3-8 THz and a canonical amplitude; the rollout store also
gets filter statistics) are written with the store writer, then the evaluation runs in a fresh
process so that its peak resident memory is its own. Two store lengths show whether memory grows
with the length of the stores (it should not: they are read block by block).
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from ase.build import bulk

from flashmd.analysis.render import Table, to_text
from flashmd.data.store import COMPRESSOR, TrajectoryStore
from flashmd.units import FS, KB


def einstein_frames(
    n_atoms_per_side: int,
    frames: int,
    dt_fs: float,
    temperature_K: float,
    seed: int,
    block: int = 512,
) -> Iterator[dict[str, np.ndarray]]:
    """Blocks of frames of an Einstein crystal of fcc Al: positions (n, N, 3) Å, momenta
    (n, N, 3) ASE units, cell (n, 3, 3) Å, energy (n,) eV (harmonic potential), time_fs (n,)."""
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat(n_atoms_per_side)
    rng = np.random.default_rng(seed)
    shape = (len(atoms), 3)
    masses = atoms.get_masses()[:, None]
    omega = 2 * np.pi * rng.uniform(3e-3, 8e-3, shape) / FS  # rad per ASE time (3-8 THz)
    energy = rng.exponential(KB * temperature_K, shape)  # canonical energy of every oscillator
    amplitude = np.sqrt(2 * energy / (masses * omega**2))
    phase = rng.uniform(0, 2 * np.pi, shape)
    for start in range(0, frames, block):
        time_fs = np.arange(start, min(start + block, frames)) * dt_fs
        angle = omega[None] * (time_fs[:, None, None] * FS) + phase[None]
        displacement = amplitude * np.cos(angle)
        yield {
            "positions": atoms.positions[None] + displacement,
            "momenta": -masses * amplitude * omega * np.sin(angle),
            "cell": np.broadcast_to(atoms.cell.array, (time_fs.size, 3, 3)),
            "energy": 0.5 * np.sum(masses * omega**2 * displacement**2, axis=(1, 2)),
            "time_fs": time_fs,
        }


def write_einstein_store(
    location: str | Path,
    frames: int,
    n_atoms_per_side: int = 3,
    dt_fs: float = 8.0,
    temperature_K: float = 700.0,
    seed: int = 0,
    filter_stats: bool = False,
    fallback_every: int = 1000,
) -> None:
    """One Einstein-crystal trajectory ``"einstein"`` into a new store at ``location``.

    With ``filter_stats`` the rollout arrays ``filter_scale`` (1 ± 1e-4) and
    ``filter_fallback`` (a fallback every ``fallback_every`` frames) are added.
    """
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat(n_atoms_per_side)
    store = TrajectoryStore.create(location, {"name": f"einstein-{seed}"})
    attrs = {
        "ensemble": "nve",
        "temperature_K": temperature_K,
        "sample_interval_fs": dt_fs,
        "timestep_fs": dt_fs,
        "pbc": [True] * 3,
        "calculator": {"name": "einstein"},
    }
    writer = store.writer("einstein", atoms.numbers, atoms.get_masses(), attrs, False, frames)
    for block in einstein_frames(n_atoms_per_side, frames, dt_fs, temperature_K, seed):
        for k in range(block["time_fs"].size):
            writer.append({key: value[k] for key, value in block.items()})
    writer.close(complete=True)
    if filter_stats:
        rng = np.random.default_rng(seed + 1)
        stats = {
            "filter_scale": 1.0 + 1e-4 * rng.standard_normal(frames),
            "filter_fallback": (np.arange(frames) % fallback_every == fallback_every - 1).astype(
                np.float64
            ),
        }
        for name, values in stats.items():
            writer.group.create_array(
                name,
                data=values,
                chunks=(writer.chunk,),
                compressors=COMPRESSOR,
                dimension_names=("frame",),
            )


def _evaluate_child(reference: str, rollout: str, out: str, results: mp.Queue) -> None:
    started = time.perf_counter()
    from flashmd.analysis.report import evaluate

    report = evaluate(reference, rollout, out)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    factor = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    results.put((wall, peak * factor, report.passed))


def _run_isolated(reference: str, rollout: str, out: str) -> tuple[float, int, bool]:
    context = mp.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_evaluate_child, args=(reference, rollout, out, results))
    process.start()
    outcome = results.get()
    process.join()
    return outcome


def bench_evaluate(frames: int = 10_000, n_atoms_per_side: int = 3) -> str:
    """Table of wall time and peak RSS of ``evaluate`` on two stores of ``frames`` frames (and
    of a quarter as many), 4 n^3 atoms each."""
    n_atoms = 4 * n_atoms_per_side**3
    rows = [
        ("frames per store", "atoms", "store MB", "write s", "evaluate s", "peak RSS MB", "verdict")
    ]
    with tempfile.TemporaryDirectory(prefix="flashmd-bench-evaluate-") as tmp:
        for n in (max(2, frames // 4), frames):
            ref, run = f"{tmp}/ref-{n}.zarr", f"{tmp}/run-{n}.zarr"
            started = time.perf_counter()
            write_einstein_store(ref, n, n_atoms_per_side, seed=0)
            write_einstein_store(run, n, n_atoms_per_side, seed=1, filter_stats=True)
            written = time.perf_counter() - started
            stored = sum(TrajectoryStore.open(s).nbytes()[1] for s in (ref, run))
            wall, peak, passed = _run_isolated(ref, run, f"{tmp}/report-{n}")
            rows.append(
                (
                    str(n),
                    str(n_atoms),
                    f"{stored / 1e6:.0f}",
                    f"{written:.1f}",
                    f"{wall:.1f}",
                    f"{peak / 2**20:.0f}",
                    "pass" if passed else "fail",
                )
            )
    table = to_text(Table(rows[0], rows[1:]), right_align=True)
    note = (
        "evaluate s: one process, from start (imports included) to the report written; "
        "peak RSS: that process's maximum resident set"
    )
    return f"{table}\n{note}"
