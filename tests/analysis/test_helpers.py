"""Shared helpers: frame intervals, input coercion, FFT sizes, cell geometry."""

from __future__ import annotations

import numpy as np
import pytest

from flashmd.analysis import frame_interval_fs
from flashmd.analysis._common import as_cells, as_pbc, species_groups
from flashmd.analysis._geometry import completed_cell, perpendicular_widths
from flashmd.analysis._lagsums import fast_length


def test_frame_interval():
    assert frame_interval_fs(10.0 + 2.5 * np.arange(7)) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="uniform frame interval"):
        frame_interval_fs(np.array([0.0, 1.0, 3.0]))
    with pytest.raises(ValueError, match="at least two frames"):
        frame_interval_fs(np.array([0.0]))


def test_coercion_errors():
    assert as_cells(np.eye(3), 4).shape == (4, 3, 3)
    assert as_pbc(True).tolist() == [True, True, True]
    with pytest.raises(ValueError, match="pbc must be"):
        as_pbc([True, False])
    with pytest.raises(ValueError, match="1-D integer array"):
        species_groups(np.array([1.5, 2.0]))


def test_fast_length_is_smallest_5_smooth():
    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in range(1, 2000):
        expected = next(m for m in range(n, 2 * n + 2) if smooth(m))
        assert fast_length(n) == expected


def test_cell_geometry():
    cell = np.array([[[4.0, 0.0, 0.0], [1.0, 5.0, 0.0], [0.5, 0.5, 6.0]]])
    a = cell[0]
    volume = abs(np.linalg.det(a))
    expected = [volume / np.linalg.norm(np.cross(a[(k + 1) % 3], a[(k + 2) % 3])) for k in range(3)]
    np.testing.assert_allclose(perpendicular_widths(cell, np.ones(3, bool))[0], expected)
    slab_pbc = np.array([True, True, False])
    np.testing.assert_allclose(completed_cell(cell, slab_pbc)[0, 2], [0.0, 0.0, 1.0])
    assert np.isinf(perpendicular_widths(cell, slab_pbc)[0, 2])
    wire = completed_cell(cell, np.array([False, True, False]))[0]
    np.testing.assert_array_equal(wire[1], a[1])
    gram = wire[[0, 2]] @ wire[[0, 2, 1]].T  # open vectors: orthonormal and normal to the axis
    np.testing.assert_allclose(gram, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], atol=1e-12)
