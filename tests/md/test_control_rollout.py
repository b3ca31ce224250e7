"""``scripts/control_rollout.py``: the engine with an exact map needs no repair from the filter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from flashmd.data.generate import generate
from flashmd.data.store import TrajectoryStore

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "control_rollout.py"


def run_control(recipe, tmp_path: Path, *args: str) -> tuple[str, Path]:
    """Generate ``recipe``'s reference, run the control script on it with ``args``; returns the
    reference's and the control's paths."""
    reference = str(tmp_path / "reference.zarr")
    generate(recipe, reference, progress=False)
    out = tmp_path / "control.zarr"
    subprocess.run([sys.executable, str(SCRIPT), reference, *args, "-o", str(out)], check=True)
    return reference, out


def test_control_run_starts_from_the_reference_and_is_never_repaired(tiny_recipe, tmp_path):
    args = ["--temperature-K", "900", "--stride-fs", "16", "--strides", "4"]
    reference, out = run_control(tiny_recipe, tmp_path, *args)
    control, ref = TrajectoryStore.open(out), TrajectoryStore.open(reference)
    assert len(control) == 2  # the two systems at 900 K
    for traj_id in control:
        trajectory = control[traj_id]
        source = ref[trajectory.attrs["start_from"]["trajectory"]]
        assert trajectory.n_frames == 5 and trajectory.status == "complete"
        first, stored = trajectory.frame(0), source.frame(0)
        np.testing.assert_array_equal(first["positions"], stored["positions"])
        assert not trajectory.group["filter_fallback"][:].any()
        # velocity Verlet at 2 fs conserves the reference energy to well within the 5 % band
        assert np.abs(trajectory.group["filter_scale"][1:] - 1.0).max() < 0.01


def test_control_on_an_energy_model_moves_on_that_model(tiny_recipe, tmp_path):
    from flashmd.ase.calculator import EnergyCalculator
    from flashmd.models.io import load_model

    args = ["--temperature-K", "900", "--stride-fs", "16", "--strides", "2"]
    _, out = run_control(tiny_recipe, tmp_path, *args, "--model", "emt-metals")
    trajectory = TrajectoryStore.open(out)[TrajectoryStore.open(out).ids()[0]]
    assert "energy model of emt-metals" in trajectory.attrs["calculator"]["name"]
    assert not trajectory.group["filter_fallback"][:].any()
    calculator = EnergyCalculator(load_model("emt-metals"))
    for k in range(trajectory.n_frames):
        atoms = trajectory.to_atoms(k)
        atoms.calc = calculator
        # the stored V is the energy model's, which the filter priced the strides with
        assert abs(atoms.get_potential_energy() - trajectory.frame(k)["energy"]) < 1e-4


def test_control_at_constant_pressure_moves_the_cell_and_says_so(tiny_recipe, tmp_path):
    # a large pressure and a short barostat time make the volume move visibly in three strides
    args = ["--temperature-K", "600", "--stride-fs", "16", "--strides", "3"]
    _, out = run_control(
        tiny_recipe, tmp_path, *args, "--pressure-GPa", "20", "--barostat-tau-fs", "100"
    )
    for traj_id in TrajectoryStore.open(out):
        trajectory = TrajectoryStore.open(out)[traj_id]
        assert trajectory.attrs["ensemble"] == "npt"
        volumes = np.abs(np.linalg.det(trajectory.read(0, 4, keys=("cell",))["cell"]))
        assert volumes[-1] < 0.995 * volumes[0]  # compressed by 20 GPa
        assert not trajectory.group["filter_fallback"][:].any()


def test_control_under_bussi_records_its_thermostat_and_no_friction(tiny_recipe, tmp_path):
    args = ["--temperature-K", "900", "--stride-fs", "16", "--strides", "2"]
    _, out = run_control(tiny_recipe, tmp_path, *args, "--thermostat", "bussi", "--taut-fs", "50")
    for traj_id in TrajectoryStore.open(out):
        attrs = TrajectoryStore.open(out)[traj_id].attrs
        assert attrs["ensemble"] == "bussi" and attrs["taut_fs"] == 50.0
        # no Langevin friction recorded, so evaluate adds no half-stride friction note
        assert "friction_per_fs" not in attrs
