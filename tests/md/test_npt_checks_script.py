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


def test_pressure_error_of_a_model_on_its_own_reference(tmp_path):
    """al-emt against asap3 EMT on tiny Al frames: finite, one value per frame, and within a
    few GPa (a sign or unit slip would give tens: the stress itself is about 1 GPa)."""
    from flashmd.data.generate import generate
    from flashmd.data.recipes import load_recipe
    from flashmd.data.store import TrajectoryStore
    from flashmd.models.io import load_model
    from tests.conftest import REPO

    pressure_error = load_script("pressure_error")
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml").model_copy(
        update={"production_fs": 40.0, "equilibration_fs": 20.0}
    )
    generate(recipe, str(tmp_path / "s.zarr"), progress=False)
    store = TrajectoryStore.open(tmp_path / "s.zarr")
    errors = pressure_error.pressure_errors(load_model("al-emt"), store[store.ids()[0]], 3)
    assert errors.shape == (3,) and np.isfinite(errors).all() and np.abs(errors).max() < 3.0
