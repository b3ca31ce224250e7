"""``scripts/temperature_swings.py``: the spread and dominant frequency of T(t)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_script

temperature_swings = load_script("temperature_swings")


def test_a_pumped_vibration_shows_as_one_frequency():
    frame_fs, n = 32.0, 1000
    t = np.arange(n) * frame_fs
    rng = np.random.default_rng(0)
    temperature = 700 + 200 * np.sin(2 * np.pi * 0.0119 * t) + rng.normal(0, 20, n)  # 11.9 THz
    scale = np.where(np.arange(n) % 10 == 0, 0.0, 1.01)
    fallback = (np.arange(n) % 10 == 0).astype(float)
    row = temperature_swings.swings(temperature, frame_fs, scale, fallback)
    assert row.peak_THz == pytest.approx(11.9, abs=0.05)
    assert row.peak_share > 0.8
    assert row.std_K == pytest.approx(200 / np.sqrt(2), rel=0.05)
    assert row.alpha_median == pytest.approx(1.01) and row.redone == pytest.approx(0.1)
    steady = temperature_swings.swings(700 + rng.normal(0, 20, n), frame_fs)
    assert steady.peak_share < 0.05 and np.isnan(steady.alpha_median)


def test_too_few_frames_are_refused():
    with pytest.raises(ValueError, match="at least 4 frames"):
        temperature_swings.swings(np.ones(3), 32.0)
