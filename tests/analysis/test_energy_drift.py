"""Energy traces and NVE drift: a known linear drift, fluctuations, streaming, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from flashmd.analysis import EnergyAccumulator, energy_traces, nve_drift


def _trajectory(rng, n_frames=500, n_atoms=20, drift_eV_per_fs=2e-4, noise_eV=1e-3):
    """Frames whose total energy is E0 + drift * t + alternating noise of amplitude noise_eV."""
    masses = rng.uniform(1.0, 60.0, n_atoms)
    momenta = rng.normal(size=(n_frames, n_atoms, 3)) * np.sqrt(masses)[None, :, None] * 0.2
    kinetic = 0.5 * np.einsum("fnc,fnc,n->f", momenta, momenta, 1.0 / masses)
    time_fs = 100.0 + 4.0 * np.arange(n_frames)
    noise = noise_eV * np.where(np.arange(n_frames) % 2 == 0, 1.0, -1.0)
    total = -50.0 + drift_eV_per_fs * time_fs + noise
    return time_fs, total - kinetic, momenta, masses, kinetic, total


def test_known_drift_and_fluctuations(rng):
    time_fs, potential, momenta, masses, kinetic, total = _trajectory(rng)
    result = energy_traces(time_fs, potential, momenta, masses)
    np.testing.assert_allclose(result.kinetic, kinetic, rtol=1e-12)
    np.testing.assert_allclose(result.total, total, rtol=1e-12)
    np.testing.assert_array_equal(result.potential, potential)
    # 2e-4 eV/fs over 20 atoms = 1e-5 eV/atom/fs = 1e-2 eV/atom/ps
    assert result.fit.drift_eV_per_atom_per_ps == pytest.approx(1e-2, rel=1e-3)
    # alternating +-1 meV noise is almost orthogonal to the line: the residual is the noise
    assert result.fit.residual_std_eV_per_atom == pytest.approx(1e-3 / 20, rel=1e-2)
    assert result.fit.std_eV_per_atom == pytest.approx(np.std(total) / 20, rel=1e-12)


def test_conserved_energy_has_no_drift():
    time_fs = np.arange(100.0)
    fit = nve_drift(time_fs, np.full(100, -3.25), n_atoms=4)
    assert abs(fit.drift_eV_per_atom_per_ps) < 1e-12
    assert fit.residual_std_eV_per_atom < 1e-12
    assert fit.intercept_eV == pytest.approx(-3.25)


def test_streaming_equals_whole_exactly(rng, uneven_blocks):
    time_fs, potential, momenta, masses, _, _ = _trajectory(rng, n_frames=300)
    whole = energy_traces(time_fs, potential, momenta, masses)
    acc = EnergyAccumulator(masses)
    for block in uneven_blocks(300):
        acc.update(time_fs[block], potential[block], momenta[block])
    streamed = acc.result()
    np.testing.assert_array_equal(streamed.total, whole.total)
    assert streamed.fit == whole.fit


def test_bad_input(rng):
    acc = EnergyAccumulator(np.ones(2))
    with pytest.raises(ValueError, match="must cover the same frames"):
        acc.update(np.arange(3.0), np.zeros(4), np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="no frames"):
        acc.result()
    with pytest.raises(ValueError, match="at least two frames"):
        nve_drift(np.zeros(3), np.zeros(3), 1)
    with pytest.raises(ValueError, match="equal length"):
        nve_drift(np.arange(3.0), np.zeros(4), 1)
