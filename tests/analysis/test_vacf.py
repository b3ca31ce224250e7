"""VACF and its spectrum: brute force, free particles, harmonic oscillators, streaming."""

from __future__ import annotations

import numpy as np
import pytest

from flashmd.analysis import VACFAccumulator, vacf, vibrational_dos
from flashmd.analysis.vacf import mean_frequency
from flashmd.units import FS


def _momenta(velocities_A_per_fs: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Momenta in ASE units from velocities (n_frames, n_atoms, 3) Å/fs."""
    return velocities_A_per_fs * masses[None, :, None] / FS


def test_matches_brute_force_per_species_and_mass_weighted(rng):
    n_frames, masses = 50, np.array([1.0, 1.0, 16.0, 12.0, 16.0])
    numbers = np.array([1, 1, 8, 6, 8])
    velocities = rng.normal(size=(n_frames, masses.size, 3))
    momenta = _momenta(velocities, masses)
    for mass_weighted in (False, True):
        result = vacf(momenta, masses, 2.0, numbers, mass_weighted=mass_weighted)
        for number in (1, 8, None):
            atoms = np.ones(masses.size, bool) if number is None else numbers == number
            w = masses[atoms] if mass_weighted else np.ones(atoms.sum())
            v = velocities[:, atoms]
            expected = [
                np.mean(np.sum(v[k:] * v[: n_frames - k], axis=2) @ w) / w.sum()
                for k in range(n_frames)
            ]
            got = result.total if number is None else result.of_species(number)
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.lag_fs, 2.0 * np.arange(n_frames))


def test_free_particles_are_constant(rng):
    masses = rng.uniform(1.0, 50.0, 40)
    velocities = np.broadcast_to(rng.normal(size=(40, 3)), (200, 40, 3))
    result = vacf(_momenta(velocities, masses), masses, 1.0, max_lag=150)
    mean_square = np.mean(np.sum(velocities[0] ** 2, axis=1))
    np.testing.assert_allclose(result.total, mean_square, rtol=1e-10)
    assert result.total.shape == (151,)


def test_harmonic_oscillators_cosine_and_spectrum_peak(rng):
    """Two species oscillating at 20 and 5 THz with random phases and amplitudes."""
    n_atoms, n_frames, dt_fs = 60, 4000, 2.0
    numbers = np.where(np.arange(n_atoms) < 30, 1, 8)
    masses = np.where(numbers == 1, 1.0, 16.0)
    nu_THz = np.where(numbers == 1, 20.0, 5.0)
    omega = 2.0 * np.pi * nu_THz * 1e-3  # rad/fs
    phase = rng.uniform(0.0, 2.0 * np.pi, (n_atoms, 3))
    amplitude = rng.uniform(0.05, 0.15, (n_atoms, 3))
    t = np.arange(n_frames) * dt_fs
    velocities = -amplitude * omega[:, None] * np.sin(omega[:, None] * t[:, None, None] + phase)
    result = vacf(_momenta(velocities, masses), masses, dt_fs, numbers, max_lag=1000)
    for number, nu in ((1, 20.0), (8, 5.0)):
        c = result.of_species(number)
        w = 2.0 * np.pi * nu * 1e-3
        # origin averaging leaves terms of order 1 / (omega T): well below 1 %
        np.testing.assert_allclose(c, c[0] * np.cos(w * result.lag_fs), rtol=0, atol=1e-2 * c[0])
        frequency, dos = vibrational_dos(c, dt_fs)
        assert abs(frequency[np.argmax(dos)] - nu) <= frequency[1]
        assert np.trapezoid(dos, frequency) == pytest.approx(1.0, abs=1e-12)


def test_streaming_equals_whole_exactly(rng, uneven_blocks):
    n_frames, masses = 2600, rng.uniform(1.0, 40.0, 6)
    numbers = np.array([1, 2, 1, 2, 1, 3])
    momenta = rng.normal(size=(n_frames, 6, 3))
    for max_lag in (40, 1500):
        whole = vacf(momenta, masses, 1.0, numbers, max_lag=max_lag, mass_weighted=True)
        acc = VACFAccumulator(masses, 1.0, max_lag, numbers, mass_weighted=True)
        for block in uneven_blocks(n_frames):
            acc.update(momenta[block])
            if block.start == 11:  # an intermediate result leaves the state untouched
                acc.result()
        np.testing.assert_array_equal(acc.result().values, whole.values)


def test_fewer_frames_than_lags_truncates(rng):
    masses = np.ones(3)
    acc = VACFAccumulator(masses, 1.0, 100)
    acc.update(rng.normal(size=(10, 3, 3)))
    assert acc.result().values.shape == (10, 2)


def test_spectrum_without_window_is_normalised():
    lags = np.arange(64)
    frequency, dos = vibrational_dos(np.exp(-lags / 10.0), 1.0, window=False)
    assert np.trapezoid(dos, frequency) == pytest.approx(1.0, abs=1e-12)
    assert frequency[1] == pytest.approx(1e3 / (2 * 63))


def test_bad_input(rng):
    with pytest.raises(ValueError, match="masses must all be positive"):
        VACFAccumulator(np.array([1.0, 0.0]), 1.0, 10)
    with pytest.raises(ValueError, match="dt_fs must be positive"):
        VACFAccumulator(np.ones(2), 0.0, 10)
    with pytest.raises(ValueError, match="max_lag must be a non-negative integer"):
        VACFAccumulator(np.ones(2), 1.0, -1)
    with pytest.raises(ValueError, match="same length"):
        VACFAccumulator(np.ones(2), 1.0, 10, numbers=np.ones(3, dtype=int))
    with pytest.raises(ValueError, match="momenta must have shape"):
        VACFAccumulator(np.ones(2), 1.0, 10).update(np.ones((5, 2)))
    with pytest.raises(ValueError, match="no frames"):
        VACFAccumulator(np.ones(2), 1.0, 10).result()
    with pytest.raises(ValueError, match="zero lag must be positive"):
        vibrational_dos(np.zeros(10), 1.0)


def test_mean_frequency_of_a_cosine_is_its_frequency_within_the_band():
    dt_fs, nu = 4.0, 6.0
    lags = np.arange(251) * dt_fs
    frequency, dos = vibrational_dos(np.cos(2 * np.pi * nu * 1e-3 * lags), dt_fs)
    assert mean_frequency(frequency, dos, frequency[-1]) == pytest.approx(nu, abs=0.1)
    # slower vibrations (a stride that stretches every period by 10 %) read 10 % lower
    slow_frequency, slow_dos = vibrational_dos(np.cos(2 * np.pi * nu / 1.1 * 1e-3 * lags), dt_fs)
    ratio = mean_frequency(slow_frequency, slow_dos, 60.0) / mean_frequency(frequency, dos, 60.0)
    assert ratio == pytest.approx(1 / 1.1, abs=0.01)
    # the band limits the moment: a band below the line cuts it off
    assert mean_frequency(frequency, dos, 3.0) < 3.0
    with pytest.raises(ValueError, match="fewer than two frequencies"):
        mean_frequency(frequency, dos, 1e-3)
