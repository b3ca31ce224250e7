"""MSD and diffusion: brute force, free particles, random walks, ASE's DiffusionCoefficient."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.md.analysis import DiffusionCoefficient
from scipy.linalg import hadamard

from flashmd.analysis import MSDAccumulator, diffusion_coefficient, msd
from flashmd.units import FS


def _brute_force(positions: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    n_frames = positions.shape[0]
    return np.array(
        [
            np.mean(np.sum((positions[k:, atoms] - positions[: n_frames - k, atoms]) ** 2, axis=2))
            for k in range(n_frames)
        ]
    )


def test_matches_brute_force_with_and_without_com_removal(rng):
    n_frames, numbers = 60, np.array([1, 1, 8, 8, 8, 1, 6])
    masses = rng.uniform(1.0, 20.0, numbers.size)
    positions = 30.0 + np.cumsum(rng.normal(size=(n_frames, numbers.size, 3)), axis=0)
    positions += 0.3 * np.arange(n_frames)[:, None, None]  # a drift of the whole system
    result = msd(positions, numbers, 2.0)
    np.testing.assert_allclose(result.total, _brute_force(positions, numbers > 0), atol=1e-9)
    np.testing.assert_allclose(
        result.of_species(8), _brute_force(positions, numbers == 8), atol=1e-9
    )
    com = np.sum(positions * masses[None, :, None], axis=1) / masses.sum()
    relative = positions - com[:, None, :]
    result = msd(positions, numbers, 2.0, masses=masses, remove_com=True)
    np.testing.assert_allclose(result.total, _brute_force(relative, numbers > 0), atol=1e-9)
    np.testing.assert_allclose(
        result.of_species(1), _brute_force(relative, numbers == 1), atol=1e-9
    )
    per_axis = result.per_axis[:, result.group(1)]
    np.testing.assert_allclose(per_axis.sum(axis=1), result.of_species(1))


def test_free_particles_are_ballistic(rng):
    velocities = rng.normal(size=(50, 3))  # Å/fs
    dt_fs = 0.5
    t = np.arange(300) * dt_fs
    positions = rng.uniform(0.0, 10.0, (50, 3)) + t[:, None, None] * velocities
    result = msd(positions, np.full(50, 18), dt_fs, max_lag=200)
    mean_square = np.mean(np.sum(velocities**2, axis=1))
    np.testing.assert_allclose(result.total, mean_square * result.lag_fs**2, rtol=1e-9, atol=1e-9)


def _hadamard_walk(rng: np.random.Generator, n_atoms: int, n_steps: int, step: float):
    """Random walk of ±step moves whose columns are orthogonal: the MSD from every time origin
    is exactly step^2 * lag per axis, so one-origin (ASE) and all-origin fits must agree."""
    matrix = hadamard(n_atoms).astype(np.float64)
    positions = np.zeros((n_steps + 1, n_atoms, 3))
    for axis in range(3):
        moves = (
            matrix[:, rng.permutation(n_atoms)[:n_steps]]
            * rng.choice([-1.0, 1.0], n_atoms)[:, None]
        )
        positions[1:, :, axis] = np.cumsum(moves[rng.permutation(n_atoms)].T * step, axis=0)
    return positions + rng.uniform(0.0, 20.0, (1, n_atoms, 3))


def test_matches_ase_diffusion_coefficient(rng):
    n_steps, dt_fs = 64, 5.0
    positions = np.concatenate(
        [_hadamard_walk(rng, 128, n_steps, 0.3), _hadamard_walk(rng, 64, n_steps, 0.1)], axis=1
    )
    numbers = np.array([18] * 128 + [2] * 64)
    images = [Atoms(numbers=numbers, positions=p) for p in positions]
    ase_fit = DiffusionCoefficient(images, dt_fs * FS)
    ase_fit.calculate()
    ase_D = dict(
        zip(
            ase_fit.types_of_atoms,
            np.array(ase_fit.get_diffusion_coefficients()[0]) * FS,
            strict=True,
        )
    )
    result = msd(positions, numbers, dt_fs)
    # ASE fits every image of the segment, lag 0 included, with a free intercept
    for symbol, number in (("Ar", 18), ("He", 2)):
        ours = diffusion_coefficient(result, 0.0, n_steps * dt_fs, species=number)
        assert ours.D_A2_per_fs == pytest.approx(ase_D[symbol], rel=0.02)
        assert ours.D_cm2_per_s == pytest.approx(0.1 * ase_D[symbol], rel=0.02)
    assert ase_D["Ar"] == pytest.approx(0.3**2 / (2 * dt_fs), rel=1e-9)  # sanity of the setup


def test_gaussian_random_walk_diffusion(rng):
    n_atoms, n_frames, dt_fs, D = 1000, 400, 2.0, 0.01  # Å^2/fs
    steps = rng.normal(scale=np.sqrt(2.0 * D * dt_fs), size=(n_frames, n_atoms, 3))
    result = msd(np.cumsum(steps, axis=0), np.full(n_atoms, 1), dt_fs, max_lag=50)
    fit = diffusion_coefficient(result, 2.0, 100.0)
    # relative standard error of this estimate is 0.7 % (0.8 % in 2-D), measured over seeds
    assert fit.D_A2_per_fs == pytest.approx(D, rel=0.04)
    lateral = diffusion_coefficient(result, 2.0, 100.0, axes=(0, 1))
    assert lateral.n_dims == 2
    assert lateral.D_A2_per_fs == pytest.approx(D, rel=0.04)


def test_streaming_equals_whole_exactly(rng, uneven_blocks):
    n_frames, numbers = 2300, np.array([1, 2, 2, 1, 5])
    masses = rng.uniform(1.0, 10.0, numbers.size)
    positions = np.cumsum(rng.normal(size=(n_frames, numbers.size, 3)), axis=0)
    for max_lag in (30, 1100):
        whole = msd(positions, numbers, 1.0, max_lag=max_lag, masses=masses, remove_com=True)
        acc = MSDAccumulator(numbers, 1.0, max_lag, masses=masses, remove_com=True)
        for block in uneven_blocks(n_frames):
            acc.update(positions[block])
        np.testing.assert_array_equal(acc.result().per_axis, whole.per_axis)


def test_bad_input(rng):
    with pytest.raises(ValueError, match="remove_com needs the masses"):
        MSDAccumulator(np.ones(3, dtype=int), 1.0, 10, remove_com=True)
    with pytest.raises(ValueError, match="1-D integer array"):
        MSDAccumulator(np.ones(3), 1.0, 10)
    result = msd(rng.normal(size=(5, 2, 3)), np.ones(2, dtype=int), 1.0)
    with pytest.raises(ValueError, match="fewer than two lags"):
        diffusion_coefficient(result, 10.0, 20.0)
    with pytest.raises(ValueError, match="axes must be"):
        diffusion_coefficient(result, 0.0, 4.0, axes=(3,))
    with pytest.raises(KeyError, match="atomic number 7"):
        result.of_species(7)
