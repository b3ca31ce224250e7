"""Minimum distances and overlaps against ASE and a k-d tree, including periodic images."""

from __future__ import annotations

import numpy as np
from ase.geometry import get_distances
from scipy.spatial import cKDTree

from flashmd.analysis import (
    MinDistanceAccumulator,
    OverlapAccumulator,
    find_overlaps,
    min_distance,
)

CELL = np.array([[9.0, 0.0, 0.0], [3.0, 8.0, 0.0], [-1.0, 2.0, 10.0]])


def test_matches_ase_minimum_image_triclinic(rng):
    positions = rng.uniform(-15.0, 15.0, (6, 25, 3))  # unwrapped, several cells away
    result = min_distance(positions, CELL, pbc=True, search_cutoff=0.5)
    for frame, p in enumerate(positions):
        d = get_distances(p, cell=CELL, pbc=True)[1]
        np.fill_diagonal(d, np.inf)
        assert np.isclose(result.distance[frame], d.min(), rtol=1e-12)
        i, j = result.pair[frame]
        assert np.isclose(d[i, j], d.min(), rtol=1e-12)


def test_open_and_slab_boundaries(rng):
    positions = rng.uniform(0.0, 9.0, (4, 30, 3))
    for pbc in ((False, False, False), (True, True, False)):
        result = min_distance(positions, CELL, pbc=pbc)
        for frame, p in enumerate(positions):
            d = get_distances(p, cell=CELL, pbc=pbc)[1]
            np.fill_diagonal(d, np.inf)
            assert np.isclose(result.distance[frame], d.min(), rtol=1e-12)


def test_periodic_self_image_and_isolated_atom():
    one_atom = np.zeros((1, 1, 3))
    result = min_distance(one_atom, np.diag([6.0, 4.0, 7.0]), pbc=True, search_cutoff=0.5)
    assert result.distance[0] == 4.0 and tuple(result.pair[0]) == (0, 0)
    result = min_distance(one_atom, np.zeros((3, 3)), pbc=False)
    assert result.distance[0] == np.inf and tuple(result.pair[0]) == (-1, -1)


def test_thousands_of_atoms_match_kd_tree(rng):
    length, n_atoms = 40.0, 5000
    positions = rng.uniform(0.0, length, (3, n_atoms, 3))
    result = min_distance(positions, np.eye(3) * length, pbc=True)
    for frame, p in enumerate(positions):
        d, _ = cKDTree(p, boxsize=length).query(p, k=2)
        assert np.isclose(result.distance[frame], d[:, 1].min(), rtol=1e-12)


def test_overlaps(rng):
    positions = rng.uniform(0.0, 1.0, (5, 40, 3)) @ CELL
    positions[2, 7] = positions[2, 3] + [0.3, 0.0, 0.0]
    positions[4, 1] = positions[4, 0] + CELL[1] + [0.0, 0.0, -0.2]  # across the boundary
    d_min = min_distance(positions, CELL).distance
    threshold = 0.5
    expected = np.array(
        [
            np.count_nonzero(np.triu(get_distances(p, cell=CELL, pbc=True)[1] < threshold, 1))
            for p in positions
        ]
    )
    result = find_overlaps(positions, CELL, threshold)
    np.testing.assert_array_equal(result.count, expected)
    assert result.any and {2, 4} <= set(result.frames.tolist())
    np.testing.assert_allclose(result.distance[result.frame == 4].min(), 0.2, rtol=1e-9)
    assert np.all(result.distance < threshold)
    np.testing.assert_array_equal(result.count > 0, d_min < threshold)
    assert not find_overlaps(positions[:2], CELL, 0.01).any


def test_streaming_equals_whole_exactly(rng, uneven_blocks):
    positions = rng.uniform(0.0, 1.0, (80, 30, 3)) @ CELL
    whole_min = min_distance(positions, CELL)
    whole_overlaps = find_overlaps(positions, CELL, 1.0)
    acc_min, acc_overlaps = MinDistanceAccumulator(), OverlapAccumulator(1.0)
    for block in uneven_blocks(80):
        acc_min.update(positions[block], CELL)
        acc_overlaps.update(positions[block], CELL)
    np.testing.assert_array_equal(acc_min.result().distance, whole_min.distance)
    np.testing.assert_array_equal(acc_min.result().pair, whole_min.pair)
    streamed = acc_overlaps.result()
    for name in ("count", "frame", "i", "j", "distance"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(whole_overlaps, name))
