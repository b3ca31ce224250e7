"""Generate the reference trajectories of a recipe into a store, in parallel and resumably.

Each trajectory is written by exactly one process. ``shard=(i, n)`` keeps the trajectories whose
index is ``i`` modulo ``n``, so independent jobs (a cluster job array) can fill one shared store.
Re-running skips complete trajectories and resumes partial ones from their last committed frame.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from flashmd.data.calculators import check_same_weights
from flashmd.data.recipes import Recipe, RecipeError, TrajectoryTask
from flashmd.data.reference import prepare, run_trajectory, trajectory_steps
from flashmd.data.store import COMMIT_INTERVAL_S, TrajectoryStore
from flashmd.termination import note_termination, terminated


@dataclass
class GenerateReport:
    """What a call of :func:`generate` did."""

    trajectories: int
    skipped: int
    frames_written: int
    wall_time_s: float
    claimed_elsewhere: int = 0
    """Trajectories left to another writer that holds them (:mod:`flashmd.data.claims`)."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return index, count


def select_tasks(recipe: Recipe, shard: tuple[int, int] = (0, 1)) -> list[TrajectoryTask]:
    index, count = shard
    return [task for task in recipe.tasks() if task.index % count == index]


def preflight(recipe: Recipe, tasks: list[TrajectoryTask]) -> None:
    """Build one instance of every system and evaluate its energy once, so that a bad element,
    an overlapping structure or a failing calculator stops the run before anything is written."""
    seen: set[int] = set()
    for task in tasks:
        if task.system_index in seen:
            continue
        seen.add(task.system_index)
        label = f"systems.{task.system_index}"
        atoms, _, _ = prepare(recipe, task)
        try:
            atoms.get_potential_energy()
        except Exception as error:
            raise RecipeError(
                f"{label} ({atoms.get_chemical_formula()}): calculator {recipe.calculator.name} "
                f"failed on it: {type(error).__name__}: {error}"
            ) from None


_progress_queue: mp.Queue | None = None
_stop_event = None


def _init_worker(progress: mp.Queue, stop) -> None:
    """Workers ignore Ctrl-C: the parent asks them to stop through ``stop`` instead, so each one
    commits its buffered frames and returns rather than dying mid-write. ``SIGTERM`` sent to
    the worker itself (a scheduler signals every process of a job) stops it the same way."""
    global _progress_queue, _stop_event
    _progress_queue, _stop_event = progress, stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    note_termination()
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _report_or_stop(amount: int) -> None:
    assert _progress_queue is not None and _stop_event is not None
    _progress_queue.put(amount)
    if terminated() or _stop_event.is_set():
        raise KeyboardInterrupt


def _run_in_worker(run: Callable[..., int], job: tuple[Any, ...]) -> int:
    try:
        return run(*job, on_progress=_report_or_stop)
    except KeyboardInterrupt:
        return 0


def check_workers(location: str, workers: int) -> None:
    """Raise ValueError for fewer than one worker, or several on a store they cannot share."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers > 1 and location.startswith("memory://"):
        raise ValueError(
            f"{location} is an in-memory store, which worker processes cannot share; "
            "use --workers 1 or write to a path or object-storage URL"
        )


def generate(
    recipe: Recipe,
    location: str,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    commit_interval_s: float | None = COMMIT_INTERVAL_S,
) -> GenerateReport:
    """Generate (or complete) the recipe's trajectories of one shard into the store at ``location``,
    committing every chunk and at least every ``commit_interval_s`` seconds (None: per chunk).

    Raises:
        RecipeError: a system or the calculator is unusable (nothing is written).
        StoreError: ``location`` holds something else, or a store from another recipe.
    """
    check_workers(location, workers)
    started = time.perf_counter()
    tasks = select_tasks(recipe, shard)
    preflight(recipe, tasks)
    store = TrajectoryStore.create(location, recipe.stored())
    check_same_weights(recipe.calculator, store)
    done = {tid for tid in store.ids() if store[tid].status == "complete"}
    todo = [task for task in tasks if task.id not in done]
    # the bar counts MD steps of the reference (its cost), equilibration included: with an
    # expensive MLIP a long equilibration would otherwise hold a frame bar still for many minutes
    total = sum(trajectory_steps(recipe, task) for task in tasks)
    left = sum(trajectory_steps(recipe, task) for task in todo)
    committed = sum(
        trajectory_steps(recipe, t, store[t.id].n_frames) for t in todo if t.id in store
    )
    bar = tqdm(
        total=total,
        initial=total - left + committed,
        unit="step",
        desc=recipe.name,
        disable=not progress,
        smoothing=0.05,
    )
    written = 0
    try:
        if workers == 1 or len(todo) <= 1:
            for task in todo:
                written += run_trajectory(recipe, task, location, commit_interval_s, bar.update)
        else:
            jobs = [(recipe, task, location, commit_interval_s) for task in todo]
            written = run_pool(run_trajectory, jobs, workers, bar)
    finally:
        bar.close()
    store = TrajectoryStore.open(location)
    elsewhere = [t for t in todo if t.id not in store or store[t.id].status != "complete"]
    return GenerateReport(
        len(tasks),
        len(tasks) - len(todo),
        written,
        time.perf_counter() - started,
        claimed_elsewhere=len(elsewhere),
    )


def run_pool(
    run: Callable[..., int], jobs: Sequence[tuple[Any, ...]], workers: int, bar: tqdm
) -> int:
    """Call ``run(*job, on_progress=...)`` for every job in ``min(workers, len(jobs))`` spawned
    processes and return the sum of what the calls return (frames written).

    ``run`` must be a picklable (module-level) function that reports its progress (in the unit
    of ``bar``) through ``on_progress``; the reports advance ``bar``. On an error or Ctrl-C in
    the parent, the workers are asked to stop: the next report raises ``KeyboardInterrupt`` in
    them, so a run that writes through a :class:`~flashmd.data.store.TrajectoryWriter` commits
    its frames and returns.
    """
    context = mp.get_context("spawn")
    progress: mp.Queue = context.Queue()
    stop = context.Event()
    written = 0
    with ProcessPoolExecutor(
        min(workers, len(jobs)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(progress, stop),
    ) as pool:
        pending: set[Future] = {pool.submit(_run_in_worker, run, job) for job in jobs}
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(progress, bar)
                for future in finished:
                    written += future.result()
        except BaseException:
            stop.set()  # running trajectories commit what they hold and return
            for future in pending:
                future.cancel()
            raise
        _drain(progress, bar)
    return written


def _drain(progress: mp.Queue, bar: tqdm) -> None:
    while True:
        try:
            bar.update(progress.get_nowait())
        except queue.Empty:
            return
