"""Rollout frames into a trajectory store (reference schema) plus per-frame filter statistics.

Each system of a batched state is one trajectory. Besides the schema's arrays (positions,
momenta, cell, energy = ``V(q)`` of the energy model, time_fs), every trajectory gets four
per-frame arrays (float64, dimension ``frame``), written before the frame count is committed so
every trusted frame has them:

    filter_scale       energy-filter factor α of the stride that produced the frame (1 at frame 0)
    filter_fallback    1.0 if the filter rejected that stride and it was redone, else 0.0
    target_energy      eV, the total energy the filter conserves after that stride
    solver_iterations  evaluations of the generating function's gradient that stride took
                       (symplectic strides; summed over the strides between frames and over a
                       redone stride's half strides), 0 for direct strides and at frame 0
    stride_declined    1.0 if the adaptive stride declined that stride as unsure and took it
                       as half strides, else 0.0
    stride_accepted    fraction of the strides since the previous frame that the Metropolis
                       test accepted (``--ensemble metropolis``, :mod:`flashmd.md.metropolis`);
                       1.0 for ensembles without one (every stride is kept) and at frame 0

A rollout run with ``uncertainty`` also gets a per-atom array (float64, dimensions ``frame``,
``atom``): ``uncertainty``, Å, the stride self-consistency of the stride that starts at the frame
(:mod:`flashmd.md.consistency`; the largest atom of a frame is that frame's summary).

The noise generator's state is committed with every block of frames (attribute ``rng_state``),
so an interrupted rollout resumes exactly where its last committed frame left it.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import zarr

from flashmd.data.store import (
    COMMIT_INTERVAL_S,
    COMPRESSOR,
    TrajectoryStore,
    TrajectoryWriter,
)
from flashmd.md.state import MDState
from flashmd.md.stepper import StrideStats
from flashmd.units import UNITS

#: Extra per-frame arrays of rollout trajectories.
STAT_ARRAYS = (
    "filter_scale",
    "filter_fallback",
    "target_energy",
    "solver_iterations",
    "stride_declined",
    "stride_accepted",
)
#: Optional per-atom, per-frame arrays of rollout trajectories (Å).
ATOM_ARRAYS = ("uncertainty",)
#: CF-style attributes of the rollout's own arrays (xarray shows them with the data).
ROLLOUT_ATTRIBUTES: dict[str, dict[str, str]] = {
    "filter_scale": {"long_name": "energy filter's momentum scale factor", "units": "1"},
    "filter_fallback": {"long_name": "stride redone (1) or not (0)", "units": "1"},
    "target_energy": {"long_name": "energy the filter conserves", "units": UNITS["energy"]},
    "solver_iterations": {"long_name": "symplectic solver iterations", "units": "1"},
    "stride_declined": {"long_name": "stride taken as half strides (1)", "units": "1"},
    "stride_accepted": {"long_name": "strides the Metropolis test accepted", "units": "1"},
    "uncertainty": {"long_name": "stride self-consistency", "units": UNITS["positions"]},
}


def encode_generator(generator: torch.Generator) -> str:
    """The generator's state as base64 text (JSON-safe)."""
    return base64.b64encode(generator.get_state().numpy().tobytes()).decode()


def restore_generator(generator: torch.Generator, text: str) -> None:
    """Inverse of :func:`encode_generator`."""
    data = np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy()
    generator.set_state(torch.from_numpy(data))


class RolloutWriter:
    """Writes a batched rollout: one trajectory per system of the state, in lockstep.

    Args:
        store: a writable trajectory store.
        ids: trajectory id of each system, in state order.
        attrs: provenance attributes of each trajectory.
        state: the initial state (numbers and masses are written from it).
        capacity: frames to allocate up front.
        atom_arrays: per-atom arrays (names of :data:`ATOM_ARRAYS`) given to every
            :meth:`append`.
        commit_interval_s: commit the frames at least this often, besides every full chunk
            (None: per chunk only); a killed rollout loses at most this much work.
    """

    def __init__(
        self,
        store: TrajectoryStore,
        ids: Sequence[str],
        attrs: Sequence[Mapping[str, Any]],
        state: MDState,
        capacity: int = 0,
        atom_arrays: Sequence[str] = (),
        commit_interval_s: float | None = COMMIT_INTERVAL_S,
    ) -> None:
        if len(ids) != state.n_systems or len(attrs) != state.n_systems:
            raise ValueError(f"need one id and attrs per system ({state.n_systems})")
        unknown = set(atom_arrays) - set(ATOM_ARRAYS)
        if unknown:
            raise ValueError(f"unknown per-atom arrays {sorted(unknown)}; known: {ATOM_ARRAYS}")
        self.atom_arrays = tuple(atom_arrays)
        self.store = store
        self.ids = list(ids)
        numbers, masses = state.numbers.cpu().numpy(), state.masses.cpu().numpy()
        self._slices = [
            slice(start, start + n)
            for start, n in zip(state.atom_offsets().tolist(), state.n_atoms.tolist(), strict=True)
        ]
        self.writers: list[TrajectoryWriter] = [
            store.writer(i, numbers[part], masses[part], a, False, capacity, commit_interval_s)
            for i, part, a in zip(self.ids, self._slices, attrs, strict=True)
        ]
        self._stats = [self._stat_arrays(w, capacity) for w in self.writers]
        self._atoms = [self._atom_arrays(w, capacity) for w in self.writers]
        for s, writer in enumerate(self.writers):  # statistics before the frame count
            writer.before_commit.append(functools.partial(self._flush_stats, s))
        self._buffers: list[list[np.ndarray]] = [[] for _ in self.writers]
        self._atom_buffers: list[list[np.ndarray]] = [[] for _ in self.writers]
        #: Frames every trajectory holds: the batch resumes from here.
        self.n_frames = min(w.n_frames for w in self.writers)
        for writer in self.writers:
            writer.n_frames = self.n_frames  # frames beyond are rewritten identically
        self._stats_written = [self.n_frames] * len(self.writers)

    @staticmethod
    def _stat_arrays(writer: TrajectoryWriter, capacity: int) -> dict[str, zarr.Array]:
        return {
            name: _array(writer, name, (capacity,), ("frame",), ROLLOUT_ATTRIBUTES[name])
            for name in STAT_ARRAYS
        }

    def _atom_arrays(self, writer: TrajectoryWriter, capacity: int) -> dict[str, zarr.Array]:
        n_atoms = int(writer.group["numbers"].shape[0])
        shape, dims = (capacity, n_atoms), ("frame", "atom")
        return {
            name: _array(writer, name, shape, dims, ROLLOUT_ATTRIBUTES[name])
            for name in self.atom_arrays
        }

    def resume_state(self, state: MDState) -> MDState:
        """``state`` set to the last committed frame (positions, momenta, target, noise)."""
        if self.n_frames == 0:
            return state
        index = self.n_frames - 1
        # the noise state committed with frame n_frames - 1 (by a trajectory that has no more)
        lagging = next(i for i in self.ids if self.store[i].n_frames == self.n_frames)
        restore_generator(state.generator, self.store[lagging].attrs["rng_state"])
        positions, momenta = state.positions.clone(), state.momenta.clone()
        target = state.target_energy.clone()
        for s, (traj_id, part) in enumerate(zip(self.ids, self._slices, strict=True)):
            reader = self.store[traj_id]
            frame = reader.read(index, index + 1, ("positions", "momenta"))
            positions[part] = torch.as_tensor(frame["positions"][0], device=state.device)
            momenta[part] = torch.as_tensor(frame["momenta"][0], device=state.device)
            target[s] = float(np.asarray(self._stats[s]["target_energy"][index : index + 1])[0])
        return state.replace(positions=positions, momenta=momenta, target_energy=target)

    def append(
        self,
        state: MDState,
        stats: StrideStats,
        time_fs: float,
        iterations: torch.Tensor | None = None,
        atom_values: Mapping[str, torch.Tensor] | None = None,
        accepted: torch.Tensor | None = None,
    ) -> None:
        """Append the current frame of every system with the statistics of its last stride,
        ``iterations`` (S,), the solver's iterations since the last frame (None: 0),
        ``atom_values``: (A,) per atom for each of the writer's ``atom_arrays``, and
        ``accepted`` (S,), the fraction of strides since the last frame a Metropolis test
        accepted (None: 1, no test)."""
        if iterations is None:
            iterations = torch.zeros_like(state.target_energy)
        if accepted is None:
            accepted = torch.ones_like(state.target_energy)
        atom_values = atom_values or {}
        if set(atom_values) != set(self.atom_arrays):
            raise ValueError(f"need values for {self.atom_arrays}, got {sorted(atom_values)}")
        per_atom = {name: value.detach().cpu().numpy() for name, value in atom_values.items()}
        cpu = {
            "positions": state.positions.cpu().numpy(),
            "momenta": state.momenta.cpu().numpy(),
            "cell": state.cell.cpu().numpy(),
            "energy": stats.potential_energy.cpu().numpy(),
            "scale": stats.scale.cpu().numpy(),
            "fallback": stats.fallback.cpu().numpy().astype(np.float64),
            "target": state.target_energy.cpu().numpy(),
            "iterations": iterations.cpu().numpy(),
            "accepted": accepted.cpu().numpy().astype(np.float64),
            "declined": (
                np.zeros(state.n_systems)
                if stats.declined is None
                else stats.declined.cpu().numpy().astype(np.float64)
            ),
        }
        commit = {"rng_state": encode_generator(state.generator)}
        for s, (writer, part) in enumerate(zip(self.writers, self._slices, strict=True)):
            self._buffers[s].append(
                np.array(
                    [
                        cpu["scale"][s],
                        cpu["fallback"][s],
                        cpu["target"][s],
                        cpu["iterations"][s],
                        cpu["declined"][s],
                        cpu["accepted"][s],
                    ]
                )
            )
            if self.atom_arrays:
                self._atom_buffers[s].append(
                    np.stack([per_atom[name][part] for name in self.atom_arrays])
                )
            frame = {
                "positions": cpu["positions"][part],
                "momenta": cpu["momenta"][part],
                "cell": cpu["cell"][s],
                "energy": cpu["energy"][s],
                "time_fs": time_fs,
            }
            writer.append(frame, commit_attrs=commit)
        self.n_frames += 1

    def _flush_stats(self, s: int) -> None:
        rows = self._buffers[s]
        if not rows:
            return
        block = np.stack(rows)
        start = self._stats_written[s]
        stop = start + len(rows)
        self._stats_written[s] = stop
        for k, name in enumerate(STAT_ARRAYS):
            array = self._stats[s][name]
            if array.shape[0] < stop:
                array.resize((max(stop, 2 * array.shape[0]),))
            array[start:stop] = block[:, k]
        rows.clear()
        if self.atom_arrays:
            atom_block = np.stack(self._atom_buffers[s])  # (frames, arrays, atoms)
            for k, name in enumerate(self.atom_arrays):
                array = self._atoms[s][name]
                if array.shape[0] < stop:
                    array.resize((max(stop, 2 * array.shape[0]), array.shape[1]))
                array[start:stop] = atom_block[:, k]
            self._atom_buffers[s].clear()

    def close(self, complete: bool, attrs: Mapping[str, Any] | None = None) -> None:
        """Flush everything; with ``complete`` trim the arrays and mark trajectories complete."""
        for writer in self.writers:  # all frames first, then the status
            writer.flush()
        for s, writer in enumerate(self.writers):
            if complete:
                for array in self._stats[s].values():
                    array.resize((writer.n_frames,))
                for array in self._atoms[s].values():
                    array.resize((writer.n_frames, array.shape[1]))
            writer.close(complete=complete, attrs=attrs)


def _array(
    writer: TrajectoryWriter,
    name: str,
    shape: tuple[int, ...],
    dims: tuple[str, ...],
    attributes: dict[str, Any] | None = None,
) -> zarr.Array:
    """The trajectory's float64 array ``name`` (chunked along frames like the writer's, NaN
    until written), created unless it exists (a resumed run)."""
    existing = writer.group.get(name)
    if isinstance(existing, zarr.Array):
        return existing
    return writer.group.create_array(
        name,
        shape=shape,
        chunks=(writer.chunk, *shape[1:]),
        dtype="float64",
        compressors=COMPRESSOR,
        fill_value=np.nan,
        dimension_names=dims,
        attributes=attributes or {},
    )
