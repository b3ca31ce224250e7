"""Neighbour lists (vesin) and batching of several systems into one graph.

A *batch* is the dictionary described in :mod:`flashmd.keys`. :func:`atoms_to_batch` turns one
``ase.Atoms`` into a batch of one system (float64, CPU, no edges); :func:`collate` joins batches of
any sizes into one (atom indices of edges and system indices are offset); :func:`with_neighbors`
adds the full neighbour list (``edge_index``, ``edge_shifts``); :func:`batch_to` moves a batch to a
device and float dtype; :func:`batch_from_atoms` does all of it. :func:`edge_vectors` computes
``r_ij = r_j - r_i + shift`` in torch so gradients flow to positions (forces) and, through the
shifts, to the cell (stress).

Periodicity is per cell vector: fully periodic, open (``pbc`` all false, the cell may be zero)
and mixed (slabs, wires) systems are handled natively by vesin; positions may be unwrapped.
"""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np
import torch
import vesin

from flashmd import keys

_EDGE_KEYS = (keys.EDGE_INDEX, keys.EDGE_SHIFTS)


def neighbor_list(
    positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full neighbour list of one system: every pair closer than ``cutoff``, in both directions.

    Args:
        positions: ``(N, 3)`` in Å (may lie outside the cell; unwrapped is fine).
        cell: ``(3, 3)`` in Å, cell vectors as rows; rows along open directions may be zero.
        pbc: ``(3,)`` bool, periodicity along each cell vector.
        cutoff: cutoff radius in Å.

    Returns:
        ``edge_index`` ``(2, E)`` long (receiver i, sender j) and ``cell_shifts`` ``(E, 3)`` long,
        integer cell offsets such that ``r_ij = r_j - r_i + cell_shifts @ cell``. vesin runs on
        the CPU (its CUDA build is optional); the results are moved to ``positions.device``.

    Raises:
        ValueError: non-positive cutoff, bad shapes, or a periodic direction with a zero cell
            vector.
    """
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if positions.ndim != 2 or positions.shape[1] != 3 or cell.shape != (3, 3) or pbc.shape != (3,):
        raise ValueError(
            f"need positions (N, 3), cell (3, 3), pbc (3,); got {tuple(positions.shape)}, "
            f"{tuple(cell.shape)}, {tuple(pbc.shape)}"
        )
    pbc = pbc.detach().cpu().to(torch.bool)
    cell = cell.detach().cpu().to(torch.float64)
    degenerate = pbc & (torch.linalg.vector_norm(cell, dim=1) == 0)
    if bool(degenerate.any()):
        raise ValueError(
            f"periodic along cell vector(s) {degenerate.nonzero().flatten().tolist()} but they are "
            f"zero; set a cell or pbc=False there (cell={cell.tolist()}, pbc={pbc.tolist()})"
        )
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    pairs, shifts = calculator.compute(
        positions.detach().cpu().to(torch.float64), cell, pbc, quantities="PS", copy=True
    )
    pairs, shifts = pairs.to(torch.long), shifts.to(torch.long)
    # one canonical order (receiver, sender, cell shift), whatever positions the list was built
    # at: sums over edges then add the same terms in the same order, so a run resumed with a
    # fresh list repeats the uninterrupted one bit for bit
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], pairs[:, 1], pairs[:, 0]))
    order = torch.from_numpy(order)
    edge_index = pairs[order].T.contiguous()
    return edge_index.to(positions.device), shifts[order].to(positions.device)


def atoms_to_batch(atoms: ase.Atoms, stride_fs: float | None = None) -> dict[str, torch.Tensor]:
    """One ``ase.Atoms`` as a batch of one system, float64 on CPU, without edges.

    Keys: positions, momenta, masses, numbers, system, n_atoms, cell, pbc, and stride when
    ``stride_fs`` is given. Momenta are ``atoms.get_momenta()`` (zero when none are set).

    Args:
        atoms: the system (any periodicity).
        stride_fs: stride of the long-stride map in fs, or None for models that need none.
    """
    if not isinstance(atoms, ase.Atoms):
        raise TypeError(f"expected ase.Atoms, got {type(atoms).__name__}")
    n = len(atoms)
    batch = {
        keys.POSITIONS: torch.tensor(atoms.positions, dtype=torch.float64),
        keys.MOMENTA: torch.tensor(atoms.get_momenta(), dtype=torch.float64),
        keys.MASSES: torch.tensor(atoms.get_masses(), dtype=torch.float64),
        keys.NUMBERS: torch.tensor(atoms.numbers, dtype=torch.long),
        keys.SYSTEM: torch.zeros(n, dtype=torch.long),
        keys.N_ATOMS: torch.tensor([n], dtype=torch.long),
        keys.CELL: torch.tensor(np.asarray(atoms.cell[:]), dtype=torch.float64)[None],
        keys.PBC: torch.tensor(np.asarray(atoms.pbc), dtype=torch.bool)[None],
    }
    if stride_fs is not None:
        if not stride_fs > 0:
            raise ValueError(f"stride_fs must be positive, got {stride_fs}")
        batch[keys.STRIDE] = torch.tensor([float(stride_fs)], dtype=torch.float64)
    return batch


def collate(batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Join batches (each of one or more systems) into one batch.

    Atom, edge and system keys are concatenated; ``system`` and ``edge_index`` are offset so they
    keep pointing at the right systems and atoms. All batches must have the same keys.

    Raises:
        ValueError: no batches, different key sets, or a key not described in ``flashmd.keys``.
    """
    if not batches:
        raise ValueError("collate needs at least one batch")
    names = set(batches[0])
    for k, batch in enumerate(batches):
        if set(batch) != names:
            raise ValueError(f"batch {k} has keys {sorted(batch)}, batch 0 has {sorted(names)}")
    unknown = sorted(names - set(keys.KEYS))
    if unknown:
        raise ValueError(f"collate does not know keys {unknown}; add them to flashmd.keys.KEYS")
    n_atoms = torch.tensor([int(b[keys.N_ATOMS].sum()) for b in batches])
    n_systems = torch.tensor([len(b[keys.N_ATOMS]) for b in batches])
    atom_offsets = torch.cumsum(n_atoms, 0) - n_atoms
    system_offsets = torch.cumsum(n_systems, 0) - n_systems
    out = {}
    for name in names:
        if name == keys.SYSTEM:
            parts = [b[name] + int(o) for b, o in zip(batches, system_offsets, strict=True)]
        elif name == keys.EDGE_INDEX:
            parts = [b[name] + int(o) for b, o in zip(batches, atom_offsets, strict=True)]
        else:
            parts = [b[name] for b in batches]
        out[name] = torch.cat(parts, dim=1 if name == keys.EDGE_INDEX else 0)
    return out


def with_neighbors(batch: dict[str, torch.Tensor], cutoff: float) -> dict[str, torch.Tensor]:
    """A new batch with the full neighbour list of every system (``edge_index``, ``edge_shifts``).

    Computed with the batch's current positions, cell and pbc; ``edge_shifts`` (Å) is
    ``cell_shifts @ cell`` computed in torch in the batch's dtype and device (differentiable with
    respect to the cell). Call again whenever atoms may have moved (e.g. after every stride).
    """
    keys.check_batch(batch, (keys.POSITIONS, keys.CELL, keys.PBC, keys.N_ATOMS))
    positions, cell, pbc = batch[keys.POSITIONS], batch[keys.CELL], batch[keys.PBC]
    counts = batch[keys.N_ATOMS].tolist()
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
    edge_index, edge_shifts = [], []
    for s, (start, count) in enumerate(zip(offsets, counts, strict=True)):
        index, shifts = neighbor_list(positions[start : start + count], cell[s], pbc[s], cutoff)
        edge_index.append(index + start)
        edge_shifts.append(shifts.to(positions.dtype) @ cell[s])
    return {
        **batch,
        keys.EDGE_INDEX: torch.cat(edge_index, dim=1),
        keys.EDGE_SHIFTS: torch.cat(edge_shifts, dim=0),
    }


def batch_to(
    batch: dict[str, torch.Tensor],
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """A new batch on ``device`` with the float keys (see ``flashmd.keys``) cast to ``dtype``."""
    out = {}
    for name, value in batch.items():
        is_float = name in keys.KEYS and keys.KEYS[name].dtype == "float"
        out[name] = value.to(device=device, dtype=dtype if is_float else None)
    return out


def batch_from_atoms(
    atoms: ase.Atoms | Sequence[ase.Atoms],
    cutoff: float,
    stride_fs: float | Sequence[float] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Batch one or several ``ase.Atoms`` (any sizes and periodicities) with neighbour lists.

    Args:
        atoms: one system or a sequence of systems.
        cutoff: neighbour cutoff in Å.
        stride_fs: one stride in fs for all systems, one per system, or None.
        device: where the tensors go.
        dtype: float dtype of the float keys.
    """
    systems = [atoms] if isinstance(atoms, ase.Atoms) else list(atoms)
    if stride_fs is None or isinstance(stride_fs, (int, float)):
        strides = [stride_fs] * len(systems)
    else:
        strides = list(stride_fs)
        if len(strides) != len(systems):
            raise ValueError(f"got {len(strides)} strides for {len(systems)} systems")
    batch = collate([atoms_to_batch(a, s) for a, s in zip(systems, strides, strict=True)])
    return with_neighbors(batch_to(batch, device, dtype), cutoff)


def edge_vectors(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(E, 3)`` edge vectors in Å, ``r_ij = r_j - r_i + shift`` with ``(i, j) = edge_index``.

    Differentiable with respect to ``positions`` (and to the cell through ``edge_shifts``).
    """
    positions = batch[keys.POSITIONS]
    receiver, sender = batch[keys.EDGE_INDEX]
    return positions[sender] - positions[receiver] + batch[keys.EDGE_SHIFTS]
