"""``flashmd evaluate``: verdicts and exit statuses, report files, pairing, tolerances, streaming.

Reference stores come from the project's generator (``data/al-emt-tiny.yaml`` shortened to
400 fs of production, 101 frames per trajectory); rollout-like stores are copies with a change
(hotter momenta, a NaN) or synthetic Einstein crystals written with the store writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk
from matplotlib.image import imread

from flashmd.analysis import kinetic_temperature, msd, rdf
from flashmd.analysis import observables as observables_module
from flashmd.analysis.observables import observe
from flashmd.analysis.pairing import PairingError, pair_trajectories
from flashmd.analysis.plots import filter_figure
from flashmd.analysis.pooled import Pooled
from flashmd.analysis.report import evaluate
from flashmd.analysis.sampling import standard_error_of_mean
from flashmd.analysis.tolerances import ToleranceError, load_config, parse_config
from flashmd.analysis.vacf import mean_frequency, vibrational_dos
from flashmd.bench.evaluate import write_einstein_store
from flashmd.bench.rollout import bench_model
from flashmd.cli import main
from flashmd.data import store as store_module
from flashmd.data.generate import generate
from flashmd.data.recipes import load_recipe, parse_recipe
from flashmd.data.store import TrajectoryStore
from flashmd.models.io import save_checkpoint
from tests.analysis.series import ar1

REPO = Path(__file__).resolve().parents[2]
FCC_600 = "00000_al-fcc_600K_r0"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    """Four reference trajectories (Al108 and Al107 at 600 and 900 K), 101 frames each."""
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml")
    recipe = recipe.model_copy(update={"production_fs": 400.0, "equilibration_fs": 40.0})
    location = str(tmp_path_factory.mktemp("ref") / "ref.zarr")
    generate(recipe, location, progress=False)
    return location


def copy_store(
    source: str, target: str, change=None, attrs: dict | None = None, recipe: dict | None = None
) -> str:
    """Copy every trajectory of ``source`` into a new store (of ``recipe``, default a recipe
    named ``changed-copy`` without calculator), ``change(frames)`` applied and ``attrs``
    updating each trajectory's attributes."""
    src = TrajectoryStore.open(source)
    dst = TrajectoryStore.create(target, recipe or {"name": "changed-copy"})
    for traj_id in src.ids():
        reader = src[traj_id]
        frames = reader.read(keys=("positions", "momenta", "cell", "energy", "time_fs"))
        if change is not None:
            change(frames)
        new_attrs = {**reader.attrs, **(attrs or {})}
        writer = dst.writer(traj_id, reader.numbers, reader.masses, new_attrs, False)
        for k in range(len(frames["time_fs"])):
            writer.append({key: value[k] for key, value in frames.items()})
        writer.close(complete=True)
    return target


@pytest.fixture(scope="module")
def hotter(reference, tmp_path_factory) -> str:
    """The reference with momenta scaled so that every temperature is 10 % higher."""

    def heat(frames):
        frames["momenta"] *= np.sqrt(1.1)

    return copy_store(reference, str(tmp_path_factory.mktemp("hot") / "hot.zarr"), heat)


def run_cli(*args: str) -> int:
    return main(["evaluate", "--quiet", *args])


def statuses(out: Path) -> dict[str, str]:
    """metric key -> status of the first condition in ``out/summary.json``."""
    summary = json.loads((out / "summary.json").read_text())
    return {m["key"]: m["status"] for m in summary["conditions"][0]["metrics"]}


def test_store_against_itself_passes_and_writes_a_readable_report(reference, tmp_path, capsys):
    out = tmp_path / "report"
    status = run_cli(
        "--reference", reference, "--rollout", reference, "--out", str(out), "--html",
        "--trajectories", FCC_600,
    )  # fmt: skip
    assert status == 0
    assert "evaluate: PASS" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True
    (condition,) = summary["conditions"]
    assert condition["label"] == "Al108 600 K"
    rows = {m["key"]: m for m in condition["metrics"]}
    assert {m["status"] for m in rows.values()} <= {"pass", "skip"}
    assert rows["temperature"]["difference"] == 0.0 and rows["rdf"]["difference"] == 0.0
    assert rows["nve_drift"]["status"] == "pass"  # the reference production is NVE
    assert rows["diffusion"]["status"] == "skip"  # a solid: MSD stays below 1 Å^2
    assert rows["fallback_fraction"]["status"] == "skip"  # no filter statistics
    markdown = (out / "report.md").read_text()
    expected = {"rdf", "vacf", "msd", "temperature", "equipartition", "energy"}
    assert set(condition["figures"]) == expected
    for path in condition["figures"].values():
        image = imread(path)
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert np.ptp(image[..., :3]) > 0.5  # not blank
        assert f"figures/{Path(path).name}" in markdown
    assert "PASS: every tolerance held." in markdown
    assert "<table>" in (out / "report.html").read_text()


def _breathing(amplitude: float, scale: float = 1.0):
    """A change that scales each frame's cell and positions by ``scale (1 + amplitude sin k)``:
    a volume that fluctuates as at constant pressure."""

    def change(frames):
        factor = scale * (1 + amplitude * np.sin(np.arange(len(frames["cell"]))))
        frames["cell"] *= factor[:, None, None]
        frames["positions"] *= factor[:, None, None]

    return change


def test_constant_pressure_rollouts_are_judged_on_their_volume(reference, tmp_path):
    npt = {"ensemble": "npt"}
    base = copy_store(reference, str(tmp_path / "a.zarr"), _breathing(0.004), npt)
    same = evaluate(base, base, tmp_path / "same", figures=False)
    rows = {m.key: m for m in same.conditions[0].metrics}
    assert rows["volume"].status == "pass" and rows["volume_std"].status == "pass"
    assert rows["volume_std"].reference > 0
    plain = evaluate(reference, reference, tmp_path / "plain", figures=False)
    assert "volume" not in {m.key for m in plain.conditions[0].metrics}  # NVE: not shown
    larger = copy_store(reference, str(tmp_path / "b.zarr"), _breathing(0.004, 1.003), npt)
    wilder = copy_store(reference, str(tmp_path / "c.zarr"), _breathing(0.006), npt)
    for rollout, failing in ((larger, "volume"), (wilder, "volume_std")):
        report = evaluate(base, rollout, tmp_path / failing, figures=False)
        rows = {m.key: m for m in report.conditions[0].metrics}
        assert rows[failing].status == "fail"
        assert {rows["volume"].status, rows["volume_std"].status} == {"pass", "fail"}


def _random_breathing(amplitude: float, correlation: float, seed: int = 3):
    """Like :func:`_breathing` with a seeded first-order autoregressive factor of unit variance
    (:func:`tests.analysis.series.ar1`, one seed per trajectory): a volume whose successive
    frames are correlated (integrated time ``(1 + c) / (1 - c)`` frames), as a liquid's."""
    seeds = iter(range(seed, seed + 1000))

    def change(frames):
        series = ar1(correlation, len(frames["cell"]), next(seeds)) * np.sqrt(1 - correlation**2)
        factor = 1 + amplitude * series
        frames["cell"] *= factor[:, None, None]
        frames["positions"] *= factor[:, None, None]

    return change


def test_volume_rows_carry_the_noise_of_correlated_volumes(reference, tmp_path):
    npt = {"ensemble": "npt"}
    store = copy_store(reference, str(tmp_path / "npt.zarr"), _random_breathing(0.004, 0.8), npt)
    report = evaluate(store, store, tmp_path / "report", figures=False)
    condition = report.conditions[0]
    rows = {m.key: m for m in condition.metrics}
    volumes = condition.reference.volumes_per_atom  # (n_frames,) Å³/atom, one replica
    error = standard_error_of_mean(volumes)
    # 2σ of the relative difference of two runs with this error each
    assert rows["volume"].noise == pytest.approx(2 * np.sqrt(2) * error / volumes.mean())
    assert error > 1.3 * volumes.std() / np.sqrt(volumes.size)  # correlated: fewer samples
    assert 0 < rows["volume_std"].noise < 1
    doubled = Pooled(condition.reference.trajectories * 2)  # two replicas: error / sqrt 2
    assert doubled.volume_standard_error == pytest.approx(error / np.sqrt(2), rel=1e-9)


def test_every_condition_is_paired_and_replicas_are_pooled(reference, tmp_path):
    report = evaluate(reference, reference, tmp_path, figures=False)
    labels = [c.condition.label for c in report.conditions]
    assert sorted(labels) == ["Al107 600 K", "Al107 900 K", "Al108 600 K", "Al108 900 K"]
    assert report.passed and not report.unmatched
    single = report.conditions[0].reference
    doubled = Pooled(single.trajectories * 2)
    assert doubled.temperature == pytest.approx(single.temperature, rel=1e-12)
    np.testing.assert_allclose(doubled.vacf.values, single.vacf.values, rtol=1e-12)
    np.testing.assert_allclose(doubled.rdf.total, single.rdf.total, rtol=1e-12)


def test_ten_percent_hotter_rollout_fails_the_temperature_only(reference, hotter, tmp_path, capsys):
    out = tmp_path / "hot"
    status = run_cli(
        "--reference", reference, "--rollout", hotter, "--out", str(out), "--no-figures"
    )
    assert status == 1
    assert "FAIL" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    for condition in summary["conditions"]:
        rows = {m["key"]: m for m in condition["metrics"]}
        assert rows["temperature"]["status"] == "fail"
        assert rows["temperature"]["difference"] == pytest.approx(0.1, rel=1e-9)
        # 101 frames over 400 fs: noise measured, below the 10 % difference
        assert 0 < rows["temperature"]["noise"] < 0.1
        assert rows["potential_energy"]["noise"] > 0
        assert rows["potential_energy"]["status"] == "pass"
        assert rows["rdf"]["status"] == "pass"
    assert not (out / "figures").exists()


def test_slower_vibrations_fail_the_vibrational_frequency_only(reference, tmp_path):
    """The same frames on a time axis stretched by 10 %: every period 10 % longer, as a stride
    that slows the vibrations would make them; temperature and structure are unchanged."""

    def stretch(frames):
        frames["time_fs"] = frames["time_fs"] * 1.1

    interval = TrajectoryStore.open(reference)[FCC_600].attrs["sample_interval_fs"]
    slower = copy_store(
        reference, str(tmp_path / "slow.zarr"), stretch, {"sample_interval_fs": 1.1 * interval}
    )
    out = tmp_path / "slow"
    assert (
        run_cli("--reference", reference, "--rollout", slower, "--out", str(out), "--no-figures")
        == 1
    )
    summary = json.loads((out / "summary.json").read_text())
    for condition in summary["conditions"]:
        rows = {m["key"]: m for m in condition["metrics"]}
        assert rows["vibrational_frequency"]["status"] == "fail"
        assert rows["vibrational_frequency"]["difference"] == pytest.approx(-1 / 11, abs=0.01)
        assert rows["temperature"]["status"] == rows["rdf"]["status"] == "pass"
    same = tmp_path / "same"
    run_cli("--reference", reference, "--rollout", reference, "--out", str(same), "--no-figures")
    assert statuses(same)["vibrational_frequency"] == "pass"


def test_vibrations_are_compared_at_a_common_frame_interval(tmp_path):
    """An Einstein crystal (3-8 THz) every 4 fs, and every 20th of its frames (80 fs: Nyquist
    6.25 THz, so its 6.25-8 THz oscillators fold below it). The finer side's VACF taken at
    every 20th lag folds alike and reads the coarse side's mean frequency; the finer spectrum
    merely cut at 6.25 THz reads it 7 % low."""
    fine = str(tmp_path / "fine.zarr")
    write_einstein_store(fine, frames=2001, dt_fs=4.0)

    def decimate(frames):
        for name in list(frames):
            frames[name] = frames[name][::20]

    coarse = copy_store(fine, str(tmp_path / "coarse.zarr"), decimate, {"sample_interval_fs": 80})
    report = evaluate(fine, coarse, tmp_path / "report", figures=False)
    condition = report.conditions[0]
    row = {m.key: m for m in condition.metrics}["vibrational_frequency"]
    assert abs(row.difference) < 0.01 and "every 80 fs" in row.note
    frequency, dos = vibrational_dos(condition.reference.vacf.total, 4.0)
    cut = mean_frequency(frequency, dos, 6.25)
    assert cut / row.rollout - 1 < -0.05


@pytest.mark.parametrize(("friction", "noted"), [(0.01, True), (0.001, False)])
def test_a_strong_split_thermostat_is_named_on_the_frequency_row(
    reference, tmp_path, friction, noted
):
    """A Langevin rollout at 32 fs strides: at 0.01/fs (friction × stride 0.32) the half-stride
    thermostat alone moves the VACF, and the row says so; at 0.001/fs it does not."""
    rollout = copy_store(
        reference,
        str(tmp_path / "rollout.zarr"),
        attrs={"ensemble": "langevin", "friction_per_fs": friction, "timestep_fs": 32.0},
    )
    report = evaluate(reference, rollout, tmp_path / "report", figures=False)
    for condition in report.conditions:
        row = {m.key: m for m in condition.metrics}["vibrational_frequency"]
        assert ("gentler friction" in row.note) == noted
        assert row.status == "pass"  # a note, not a verdict


def test_a_looser_tolerance_file_lets_the_hotter_rollout_pass(reference, hotter, tmp_path):
    tolerances = tmp_path / "loose.yaml"
    # scaled momenta are no longer an NVE trajectory: K(t) * 1.1 + V(t) drifts with K's swings
    tolerances.write_text(
        "tolerances:\n  temperature_rel: 0.15\n  nve_drift_eV_per_atom_per_ps: 0.01\n"
    )
    args = ("--reference", reference, "--rollout", hotter, "--no-figures", "--tolerances")
    assert run_cli(*args, str(tolerances), "--out", str(tmp_path / "r")) == 0


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("tolerances:\n  temprature_rel: 0.1\n", "tolerances.temprature_rel: unknown field"),
        ("analysis:\n  rdf_bins: 10\n", "analysis.rdf_bins: unknown field"),
        ("tolernces:\n  temperature_rel: 0.1\n", "tolernces: unknown section"),
        ("tolerances:\n  temperature_rel: -1\n", "tolerances.temperature_rel"),
    ],
)
def test_invalid_tolerance_file_is_rejected_with_the_field_named(
    reference, tmp_path, capsys, text, field
):
    path = tmp_path / "tol.yaml"
    path.write_text(text)
    with pytest.raises(ToleranceError, match=field.replace(".", r"\.")):
        load_config(path)
    out = tmp_path / "never"
    args = ("--reference", reference, "--rollout", reference, "--tolerances", str(path))
    assert run_cli(*args, "--out", str(out)) == 2
    error = capsys.readouterr().err.strip()
    assert field in error and len(error.splitlines()) == 1
    assert not out.exists()


def test_defaults_are_complete_and_overrides_merge():
    config = parse_config({"analysis": {"diffusion": "always"}})
    assert config.analysis.diffusion == "always"
    assert config.tolerances == load_config().tolerances


@pytest.mark.parametrize("kind", ["missing", "foreign"])
def test_missing_or_foreign_store_exits_2_with_one_line(reference, tmp_path, capsys, kind):
    bad = tmp_path / "bad.zarr"
    if kind == "foreign":
        bad.mkdir()
        (bad / "notes.txt").write_text("not a store")
    status = run_cli("--reference", reference, "--rollout", str(bad), "--out", str(tmp_path / "o"))
    assert status == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(bad) in error
    assert ("no Zarr store" if kind == "missing" else "not a Zarr store") in error


def test_nothing_matching_is_said_clearly_and_explicit_pairs_still_work(
    reference, tmp_path, capsys
):
    einstein = str(tmp_path / "einstein.zarr")
    write_einstein_store(einstein, frames=120, dt_fs=4.0, temperature_K=700.0)
    status = run_cli("--reference", reference, "--rollout", einstein, "--out", str(tmp_path / "a"))
    assert status == 2
    error = capsys.readouterr().err
    assert "nothing to compare" in error and "Al108 700 K" in error and "Al108 600 K" in error
    report = evaluate(
        reference, einstein, tmp_path / "b", trajectories=[f"{FCC_600}=einstein"], figures=False
    )
    (condition,) = report.conditions
    assert condition.condition.reference == (FCC_600,)
    assert condition.condition.rollout == ("einstein",)
    with pytest.raises(PairingError, match="different atoms"):
        pair_trajectories(
            TrajectoryStore.open(reference),
            TrajectoryStore.open(einstein),
            ["00002_al-vacancy_600K_r0=einstein"],
        )
    with pytest.raises(PairingError, match="in neither store"):
        evaluate(reference, reference, tmp_path / "c", trajectories=["no-such-id"])


def test_filter_fallbacks_of_a_rollout_are_judged(tmp_path):
    plain, rollout = str(tmp_path / "plain.zarr"), str(tmp_path / "rollout.zarr")
    write_einstein_store(plain, frames=101, dt_fs=8.0, seed=3)
    write_einstein_store(
        rollout, frames=101, dt_fs=8.0, seed=3, filter_stats=True, fallback_every=10
    )
    report = evaluate(plain, rollout, tmp_path / "r")
    (condition,) = report.conditions
    rows = {m.key: m for m in condition.metrics}
    assert rows["fallback_fraction"].rollout == pytest.approx(0.1)
    assert rows["fallback_fraction"].status == "fail"
    assert [m.key for m in condition.metrics if m.status == "fail"] == ["fallback_fraction"]
    assert "filter" in condition.figures and imread(condition.figures["filter"]).size > 0
    # the figure says what happened to a rejected stride: redone, first as two half strides
    titles = [axis.get_title() for axis in filter_figure(condition.rollout).axes]
    assert titles[1] == "strides the filter rejected, redone as half strides"


def test_non_finite_values_are_counted_and_stop_the_analysis(reference, tmp_path):
    def poison(frames):
        frames["momenta"][50, 3, 1] = np.nan
        frames["positions"][70] = np.inf

    broken = copy_store(reference, str(tmp_path / "nan.zarr"), poison)
    report = evaluate(reference, broken, tmp_path / "r", trajectories=[FCC_600], figures=False)
    (condition,) = report.conditions
    rows = {m.key: m for m in condition.metrics}
    assert rows["nan_count"].rollout == 1 + 108 * 3
    assert rows["nan_count"].status == "fail" and not report.passed
    assert condition.rollout.n_frames == 50


def test_streaming_over_many_chunks_equals_whole_arrays(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "frames_per_chunk", lambda n_atoms: 16)
    monkeypatch.setattr(observables_module, "BLOCK_FRAMES", 1)
    location = str(tmp_path / "chunked.zarr")
    write_einstein_store(location, frames=90, n_atoms_per_side=2, dt_fs=4.0)
    reader = TrajectoryStore.open(location)["einstein"]
    assert reader.chunk_frames == 16
    settings = load_config().analysis.model_copy(update={"rdf_max_frames": 30})
    seen = observe(reader, settings, rdf_rmax=4.0)
    frames = reader.read()
    whole = kinetic_temperature(frames["momenta"], reader.masses, reader.numbers)
    np.testing.assert_allclose(seen.temperature.per_group, whole.per_group, rtol=1e-12)
    every_third = slice(0, None, 3)
    expected = rdf(frames["positions"][every_third], frames["cell"][every_third], reader.numbers,
                   4.0, settings.rdf_nbins)  # fmt: skip
    assert seen.rdf.n_frames == 30
    np.testing.assert_allclose(seen.rdf.total, expected.total, rtol=1e-12, atol=1e-12)
    expected_msd = msd(frames["positions"], reader.numbers, 4.0, max_lag=89,
                       masses=reader.masses, remove_com=True)  # fmt: skip
    np.testing.assert_allclose(seen.msd.per_axis, expected_msd.per_axis, rtol=1e-9, atol=1e-12)


def walk_store(location: str, step_A: float, replicas: int = 1, seed: int = 7) -> str:
    """Random walks of 32 atoms, 200 frames 10 fs apart (D = step² / 20 Å²/fs); replicas are
    independent walks of the same condition."""
    rng = np.random.default_rng(seed)
    n_frames, n_atoms, box = 200, 32, 20.0
    store = TrajectoryStore.create(location, {"name": "walk"})
    attrs = {"ensemble": "langevin", "temperature_K": 1000.0, "pbc": [True] * 3}
    for replica in range(replicas):
        positions = np.cumsum(step_A * rng.standard_normal((n_frames, n_atoms, 3)), axis=0)
        positions += rng.uniform(0, box, (1, n_atoms, 3))
        numbers, masses = np.full(n_atoms, 18), np.full(n_atoms, 39.95)
        writer = store.writer(f"walk-{replica}", numbers, masses, attrs, False)
        for k in range(n_frames):
            writer.append(
                {
                    "positions": positions[k],
                    "momenta": rng.standard_normal((n_atoms, 3)),
                    "cell": np.eye(3) * box,
                    "energy": 0.0,
                    "time_fs": 10.0 * k,
                }
            )
        writer.close(complete=True)
    return location


def test_diffusion_is_judged_only_for_a_diffusing_system(tmp_path):
    """Random walks (D known) against a copy walking twice as far per frame."""

    slow = walk_store(str(tmp_path / "slow.zarr"), 0.3)
    fast = walk_store(str(tmp_path / "fast.zarr"), 0.6)
    same = {
        m.key: m for m in evaluate(slow, slow, tmp_path / "a", figures=False).conditions[0].metrics
    }
    assert same["diffusion"].status == "pass"
    expected_D = 0.3**2 / (2 * 10.0)  # Å^2/fs: per-axis variance per frame / (2 dt)
    assert same["diffusion"].reference == pytest.approx(expected_D, rel=0.3)
    assert same["diffusion"].noise is None  # one replica: no error estimate
    assert same["nve_drift"].status == "skip"  # Langevin
    faster = evaluate(slow, fast, tmp_path / "b", figures=False).conditions[0].metrics
    row = {m.key: m for m in faster}["diffusion"]
    assert row.status == "fail" and row.difference == pytest.approx(3.0, rel=0.05)
    frozen = walk_store(str(tmp_path / "frozen.zarr"), 0.01)  # MSD stays below 1 Å^2
    melting = {
        m.key: m
        for m in evaluate(frozen, slow, tmp_path / "m", figures=False).conditions[0].metrics
    }
    assert melting["diffusion"].status == "fail"
    assert "the rollout diffuses" in melting["diffusion"].note
    still = {
        m.key: m
        for m in evaluate(frozen, frozen, tmp_path / "f", figures=False).conditions[0].metrics
    }
    assert still["diffusion"].status == "skip"
    never = parse_config({"analysis": {"diffusion": "never"}})
    skipped = evaluate(slow, fast, tmp_path / "c", tolerances=never, figures=False)
    assert {m.key: m for m in skipped.conditions[0].metrics}["diffusion"].status == "skip"


def test_alloy_gets_partial_rdfs_and_a_judged_equipartition(tmp_path):
    recipe = parse_recipe(
        {
            "name": "cuau-tiny",
            "seed": 2,
            "calculator": {"name": "asap3-emt"},
            "systems": [
                {"builder": "alloy", "elements": {"Cu": 0.5, "Au": 0.5}, "supercell": [2] * 3}
            ],
            "temperatures_K": [600],
            "ensemble": {"production": "langevin", "friction_per_fs": 0.05},
            "timestep_fs": 4.0,
            "sample_interval_fs": 8.0,
            "equilibration_fs": 40.0,
            "production_fs": 800.0,
        }
    )
    location = str(tmp_path / "cuau.zarr")
    generate(recipe, location, progress=False)
    loose = parse_config({"tolerances": {"equipartition_rel": 1.0}})
    report = evaluate(location, location, tmp_path / "r", tolerances=loose)
    (condition,) = report.conditions
    rows = {m.key: m for m in condition.metrics}
    per_group = condition.rollout.temperature_per_group
    assert per_group.size == 3  # Cu, Au, all
    spread = np.max(np.abs(per_group[:2] - per_group[2])) / per_group[2]
    assert rows["equipartition"].status == "pass"
    assert rows["equipartition"].rollout == pytest.approx(spread)
    assert rows["nve_drift"].status == "skip"  # Langevin production
    assert set(condition.reference.rdf.partial) == {(29, 29), (29, 79), (79, 79)}
    wide = imread(condition.figures["rdf"])
    assert wide.shape[1] > 3 * imread(condition.figures["msd"]).shape[1] / 1.5  # four panels
    strict = parse_config({"tolerances": {"equipartition_rel": 0.1 * spread}})
    failed = evaluate(location, location, tmp_path / "s", tolerances=strict, figures=False)
    assert [m.key for m in failed.conditions[0].metrics if m.status == "fail"] == ["equipartition"]
    # 100 frames of 32 atoms: the spread is mostly noise, and the row says so near its tolerance
    noise = rows["equipartition"].noise
    assert 0.3 * spread < noise < 10 * spread and rows["equipartition"].note == ""
    edge = parse_config({"tolerances": {"equipartition_rel": spread + 0.5 * noise}})
    judged = evaluate(location, location, tmp_path / "e", tolerances=edge, figures=False)
    row = {m.key: m for m in judged.conditions[0].metrics}["equipartition"]
    assert row.status == "pass" and "too short to judge" in row.note


def test_a_flashmd_md_rollout_is_evaluated_with_its_filter_statistics(reference, tmp_path):
    model = save_checkpoint(bench_model(torch.device("cpu")), tmp_path / "untrained.pt")
    structure = tmp_path / "al.xyz"
    ase.io.write(structure, bulk("Al", "fcc", a=4.05, cubic=True).repeat(3))
    rollout = str(tmp_path / "run.zarr")
    md_args = [str(structure), "--model", str(model), "--stride-fs", "32", "--strides", "8"]
    assert main(["md", *md_args, "--temperature-K", "600", "-o", rollout, "--quiet"]) == 0
    out = tmp_path / "report"
    assert run_cli("--reference", reference, "--rollout", rollout, "--out", str(out)) == 1
    summary = json.loads((out / "summary.json").read_text())
    (condition,) = summary["conditions"]
    assert condition["label"] == "Al108 600 K" and condition["reference_ids"] == [FCC_600]
    assert len(summary["unmatched"]) == 3  # the other reference conditions
    rows = {m["key"]: m for m in condition["metrics"]}
    assert rows["fallback_fraction"]["status"] != "skip"
    assert rows["nve_drift"]["status"] != "skip"  # an NVE rollout
    assert imread(condition["figures"]["filter"]).shape[0] > 200


def test_reference_energy_recomputes_the_rollout_energies(reference, tmp_path, capsys):
    """--energy reference prices the rollout's frames with the reference recipe's calculator:
    a copy whose stored energies are wrong by 50 meV/atom then agrees with the reference."""

    def misprice(frames):
        frames["energy"] += 0.05 * frames["positions"].shape[1]

    wrong = copy_store(reference, str(tmp_path / "wrong.zarr"), misprice)
    common = ["--reference", reference, "--rollout", wrong, "--trajectories", FCC_600]
    assert run_cli(*common, "--out", str(tmp_path / "stored")) == 1
    assert statuses(tmp_path / "stored")["potential_energy"] == "fail"
    assert run_cli(*common, "--out", str(tmp_path / "ref"), "--energy", "reference") == 0
    summary = json.loads((tmp_path / "ref" / "summary.json").read_text())
    (energy,) = [m for m in summary["conditions"][0]["metrics"] if m["key"] == "potential_energy"]
    assert abs(energy["difference"]) < 1e-6  # meV/atom: the same calculator on the same frames
    # a reference store without a generation recipe cannot name its calculator
    args = ["--reference", wrong, "--rollout", reference, "--out", str(tmp_path / "x")]
    assert run_cli(*args, "--trajectories", FCC_600, "--energy", "reference") == 2
    assert "no generation recipe" in capsys.readouterr().err


def test_a_tolerance_below_the_runs_noise_is_flagged_as_too_short_to_judge(reference, tmp_path):
    """101 frames of 108 atoms: the mean temperature is uncertain by far more than 0.01 %."""
    tolerances = tmp_path / "tight.yaml"
    tolerances.write_text("tolerances:\n  temperature_rel: 0.0001\n")
    out = tmp_path / "tight"
    run_cli(
        "--reference", reference, "--rollout", reference, "--out", str(out), "--no-figures",
        "--tolerances", str(tolerances),
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    row = next(m for m in summary["conditions"][0]["metrics"] if m["key"] == "temperature")
    assert row["status"] == "pass" and row["noise"] > 0.0001
    assert "too short to judge" in row["note"]
    # the reference's own noise is above this tolerance: no rollout settles it, and it says so
    assert "the reference alone has 2σ" in row["note"] and "--reference A B" in row["note"]
    assert "± " in (out / "report.md").read_text()


def test_several_reference_stores_of_one_calculator_are_pooled(reference, tmp_path, capsys):
    """More of a reference, from a second recipe (another name, same calculator), pools with the
    first: each condition has both stores' trajectories and its noise shrinks."""
    recipe = {**TrajectoryStore.open(reference).recipe, "name": "al-emt-tiny-more"}
    more = copy_store(reference, str(tmp_path / "more.zarr"), recipe=recipe)
    single = evaluate(reference, reference, tmp_path / "single", figures=False)
    pooled = evaluate([reference, more], reference, tmp_path / "pooled", figures=False)
    assert pooled.passed and len(pooled.conditions) == len(single.conditions) == 4
    one, both = single.conditions[0], pooled.conditions[0]
    assert both.condition.label == one.condition.label
    assert {i.split("/")[0] for i in both.condition.reference} == {"al-emt-tiny", recipe["name"]}
    assert both.reference.temperature == pytest.approx(one.reference.temperature, rel=1e-12)
    rows = {m.key: m for m in one.metrics}, {m.key: m for m in both.metrics}
    assert rows[1]["temperature"].noise < rows[0]["temperature"].noise
    assert f"{reference} + {more}" in (tmp_path / "pooled" / "report.md").read_text()
    assert run_cli("--reference", reference, more, "--rollout", reference,
                   "--out", str(tmp_path / "cli"), "--no-figures") == 0  # fmt: skip


def test_reference_stores_of_different_calculators_are_refused(reference, hotter, tmp_path, capsys):
    out = tmp_path / "mixed"
    status = run_cli("--reference", reference, hotter, "--rollout", reference, "--out", str(out))
    assert status == 2
    assert "different calculators" in capsys.readouterr().err
    assert not out.exists()


def test_replicas_give_the_diffusion_coefficient_its_noise(tmp_path):
    """Eight independent random walks per side: the noise of D is the scatter of the replicas'
    fits, a few per cent for 32 atoms and 200 frames each, and a same-D pair passes within it."""
    one = walk_store(str(tmp_path / "one.zarr"), 0.3, replicas=8)
    other = walk_store(str(tmp_path / "other.zarr"), 0.3, replicas=8, seed=8)
    rows = {
        m.key: m for m in evaluate(one, other, tmp_path / "r", figures=False).conditions[0].metrics
    }
    row = rows["diffusion"]
    assert 0.005 < row.noise < 0.3
    assert row.status == "pass" and abs(row.difference) <= row.noise
