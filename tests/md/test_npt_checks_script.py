"""scripts/npt_checks.py: the expansion coefficient, block errors and the melting criterion."""

from __future__ import annotations

import numpy as np

from tests.conftest import load_script

npt_checks = load_script("npt_checks")


def test_expansion_coefficient_of_a_known_line_and_block_errors():
    temperatures = np.array([350.0, 550.0, 750.0, 950.0, 1150.0])
    alpha = 1.7e-5  # 1/K, linear; V(T) = V0 (1 + 3 alpha (T - 750))
    volumes = 11.9 * (1 + 3 * alpha * (temperatures - 750.0))
    assert abs(npt_checks.expansion_coefficient(temperatures, volumes) / alpha - 1) < 1e-12
    noise = np.random.default_rng(0).normal(0.0, 0.05, size=20000)
    mean, error = npt_checks.mean_and_error(11.9 + noise)
    assert abs(mean - 11.9) < 4 * error and 0.2 * 0.05 / np.sqrt(18000) < error < 0.05 / 10


class Frames:
    """A stand-in reader: positions (n_frames, n_atoms, 3)."""

    def __init__(self, positions: np.ndarray) -> None:
        self.positions, self.n_frames = positions, len(positions)

    def frame(self, index: int) -> dict[str, np.ndarray]:
        return {"positions": self.positions[index]}


def test_second_half_msd_ignores_the_centre_of_mass_and_sees_diffusion():
    rng = np.random.default_rng(1)
    start = rng.uniform(0, 10, size=(32, 3))
    drifting = start + np.linspace(0, 5, 11)[:, None, None]  # the whole crystal moves
    assert npt_checks.second_half_msd(Frames(drifting)) < 1e-20
    walk = start + np.cumsum(rng.normal(0, 0.5, size=(11, 32, 3)), axis=0)  # a liquid
    assert npt_checks.second_half_msd(Frames(walk)) > 2.0
