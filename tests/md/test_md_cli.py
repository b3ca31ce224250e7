"""``flashmd md`` end to end on a tiny model: store schema, replicas, shards, resume, bad input."""

from __future__ import annotations

import argparse
from pathlib import Path

import ase.io
import numpy as np
import pytest
from md_testkit import crystal, tiny_model

from flashmd.cli import EXIT_USAGE, main
from flashmd.data.store import TrajectoryStore
from flashmd.md.output import STAT_ARRAYS
from flashmd.models.io import save_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def inputs(tmp_path):
    model = save_checkpoint(tiny_model(), tmp_path / "tiny.pt")
    structure = tmp_path / "al.xyz"
    ase.io.write(structure, crystal((2, 2, 1)))
    return str(model), str(structure)


def run(*args: str) -> int:
    return main(["md", *args, "--quiet", "--device", "cpu"])


def test_md_writes_replicas_and_resumes(inputs, tmp_path, capsys):
    model, structure = inputs
    out = str(tmp_path / "run.zarr")
    common = [structure, "--model", model, "--stride-fs", "16", "--strides", "6", "--every", "2"]
    assert run(*common, "--replicas", "2", "--ensemble", "langevin", "-o", out) == 0
    store = TrajectoryStore.open(out)
    assert len(store) == 2
    for traj_id in store:
        reader = store[traj_id]
        assert reader.status == "complete" and reader.n_frames == 4
        np.testing.assert_allclose(reader.read()["time_fs"], [0, 32, 64, 96])
        for name in STAT_ARRAYS:
            assert np.isfinite(reader.group[name][:]).all()
    first = store[store.ids()[0]].read()["positions"]
    assert run(*common, "--replicas", "2", "--ensemble", "langevin", "-o", out) == 0
    assert "0 frames" in capsys.readouterr().out.splitlines()[-1]
    np.testing.assert_array_equal(store[store.ids()[0]].read()["positions"], first)


def test_shards_of_nve_equal_one_batch(inputs, tmp_path):
    model, structure = inputs
    common = [structure, "--model", model, "--stride-fs", "16", "--strides", "3", "--replicas", "3"]
    assert run(*common, "-o", str(tmp_path / "all.zarr")) == 0
    for shard in ("0/2", "1/2"):
        assert run(*common, "-o", str(tmp_path / "sharded.zarr"), "--shard", shard) == 0
    whole = TrajectoryStore.open(tmp_path / "all.zarr")
    sharded = TrajectoryStore.open(tmp_path / "sharded.zarr")
    assert whole.ids() == sharded.ids()
    for traj_id in whole:
        a, b = whole[traj_id].read()["positions"], sharded[traj_id].read()["positions"]
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_md_from_a_recipe(inputs, tmp_path):
    model, _ = inputs
    out = tmp_path / "recipe.zarr"
    recipe = str(REPO / "data" / "al-emt-tiny.yaml")
    args = ["--recipe", recipe, "--model", model, "--stride-fs", "32", "--strides", "2"]
    assert run(*args, "--ensemble", "bussi", "-o", str(out)) == 0
    assert len(TrajectoryStore.open(out)) == 2  # the recipe has two systems


def test_md_starts_from_a_reference_store(inputs, tiny_recipe, tmp_path, capsys):
    from flashmd.data.generate import generate

    model, _ = inputs
    reference = str(tmp_path / "reference.zarr")
    generate(tiny_recipe, reference, progress=False)
    out = str(tmp_path / "started.zarr")
    args = ["--start-from", reference, "--model", model, "--stride-fs", "16", "--strides", "2"]
    assert run(*args, "--temperature-K", "900", "-o", out) == 0
    started, ref = TrajectoryStore.open(out), TrajectoryStore.open(reference)
    assert len(started) == 2  # the two systems at 900 K, not those at 600 K
    for traj_id in started:
        source = started[traj_id].attrs["start_from"]["trajectory"]
        assert ref[source].attrs["temperature_K"] == 900
        first, stored = started[traj_id].frame(0), ref[source].frame(0)
        np.testing.assert_array_equal(first["positions"], stored["positions"])
        np.testing.assert_allclose(first["momenta"], stored["momenta"], rtol=1e-12)
    assert run(*args, "--temperature-K", "700", "-o", str(tmp_path / "none.zarr")) == 2
    assert "600 K, 900 K" in capsys.readouterr().err


def test_bad_input_is_refused_before_writing(inputs, tmp_path, capsys):
    model, structure = inputs
    out = tmp_path / "bad.zarr"
    assert (
        run(structure, "--model", model, "--stride-fs", "20", "--strides", "2", "-o", str(out)) == 2
    )
    assert "20 fs is not supported" in capsys.readouterr().err
    assert not out.exists()
    assert run("--model", model, "--stride-fs", "16", "--strides", "2", "-o", str(out)) == 2
    assert "structure files, a recipe or a store" in capsys.readouterr().err
    lonely = tmp_path / "one.xyz"
    ase.io.write(lonely, ase.Atoms("Al", positions=[[5, 5, 5]], cell=[10] * 3, pbc=False))
    assert (
        run(str(lonely), "--model", model, "--stride-fs", "16", "--strides", "2", "-o", str(out))
        == 2
    )
    assert "system 0 has 1 atom(s)" in capsys.readouterr().err and not out.exists()


def test_close_contacts_are_refused_before_writing_unless_allowed(inputs, tmp_path, capsys):
    model, _ = inputs
    atoms = crystal((2, 2, 1))
    atoms.positions[1] = atoms.positions[0] + [0.3, 0.0, 0.0]
    structure = tmp_path / "squeezed.xyz"
    ase.io.write(structure, atoms)
    out = tmp_path / "squeezed.zarr"
    common = [str(structure), "--model", model, "--stride-fs", "16", "--strides", "2"]
    assert run(*common, "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert "atoms 0 and 1 of system 0 (Al16) are 0.300 Å apart" in err
    assert "--allow-close-contacts" in err and not out.exists()
    with pytest.warns(RuntimeWarning, match="0.300 Å apart"):
        assert run(*common, "--allow-close-contacts", "-o", str(out)) == 0
    assert TrajectoryStore.open(out)[TrajectoryStore.open(out).ids()[0]].n_frames == 3


def test_filter_options_reach_the_stepper_and_are_checked(inputs, tmp_path, capsys):
    model, structure = inputs
    common = [structure, "--model", model, "--stride-fs", "16", "--strides", "2"]
    out = tmp_path / "band.zarr"
    args = ["--max-heating", "0.2", "--contact-fraction", "0", "-o", str(out)]
    assert run(*common, *args) == 0
    recipe = TrajectoryStore.open(out).recipe
    assert (recipe["max_cooling"], recipe["max_heating"], recipe["contact_fraction"]) == (
        0.05,
        0.2,
        0.0,
    )
    bad = tmp_path / "bad-band.zarr"
    assert run(*common, "--max-cooling", "1.5", "-o", str(bad)) == 2
    assert "max_cooling must be below 1" in capsys.readouterr().err
    assert not bad.exists()


@pytest.mark.parametrize("ensemble", ["nve", "metropolis"])
def test_interrupted_md_keeps_frames_and_resumes(inputs, tmp_path, monkeypatch, ensemble):
    """A killed run keeps its committed frames and its resumption equals an uninterrupted run,
    bit for bit (the Metropolis chain's accept/reject draws included)."""
    from md_testkit import tiny_symplectic_model

    import flashmd.md.batch as batch

    model, structure = inputs
    if ensemble == "metropolis":
        model = str(save_checkpoint(tiny_symplectic_model(), tmp_path / "sym.pt"))
    out = str(tmp_path / "interrupted.zarr")
    args = [structure, "--model", model, "--stride-fs", "16", "--strides", "8", "-o", out]
    args += ["--ensemble", ensemble, "--temperature-K", "300"]
    assert run(*args) == 0
    reference = TrajectoryStore.open(out)
    expected = reference[reference.ids()[0]].read()["positions"]

    out = str(tmp_path / "resumed.zarr")
    args[args.index("-o") + 1] = out
    original = batch.rollout

    def interrupted(*a, on_frame, **k):
        def stop(n, count=[0]):  # noqa: B006 - a counter across calls
            count[0] += 1
            if count[0] == 5:
                raise KeyboardInterrupt
            on_frame(n)

        return original(*a, on_frame=stop, **k)

    monkeypatch.setattr(batch, "rollout", interrupted)
    assert run(*args) == 130
    store = TrajectoryStore.open(out)
    assert store[store.ids()[0]].n_frames == 5 and store[store.ids()[0]].status == "partial"
    monkeypatch.setattr(batch, "rollout", original)
    assert run(*args) == 0
    np.testing.assert_array_equal(store[store.ids()[0]].read()["positions"], expected)
    if ensemble == "metropolis":
        accepted = store[store.ids()[0]].group["stride_accepted"][:]
        expected_accepted = reference[reference.ids()[0]].group["stride_accepted"][:]
        np.testing.assert_array_equal(accepted, expected_accepted)


def saved_with_structure(model, tmp_path):
    """(checkpoint path, structure file): ``model`` saved and an 8-atom Al crystal written."""
    structure = tmp_path / "al.xyz"
    ase.io.write(structure, crystal((2, 2, 1)))
    return str(save_checkpoint(model, tmp_path / "model.pt")), structure


def test_md_symplectic_records_solver_iterations(tmp_path, capsys):
    from md_testkit import tiny_symplectic_model

    model, structure = saved_with_structure(tiny_symplectic_model(), tmp_path)
    out = str(tmp_path / "sym.zarr")
    common = [str(structure), "--model", model, "--stride-fs", "16", "--strides", "4"]
    assert run(*common, "--every", "2", "--symplectic", "-o", out) == 0
    assert "solver iterations" in capsys.readouterr().out
    reader = TrajectoryStore.open(out)[TrajectoryStore.open(out).ids()[0]]
    iterations = reader.group["solver_iterations"][:]
    assert iterations[0] == 0 and (iterations[1:] >= 2).all()  # two strides per frame
    assert reader.attrs["solver_mean_iterations"] > 1 and reader.attrs["solver_unconverged"] == 0
    corrected = str(tmp_path / "corrected.zarr")
    assert (
        run(*common, "--every", "2", "--symplectic", "--corrector-iterations", "2", "-o", corrected)
        == 0
    )
    reader = TrajectoryStore.open(corrected)[TrajectoryStore.open(corrected).ids()[0]]
    assert list(reader.group["solver_iterations"][:]) == [0, 4, 4]  # two strides of 2 per frame
    assert TrajectoryStore.open(corrected).recipe["corrector_iterations"] == 2
    assert run(*common, "--corrector-iterations", "2", "-o", str(tmp_path / "y.zarr")) != 0
    assert "add --symplectic" in capsys.readouterr().err
    plain = str(tmp_path / "plain.pt")
    save_checkpoint(tiny_model(), plain)
    bad = [str(structure), "--model", plain, "--stride-fs", "16", "--strides", "2"]
    assert run(*bad, "--symplectic", "-o", str(tmp_path / "x.zarr")) != 0
    assert "no generating function" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()


def test_a_store_of_a_flashmd_without_the_newer_settings_resumes(inputs, tmp_path, capsys):
    from dataclasses import asdict

    from flashmd.md.batch import ADDED_SETTINGS, MDSettings

    model, structure = inputs
    out = str(tmp_path / "old.zarr")
    settings = MDSettings(model=model, structures=(structure,), stride_fs=16.0, strides=4)
    older = {k: v for k, v in asdict(settings).items() if k not in ADDED_SETTINGS}
    TrajectoryStore.create(out, {"name": "flashmd-md", **older})  # as an older flashmd made it
    assert run(structure, "--model", model, "--stride-fs", "16", "--strides", "4", "-o", out) == 0
    assert "5 frames" in capsys.readouterr().out
    every = str(tmp_path / "every.zarr")  # all settings listed, as flashmd wrote it for a while
    listed = {**older, "uncertainty": False, "adaptive_threshold_A": None}
    TrajectoryStore.create(every, {"name": "flashmd-md", **listed})
    assert run(structure, "--model", model, "--stride-fs", "16", "--strides", "4", "-o", every) == 0
    assert "5 frames" in capsys.readouterr().out
    other = str(tmp_path / "other.zarr")
    TrajectoryStore.create(other, {"name": "flashmd-md", **older, "seed": 5})
    assert run(structure, "--model", model, "--stride-fs", "16", "--strides", "4", "-o", other) != 0


def test_md_metropolis_records_acceptance_and_evaluates_it(tmp_path, capsys):
    from md_testkit import tiny_symplectic_model

    from flashmd.md.batch import ENSEMBLES
    from flashmd.md.output import ROLLOUT_ATTRIBUTES

    model, structure = saved_with_structure(tiny_symplectic_model(), tmp_path)
    out = str(tmp_path / "chain.zarr")
    common = [str(structure), "--model", model, "--stride-fs", "16", "--strides", "6"]
    chain = [*common, "--ensemble", "metropolis", "--temperature-K", "300", "--every", "2"]
    assert run(*chain, "-o", out) == 0
    assert (
        "of strides accepted (metropolis, sampling the energy model's V)" in capsys.readouterr().out
    )
    store = TrajectoryStore.open(out)
    reader = store[store.ids()[0]]
    accepted = reader.group["stride_accepted"][:]
    assert accepted[0] == 1 and set(accepted[1:]) <= {0.0, 0.5, 1.0}
    assert reader.attrs["ensemble"] == "metropolis" and store.recipe["symplectic"] is True
    assert 0 <= reader.attrs["metropolis_acceptance"] <= 1
    assert ROLLOUT_ATTRIBUTES["stride_accepted"]["units"] == "1"
    from flashmd.cli_parser import build_parser

    (commands,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    choices = next(a.choices for a in commands.choices["md"]._actions if a.dest == "ensemble")
    assert tuple(choices) == ENSEMBLES
    evaluated = tmp_path / "report"
    code = main(["evaluate", "--reference", out, "--rollout", out, "--out", str(evaluated)])
    assert code in (0, 1)
    table = (evaluated / "report.md").read_text()
    assert "strides accepted (metropolis)" in table and "not dynamics" in table
    cold = [*common, "--ensemble", "metropolis", "--temperature-K", "0"]
    assert run(*cold, "-o", str(tmp_path / "cold.zarr")) != 0
    assert "NVE" in capsys.readouterr().err


def test_md_metropolis_with_leapfrog_proposals_needs_no_generating_function(tmp_path, capsys):
    from md_testkit import tiny_model

    model, structure = saved_with_structure(tiny_model(), tmp_path)
    out = str(tmp_path / "hmc.zarr")
    chain = [str(structure), "--model", model, "--stride-fs", "8", "--strides", "4"]
    chain += ["--ensemble", "metropolis", "--temperature-K", "300", "--leapfrog-steps", "2"]
    assert run(*chain, "--extra-chances", "1", "-o", out) == 0
    assert (
        "of strides accepted (metropolis, sampling the energy model's V)" in capsys.readouterr().out
    )
    store = TrajectoryStore.open(out)
    assert store.recipe["leapfrog_steps"] == 2 and store.recipe["symplectic"] is False
    assert store.recipe["extra_chances"] == 1
    assert store[store.ids()[0]].attrs["metropolis_extra_strides"] >= 0
    assert run(*chain, "--symplectic", "-o", str(tmp_path / "both.zarr")) != 0
    assert "without --symplectic" in capsys.readouterr().err


def test_md_metropolis_samples_a_reference_calculator(tmp_path, capsys):
    from ase.calculators.emt import EMT
    from md_testkit import tiny_model

    model, structure = saved_with_structure(tiny_model(), tmp_path)
    out = str(tmp_path / "emt.zarr")  # short strides: the untrained model's steps must pass EMT
    chain = [str(structure), "--model", model, "--stride-fs", "1", "--strides", "6"]
    chain += ["--ensemble", "metropolis", "--temperature-K", "300", "--leapfrog-steps", "2"]
    assert run(*chain, "--sample", "emt", "-o", out) == 0
    assert "sampling emt's V" in capsys.readouterr().out
    store = TrajectoryStore.open(out)
    assert store.recipe["sample_calculator"] == "emt"
    reader = store[store.ids()[0]]
    atoms = ase.io.read(structure)
    atoms.calc = EMT()
    sampled = []
    for positions in reader.group["positions"][:]:
        atoms.positions = positions
        sampled.append(atoms.get_potential_energy())
    # every frame's V is EMT's (the chain's), not the untrained energy model's
    np.testing.assert_allclose(reader.group["energy"][:], sampled, rtol=0, atol=1e-8)
    assert reader.group["stride_accepted"][1:].sum() > 0
    plain = str(tmp_path / "plain.zarr")
    assert run(*chain, "-o", plain) == 0  # the same chain on the energy model samples another V
    assert not np.allclose(TrajectoryStore.open(plain)[store.ids()[0]].group["energy"][:], sampled)

    nvt = [str(structure), "--model", model, "--stride-fs", "8", "--strides", "2"]
    nvt += ["--ensemble", "langevin", "--sample", "emt"]
    assert run(*nvt, "-o", str(tmp_path / "nvt.zarr")) != 0
    assert "--ensemble metropolis" in capsys.readouterr().err
    assert run(*chain, "--sample", "no-such-potential", "-o", str(tmp_path / "x.zarr")) != 0
    assert "unknown calculator 'no-such-potential'" in capsys.readouterr().err
    assert not (tmp_path / "nvt.zarr").exists() and not (tmp_path / "x.zarr").exists()


def test_compile_reaches_the_model_and_not_the_recipe(inputs, tmp_path, monkeypatch):
    model, structure = inputs
    compiled = []
    monkeypatch.setattr("flashmd.md.batch.compile_model", compiled.append)
    common = [structure, "--model", model, "--stride-fs", "16", "--strides", "2"]
    assert run(*common, "-o", str(tmp_path / "a.zarr"), "--compile") == 0
    assert len(compiled) == 1 and compiled[0].predictor is not None
    # not part of the settings: a run resumes (here: reruns, complete) without it
    assert run(*common, "-o", str(tmp_path / "a.zarr")) == 0
    assert len(compiled) == 1


def test_compile_without_a_compiler_stops_before_any_write(inputs, tmp_path, monkeypatch, capsys):
    model, structure = inputs
    monkeypatch.setattr("flashmd.models.compiled.shutil.which", lambda name: None)
    out = tmp_path / "b.zarr"
    args = [structure, "--model", model, "--stride-fs", "16", "--strides", "2", "--compile"]
    assert run(*args, "-o", str(out)) == EXIT_USAGE
    assert "needs a C++ compiler" in capsys.readouterr().err
    assert not out.exists()
