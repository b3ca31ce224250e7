"""Run a batched state for many strides, optionally writing frames to a trajectory store.

:func:`rollout` is the loop used by the ``flashmd md`` command, the benchmark and notebooks: the
state stays on its device, and only frames that are written go to NumPy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from flashmd.md.metropolis import MetropolisStepper
from flashmd.md.output import RolloutWriter
from flashmd.md.state import MDState
from flashmd.md.stepper import Stepper, StrideStats


@dataclass(frozen=True)
class RolloutReport:
    """What a call of :func:`rollout` did.

    Attributes:
        strides: strides taken now; fallbacks: system-strides the energy filter rejected;
        rebuilds: neighbour-list builds; frames: frames written now; wall_time_s: seconds;
        verlet_fallbacks: rejected (sub-)strides that needed velocity Verlet (the others were
        repaired by half strides, see :class:`~flashmd.md.filters.FilterConfig`);
        solver_iterations: evaluations of the generating function's gradient summed over
        system-strides (symplectic strides; 0 for direct ones);
        declined: system-strides the adaptive stride took as half strides;
        effective_stride_fs: simulated time per predicted (sub-)stride (the stride itself
        without adaptive strides or fallbacks).
        acceptance_rate: system-strides a Metropolis chain accepted over those it proposed
        (:mod:`flashmd.md.metropolis`; NaN for other steppers).
    """

    strides: int
    fallbacks: int
    rebuilds: int
    frames: int
    wall_time_s: float
    verlet_fallbacks: int = 0
    solver_iterations: int = 0
    declined: int = 0
    effective_stride_fs: float = float("nan")
    acceptance_rate: float = float("nan")

    def mean_solver_iterations(self, n_systems: int) -> float:
        """Solver iterations per system-stride (NaN when no stride was taken)."""
        taken = self.strides * n_systems
        return self.solver_iterations / taken if taken else float("nan")


def _effective_stride(stride_fs: float, strides: int, n_systems: int, predictions: int) -> float:
    """fs of simulated time per system (sub-)stride the propagator predicted: ``strides``
    strides of ``n_systems`` systems took ``predictions`` predictions (NaN: none)."""
    return stride_fs * strides * n_systems / predictions if predictions else float("nan")


def initial_stats(stepper: Stepper, state: MDState) -> StrideStats:
    """Statistics recorded with frame 0: scale 1, no fallback, ``V`` of the initial state."""
    ones = torch.ones_like(state.target_energy)
    return StrideStats(
        ones, torch.zeros_like(ones, dtype=torch.bool), stepper.potential_energy(state)
    )


def rollout(
    stepper: Stepper,
    state: MDState,
    n_frames: int,
    every: int = 1,
    writer: RolloutWriter | None = None,
    on_frame: Callable[[int], None] = lambda n: None,
    probe: Callable[[MDState], dict[str, torch.Tensor]] | None = None,
) -> tuple[MDState, RolloutReport]:
    """Advance ``state`` until ``n_frames`` frames (frame 0 = the initial state) exist.

    Args:
        stepper: how to take one stride.
        state: the initial state (ignored in favour of the stored one when ``writer`` resumes).
        n_frames: frames in total, every ``every`` strides, including frame 0.
        every: strides between frames.
        writer: where frames go (None: nowhere; frames are then only counted).
        on_frame: called with 1 after each frame (progress bars).
        probe: per-atom values (A,) of each written state, by name (the writer's
            ``atom_arrays``, e.g. the stride uncertainty of :mod:`flashmd.md.consistency`).

    Returns:
        The final state and a report.
    """
    if n_frames < 1 or every < 1:
        raise ValueError(f"need n_frames >= 1 and every >= 1, got {n_frames}, {every}")
    started = time.perf_counter()
    measure: Callable[[MDState], dict[str, torch.Tensor] | None] = probe or (lambda state: None)
    strides, fallbacks, rebuilds = stepper.strides, stepper.fallbacks, stepper.rebuilds
    verlet, declined = stepper.verlet_fallbacks, stepper.declined
    predictions = stepper.predictions
    chain = stepper if isinstance(stepper, MetropolisStepper) else None
    proposed, accepted_before = (chain.proposals, chain.accepted) if chain else (0, 0)
    done = 0 if writer is None else writer.n_frames
    if writer is not None:
        state = writer.resume_state(state)
    state = stepper.prepare(state)
    written, solver_iterations = 0, 0.0
    if done == 0:
        if writer is not None:
            writer.append(state, initial_stats(stepper, state), 0.0, atom_values=measure(state))
        written, done = 1, 1
        on_frame(1)
    for frame in range(done, n_frames):
        iterations = torch.zeros_like(state.target_energy)
        accepted: torch.Tensor | None = None
        for _ in range(every):
            state, stats = stepper.step(state)
            if stats.iterations is not None:
                iterations = iterations + stats.iterations
            if stats.accepted is not None:
                accepted = (0.0 if accepted is None else accepted) + stats.accepted / every
        solver_iterations += float(iterations.sum())
        if writer is not None:
            time_fs = frame * every * stepper.stride_fs
            values = measure(state)
            writer.append(state, stats, time_fs, iterations, values, accepted=accepted)
        written += 1
        on_frame(1)
    report = RolloutReport(
        strides=stepper.strides - strides,
        fallbacks=stepper.fallbacks - fallbacks,
        rebuilds=stepper.rebuilds - rebuilds,
        frames=written,
        wall_time_s=time.perf_counter() - started,
        verlet_fallbacks=stepper.verlet_fallbacks - verlet,
        solver_iterations=round(solver_iterations),
        declined=stepper.declined - declined,
        effective_stride_fs=_effective_stride(
            stepper.stride_fs,
            stepper.strides - strides,
            state.n_systems,
            stepper.predictions - predictions,
        ),
        acceptance_rate=(
            (chain.accepted - accepted_before) / max(1, chain.proposals - proposed)
            if chain
            else float("nan")
        ),
    )
    return state, report
