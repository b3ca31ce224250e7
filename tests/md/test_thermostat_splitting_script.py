"""``scripts/thermostat_splitting.py``: the frequency shift of Langevin in half-strides."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_script

splitting = load_script("thermostat_splitting")


def test_one_mode_follows_the_closed_form():
    """``c^n [cos nθ + b sin nθ]`` of the module docstring, one mode of 5 THz at 32 fs."""
    gamma, h = 0.01, 32.0
    omega = np.array([2 * np.pi * 5e-3])
    vacf = splitting.stroboscopic_vacf(splitting.split_map(omega, gamma, h), 1, 12)
    c = np.exp(-gamma * h / 2)
    theta = np.arccos(np.cosh(gamma * h / 2) * np.cos(omega[0] * h))
    b = -np.sinh(gamma * h / 2) * np.cos(omega[0] * h) / np.sin(theta)
    n = np.arange(13)
    assert vacf == pytest.approx(c**n * (np.cos(n * theta) + b * np.sin(n * theta)), abs=1e-12)


def test_the_split_process_matches_a_seeded_simulation():
    """The exact VACF against O(h/2) B O(h/2) simulated with noise for 400 modes."""
    rng = np.random.default_rng(3)
    gamma, h, n_frames = 0.01, 32.0, 4000
    omega = splitting.debye_modes(7.0, 400)
    c = np.exp(-gamma * h / 2)
    cos, sin = np.cos(omega * h), np.sin(omega * h)
    q, p = rng.standard_normal(omega.size), rng.standard_normal(omega.size)  # (ωq, p)
    frames = np.empty((n_frames, omega.size))
    for frame in range(n_frames):
        p = c * p + np.sqrt(1 - c * c) * rng.standard_normal(omega.size)
        q, p = cos * q + sin * p, -sin * q + cos * p
        p = c * p + np.sqrt(1 - c * c) * rng.standard_normal(omega.size)
        frames[frame] = p
    simulated = [np.mean(frames[: n_frames - k] * frames[k:]) for k in range(6)]
    exact = splitting.stroboscopic_vacf(splitting.split_map(omega, gamma, h), 1, 5)
    assert simulated == pytest.approx(exact, abs=0.01)


def test_the_shift_vanishes_without_friction_and_grows_with_the_stride():
    kwargs = {"debye_THz": 7.0, "fine_fs": 2.0, "max_lag_fs": 1000.0}
    _, none = splitting.frequency_shift(1e-6, 32.0, **kwargs)
    assert abs(none) < 1e-4
    _, same = splitting.frequency_shift(0.01, 2.0, **kwargs)  # the reference's own process
    assert same == pytest.approx(0.0, abs=1e-12)
    shifts = [splitting.frequency_shift(0.01, h, **kwargs)[1] for h in (16.0, 32.0, 64.0)]
    assert shifts[0] < 0 and shifts[2] < shifts[1] < shifts[0]
    assert shifts[1] == pytest.approx(-0.043, abs=0.003)  # the engine measured -4.0 to -4.2 %
