"""RDF against ASE's get_rdf, the ideal gas (bulk and slab), streaming and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.geometry.rdf import get_rdf

from flashmd.analysis import RDFAccumulator, rdf
from flashmd.analysis._geometry import perpendicular_widths

CELL = np.array([[10.0, 0.0, 0.0], [2.0, 11.0, 0.0], [1.0, -1.5, 12.0]])


def _triclinic_frames(rng: np.random.Generator, n_frames: int = 4, n_atoms: int = 60):
    """Frames with a breathing triclinic cell and unwrapped positions (several images away)."""
    cells = np.stack([CELL * (1.0 + 0.02 * k) for k in range(n_frames)])
    fractional = rng.uniform(0.0, 1.0, (n_frames, n_atoms, 3))
    fractional += rng.integers(-2, 3, (n_frames, n_atoms, 3))
    positions = np.einsum("fnk,fkc->fnc", fractional, cells)
    numbers = rng.choice([2, 18, 36], n_atoms)
    return positions, cells, numbers


def test_matches_ase_total_and_partials(rng):
    positions, cells, numbers = _triclinic_frames(rng)
    rmax = 0.49 * perpendicular_widths(cells, np.ones(3, bool)).min()
    nbins = 50
    ours = rdf(positions, cells, numbers, rmax, nbins)
    images = [
        Atoms(numbers=numbers, positions=p, cell=c, pbc=True)
        for p, c in zip(positions, cells, strict=True)
    ]
    g_ase, r_ase = get_rdf(images, rmax, nbins)
    np.testing.assert_allclose(ours.r, r_ase, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.total, g_ase, rtol=0, atol=1e-6)
    assert ours.total.max() > 0.5  # the comparison is not vacuous
    for a in (2, 18, 36):
        for b in (2, 18, 36):
            g_ab = get_rdf(images, rmax, nbins, elements=[a, b], no_dists=True)
            np.testing.assert_allclose(ours.pair(a, b), g_ab, rtol=0, atol=1e-6)


def test_partials_combine_to_total(rng):
    positions, cells, numbers = _triclinic_frames(rng)
    result = rdf(positions, cells, numbers, 4.0, 40)
    fraction = {z: np.mean(numbers == z) for z in (2, 18, 36)}
    combined = sum(
        fraction[a] * fraction[b] * result.pair(a, b) for a in fraction for b in fraction
    )
    np.testing.assert_allclose(combined, result.total, rtol=1e-12, atol=1e-12)


def test_ideal_gas_bulk_is_flat(rng):
    n_atoms, n_frames, length = 200, 40, 12.0
    positions = rng.uniform(0.0, length, (n_frames, n_atoms, 3))
    result = rdf(positions, np.eye(3) * length, np.full(n_atoms, 18), 6.0, 12)
    # pair counts per bin are >= 2000 beyond 2 Å: 5 % covers > 3 standard deviations
    outer = result.r > 2.0
    expected = (n_atoms - 1) / n_atoms
    np.testing.assert_allclose(result.total[outer], expected, rtol=0.05)
    assert abs(result.total[outer].mean() - expected) < 0.01


def test_ideal_gas_slab_is_flat_beyond_thickness(rng):
    n_atoms, n_frames, width, thickness = 200, 60, 16.0, 4.0
    positions = rng.uniform(0.0, 1.0, (n_frames, n_atoms, 3)) * [width, width, thickness]
    cell = np.diag([width, width, 30.0])
    pbc = (True, True, False)
    result = rdf(positions, cell, np.full(n_atoms, 1), 8.0, 16, pbc=pbc, slab_thickness=thickness)
    outer = result.r > 1.5  # r runs past the thickness: the slab shell correction is exercised
    expected = (n_atoms - 1) / n_atoms
    np.testing.assert_allclose(result.total[outer], expected, rtol=0.05)
    assert abs(result.total[outer].mean() - expected) < 0.01
    # the default thickness is the atoms' extent, slightly below the true one for random points
    default = rdf(positions, cell, np.full(n_atoms, 1), 8.0, 16, pbc=pbc)
    assert np.all(np.abs(default.total[outer] / result.total[outer] - 1.0) < 0.02)


def test_streaming_equals_whole_exactly(rng, uneven_blocks):
    positions, cells, numbers = _triclinic_frames(rng, n_frames=30, n_atoms=20)
    whole = rdf(positions, cells, numbers, 4.5, 30)
    acc = RDFAccumulator(numbers, 4.5, 30)
    for block in uneven_blocks(positions.shape[0]):
        acc.update(positions[block], cells[block])
    streamed = acc.result()
    assert streamed.n_frames == whole.n_frames == 30
    np.testing.assert_array_equal(streamed.total, whole.total)
    for key, value in whole.partial.items():
        np.testing.assert_array_equal(streamed.partial[key], value)


def test_rmax_beyond_half_width_is_refused(rng):
    positions = rng.uniform(0.0, 10.0, (2, 10, 3))
    with pytest.raises(ValueError, match="half the smallest perpendicular cell width"):
        rdf(positions, np.eye(3) * 10.0, np.full(10, 1), 5.01, 10)
    rdf(positions, np.eye(3) * 10.0, np.full(10, 1), 5.0, 10)  # exactly half is allowed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pbc": False}, "density is undefined"),
        ({"pbc": (True, False, False)}, "density is undefined"),
        ({"slab_thickness": 3.0}, "only applies to slab"),
        ({"rmax": -1.0}, "rmax must be positive"),
        ({"nbins": 0}, "nbins must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"numbers": np.ones(4, dtype=int), "rmax": 2.0, "nbins": 10} | kwargs
    with pytest.raises(ValueError, match=message):
        RDFAccumulator(**arguments)


def test_bad_shapes(rng):
    acc = RDFAccumulator(np.ones(4, dtype=int), 2.0, 10)
    with pytest.raises(ValueError, match=r"positions has 5 atoms, expected 4"):
        acc.update(rng.uniform(size=(2, 5, 3)), np.eye(3) * 5)
    with pytest.raises(ValueError, match=r"cell must have shape"):
        acc.update(rng.uniform(size=(2, 4, 3)), np.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="no frames"):
        acc.result()
