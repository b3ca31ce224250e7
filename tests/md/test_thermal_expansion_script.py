"""scripts/thermal_expansion.py: the expansion coefficient and the block errors it reports."""

from __future__ import annotations

import numpy as np
from tests.conftest import load_script


def test_expansion_coefficient_of_a_known_line_and_block_errors():
    script = load_script("thermal_expansion")
    temperatures = np.array([350.0, 550.0, 750.0, 950.0, 1150.0])
    alpha = 1.7e-5  # 1/K, linear; V(T) = V0 (1 + 3 alpha (T - 750))
    volumes = 11.9 * (1 + 3 * alpha * (temperatures - 750.0))
    assert abs(script.expansion_coefficient(temperatures, volumes) / alpha - 1) < 1e-12
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.05, size=20000)
    mean, error = script.mean_and_error(11.9 + noise)
    assert abs(mean - 11.9) < 4 * error and 0.2 * 0.05 / np.sqrt(18000) < error < 0.05 / 10
