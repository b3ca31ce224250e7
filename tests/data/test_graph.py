"""Neighbour lists (vesin against ASE), batching and edge vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111
from ase.neighborlist import neighbor_list as ase_neighbor_list

from flashmd import keys
from flashmd.data.graph import (
    atoms_to_batch,
    batch_from_atoms,
    batch_to,
    collate,
    edge_vectors,
    neighbor_list,
    with_neighbors,
)


def rattled(atoms: Atoms, seed: int, scale: float = 0.1) -> Atoms:
    atoms = atoms.copy()
    atoms.positions += np.random.default_rng(seed).normal(scale=scale, size=atoms.positions.shape)
    return atoms


def cluster() -> Atoms:
    atoms = rattled(bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2), 1)[:20]
    atoms.pbc, atoms.cell = False, np.zeros((3, 3))
    return atoms


def slab() -> Atoms:
    atoms = rattled(fcc111("Al", (3, 3, 3), vacuum=None), 2)
    atoms.pbc = (True, True, False)
    atoms.cell[2] = 0.0  # no cell along the open direction
    return atoms


def wire() -> Atoms:
    atoms = rattled(bulk("Al", "fcc", a=4.05, cubic=True).repeat((1, 1, 4)), 3)
    atoms.pbc = (False, False, True)
    return atoms


def triclinic_mixed() -> Atoms:
    atoms = rattled(bulk("Al", "fcc", a=4.05).repeat((2, 3, 2)), 4)
    atoms.pbc = (True, False, True)
    return atoms


def small_cell() -> Atoms:
    return rattled(bulk("Al", "fcc", a=4.05), 5)  # one atom, many periodic images


def unwrapped() -> Atoms:
    atoms = rattled(bulk("Al", "fcc", a=4.05, cubic=True).repeat(2), 6)
    jumps = np.random.default_rng(7).integers(-3, 4, size=(len(atoms), 3))
    atoms.positions += jumps @ atoms.cell[:] + np.array([31.0, -17.0, 5.0])
    return atoms


SYSTEMS = {
    "periodic": lambda: rattled(bulk("Al", "fcc", a=4.05, cubic=True).repeat(3), 0),
    "cluster": cluster,
    "slab": slab,
    "wire": wire,
    "triclinic_mixed": triclinic_mixed,
    "small_cell": small_cell,
    "unwrapped": unwrapped,
}


def edge_set(i, j, shifts):
    rows = zip(
        np.asarray(i).tolist(), np.asarray(j).tolist(), np.asarray(shifts).tolist(), strict=True
    )
    return {(a, b, tuple(s)) for a, b, s in rows}


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_neighbor_list_matches_ase(name):
    atoms = SYSTEMS[name]()
    cutoff = 5.0
    edge_index, shifts = neighbor_list(
        torch.tensor(atoms.positions), torch.tensor(atoms.cell[:]), torch.tensor(atoms.pbc), cutoff
    )
    i, j, s = ase_neighbor_list("ijS", atoms, cutoff)
    assert edge_index.dtype == torch.long and shifts.dtype == torch.long
    assert len(i) > 0
    assert edge_set(edge_index[0], edge_index[1], shifts) == edge_set(i, j, s)


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_edge_vectors_match_ase_distance_vectors(name):
    atoms = SYSTEMS[name]()
    batch = batch_from_atoms(atoms, 5.0, dtype=torch.float64)
    vectors = edge_vectors(batch)
    i, j, d = ase_neighbor_list("ijD", atoms, 5.0)
    ours = {
        (a, b, tuple(np.round(v, 8)))
        for a, b, v in zip(*batch[keys.EDGE_INDEX].tolist(), vectors.numpy(), strict=True)
    }
    theirs = {
        (a, b, tuple(np.round(v, 8))) for a, b, v in zip(i.tolist(), j.tolist(), d, strict=True)
    }
    assert ours == theirs


def test_atoms_to_batch_is_a_valid_one_system_batch():
    atoms = slab()
    atoms.set_momenta(np.ones((len(atoms), 3)))
    batch = atoms_to_batch(atoms, stride_fs=32.0)
    keys.check_batch(batch, (keys.POSITIONS, keys.MOMENTA, keys.MASSES, keys.STRIDE))
    assert batch[keys.CELL].shape == (1, 3, 3) and batch[keys.PBC].tolist() == [[True, True, False]]
    assert batch[keys.N_ATOMS].tolist() == [len(atoms)] and batch[keys.SYSTEM].eq(0).all()
    assert batch[keys.POSITIONS].dtype == torch.float64 and batch[keys.NUMBERS].dtype == torch.long
    assert batch[keys.STRIDE].tolist() == [32.0]
    assert keys.STRIDE not in atoms_to_batch(atoms)


def test_batch_of_different_systems_offsets_indices():
    systems = [SYSTEMS["periodic"](), cluster(), slab()]
    batch = batch_from_atoms(systems, 4.5, [16.0, 32.0, 64.0], dtype=torch.float32)
    keys.check_batch(batch, (keys.EDGE_INDEX, keys.EDGE_SHIFTS, keys.STRIDE))
    sizes = [len(a) for a in systems]
    assert batch[keys.N_ATOMS].tolist() == sizes
    assert batch[keys.SYSTEM].tolist() == [k for k, n in enumerate(sizes) for _ in range(n)]
    assert batch[keys.POSITIONS].dtype == torch.float32 and batch[keys.STRIDE].tolist() == [
        16,
        32,
        64,
    ]
    receiver, sender = batch[keys.EDGE_INDEX]
    assert torch.equal(batch[keys.SYSTEM][receiver], batch[keys.SYSTEM][sender])
    start = 0
    for k, atoms in enumerate(systems):
        single = batch_from_atoms(atoms, 4.5, dtype=torch.float32)
        in_system = batch[keys.SYSTEM][receiver] == k
        assert edge_set(
            receiver[in_system] - start,
            sender[in_system] - start,
            batch[keys.EDGE_SHIFTS][in_system].round(decimals=4),
        ) == edge_set(*single[keys.EDGE_INDEX], single[keys.EDGE_SHIFTS].round(decimals=4))
        start += len(atoms)


def test_collate_of_batches_with_edges_offsets_them():
    a = batch_from_atoms(cluster(), 4.0, dtype=torch.float64)
    b = batch_from_atoms([slab(), cluster()], 4.0, dtype=torch.float64)
    joined = collate([a, b])
    assert joined[keys.N_ATOMS].shape == (3,) and joined[keys.SYSTEM].max() == 2
    n_a = a[keys.EDGE_INDEX].shape[1]
    assert torch.equal(joined[keys.EDGE_INDEX][:, n_a:], b[keys.EDGE_INDEX] + len(cluster()))
    torch.testing.assert_close(edge_vectors(joined), torch.cat([edge_vectors(a), edge_vectors(b)]))


def test_with_neighbors_follows_moved_atoms():
    batch = batch_from_atoms(cluster(), 3.0, dtype=torch.float64)
    spread = {**batch, keys.POSITIONS: batch[keys.POSITIONS] * 10}
    assert with_neighbors(spread, 3.0)[keys.EDGE_INDEX].shape == (2, 0)


def test_edge_vectors_are_differentiable_in_positions_and_cell():
    atoms = SYSTEMS["small_cell"]()
    batch = atoms_to_batch(atoms)
    cell = batch[keys.CELL].clone().requires_grad_(True)
    positions = batch[keys.POSITIONS].clone().requires_grad_(True)
    batch = with_neighbors({**batch, keys.CELL: cell, keys.POSITIONS: positions}, 5.0)
    vectors = edge_vectors(batch)
    vectors.square().sum().backward()
    # one atom: r = shift @ C, so under C -> C (1 + e) the derivative C^T dF/dC = 2 Σ r r^T
    r = vectors.detach()
    torch.testing.assert_close(cell.detach()[0].T @ cell.grad[0], 2 * r.T @ r)
    torch.testing.assert_close(positions.grad, torch.zeros_like(positions), rtol=0, atol=1e-10)


def test_batch_to_casts_only_float_keys():
    batch = batch_to(
        batch_from_atoms(cluster(), 4.0, 16.0, dtype=torch.float64), dtype=torch.float32
    )
    assert (
        batch[keys.POSITIONS].dtype == torch.float32 and batch[keys.STRIDE].dtype == torch.float32
    )
    assert batch[keys.EDGE_INDEX].dtype == torch.long and batch[keys.PBC].dtype == torch.bool


def test_bad_inputs_are_clear_errors():
    atoms = cluster()
    atoms.pbc = True
    with pytest.raises(ValueError, match=r"periodic along cell vector.*zero"):
        batch_from_atoms(atoms, 4.0)
    with pytest.raises(ValueError, match="cutoff must be positive"):
        batch_from_atoms(cluster(), 0.0)
    with pytest.raises(TypeError, match=r"expected ase\.Atoms"):
        atoms_to_batch("H2O")
    with pytest.raises(ValueError, match="2 strides for 1 systems"):
        batch_from_atoms([cluster()], 4.0, [16.0, 32.0])
    with pytest.raises(ValueError, match="stride_fs must be positive"):
        atoms_to_batch(cluster(), stride_fs=-1.0)
    with pytest.raises(ValueError, match="keys"):
        collate([atoms_to_batch(cluster()), atoms_to_batch(cluster(), 16.0)])
    with pytest.raises(ValueError, match="at least one"):
        collate([])


def test_pairs_come_in_one_order_whatever_the_positions_the_list_was_built_at():
    """A list built at other positions (as a resumed rollout builds a fresh one) holds the pairs
    within the cutoff in the same order, so sums over edges repeat bit for bit."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=1)
    positions = torch.tensor(atoms.positions)
    cell, pbc = torch.tensor(atoms.cell[:]), torch.tensor([True] * 3)
    moved = positions + 0.1 * torch.randn(
        positions.shape, generator=torch.Generator().manual_seed(0)
    )
    lists = [neighbor_list(p, cell, pbc, 6.0) for p in (positions, moved)]
    for index, shifts in lists:
        keys_ = np.column_stack([index.T.numpy(), shifts.numpy()])
        assert (np.diff(np.lexsort(keys_.T[::-1])) == 1).all()  # sorted: receiver, sender, shift

    def within(index, shifts, cutoff=5.0):
        d = positions[index[1]] - positions[index[0]] + shifts.double() @ cell
        keep = torch.linalg.vector_norm(d, dim=1) < cutoff
        return index[:, keep], shifts[keep]

    (a, sa), (b, sb) = (within(*pair) for pair in lists)
    assert torch.equal(a, b) and torch.equal(sa, sb)
