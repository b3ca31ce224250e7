"""Lindemann index against a direct computation with ASE's minimum-image distances."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.geometry import get_distances

from flashmd.analysis import LindemannAccumulator, lindemann_index


def _vibrating_crystal(rng, n_frames=40, amplitude=0.1):
    """FCC copper 2x2x2 (32 atoms) vibrating about its sites, drifting across the cell
    boundary as a whole: unwrapped positions (n_frames, 32, 3) Å and the cell (3, 3) Å."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    drift = np.linspace(0.0, 9.0, n_frames)[:, None, None] * np.array([1.0, 0.5, 0.2])
    noise = rng.normal(scale=amplitude, size=(n_frames, len(atoms), 3))
    return atoms.positions[None] + drift + noise, np.array(atoms.cell)


def _direct(positions, cell, pairs):
    """Per-pair q_ij from ASE minimum-image distances frame by frame."""
    distances = np.stack([get_distances(p, cell=cell, pbc=True)[1] for p in positions])
    i, j = pairs
    r = distances[:, i, j]
    return r.std(axis=0) / r.mean(axis=0)


def _cluster_across_boundary(rng, n_frames=40, n_atoms=20):
    """A vibrating, drifting cluster (all distances < 5 Å, far below half the cell width of a
    triclinic cell) centred on a cell corner: the first frame is wrapped into the cell, so pairs
    start on opposite faces, and later frames continue unwrapped from it."""
    cell = 2.0 * np.array([[9.0, 0.0, 0.0], [3.0, 8.0, 0.0], [-1.0, 2.0, 10.0]])
    sites = rng.uniform(-1.0, 1.0, (n_atoms, 3)) * 1.4
    drift = np.linspace(0.0, 12.0, n_frames)[:, None, None] * np.array([1.0, -0.6, 0.3])
    positions = sites + drift + rng.normal(scale=0.1, size=(n_frames, n_atoms, 3))
    fractional = positions[0] @ np.linalg.inv(cell)
    positions -= (np.floor(fractional) @ cell)[None]  # first frame wrapped, the rest follows
    return positions, cell


def test_all_pairs_match_direct_computation(rng):
    positions, cell = _cluster_across_boundary(rng)
    assert np.ptp(positions[0], axis=0).max() > 10.0  # pairs really start across the cell
    result = lindemann_index(positions, cell, pbc=True)
    n = positions.shape[1]
    i, j = np.triu_indices(n, 1)
    q = _direct(positions, cell, (i, j))
    assert result.system == pytest.approx(q.mean(), rel=1e-9)
    q_matrix = np.zeros((n, n))
    q_matrix[i, j] = q_matrix[j, i] = q
    np.testing.assert_allclose(result.per_atom, q_matrix.sum(axis=1) / (n - 1), rtol=1e-9)
    assert result.n_pairs == i.size and result.n_frames == positions.shape[0]


def test_neighbour_shell_matches_direct_computation(rng):
    positions, cell = _vibrating_crystal(rng)
    result = lindemann_index(positions, cell, pbc=True, cutoff=3.0)  # 12 nearest neighbours
    assert result.n_pairs == 32 * 12 // 2
    first = get_distances(positions[0], cell=cell, pbc=True)[1]
    i, j = np.nonzero(np.triu(first < 3.0, 1))
    q = _direct(positions, cell, (i, j))
    assert result.system == pytest.approx(q.mean(), rel=1e-9)
    assert 0.02 < result.system < 0.06  # sqrt(2) * 0.1 Å over 2.55 Å, roughly


def test_rigid_motion_gives_zero(rng):
    positions, cell = _vibrating_crystal(rng, amplitude=0.0)
    result = lindemann_index(positions, cell, pbc=True)
    assert result.system < 1e-9
    assert np.all(result.per_atom < 1e-9)


def test_open_boundaries_use_direct_distances(rng):
    positions = rng.normal(scale=3.0, size=(1, 6, 3)) + rng.normal(scale=0.2, size=(30, 6, 3))
    result = lindemann_index(positions, np.zeros((3, 3)), pbc=False)
    i, j = np.triu_indices(6, 1)
    r = np.linalg.norm(positions[:, j] - positions[:, i], axis=2)
    assert result.system == pytest.approx(np.mean(r.std(axis=0) / r.mean(axis=0)), rel=1e-9)


def test_streaming_equals_whole_exactly(rng, uneven_blocks):
    positions, cell = _vibrating_crystal(rng, n_frames=90)
    whole = lindemann_index(positions, cell, pbc=True)
    acc = LindemannAccumulator(pbc=True)
    for block in uneven_blocks(90):
        acc.update(positions[block], cell)
    streamed = acc.result()
    np.testing.assert_array_equal(streamed.per_atom, whole.per_atom)
    assert streamed.system == whole.system


def test_bad_input(rng):
    with pytest.raises(ValueError, match="no atom pairs"):
        lindemann_index(rng.normal(size=(3, 1, 3)), np.eye(3) * 5.0)
    with pytest.raises(ValueError, match="cutoff must be positive"):
        LindemannAccumulator(cutoff=0.0)
    acc = LindemannAccumulator()
    acc.update(rng.normal(size=(2, 4, 3)), np.eye(3) * 5.0)
    with pytest.raises(ValueError, match="positions has 5 atoms, expected 4"):
        acc.update(rng.normal(size=(2, 5, 3)), np.eye(3) * 5.0)
    with pytest.raises(ValueError, match="no frames"):
        LindemannAccumulator().result()
