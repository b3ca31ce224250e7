"""Training: the predictor overfits, resume continues the same curve, DDP equals one process,
checkpoints export for load_model, and bad runs get clear errors."""

from __future__ import annotations

import csv
import faulthandler
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import flashmd
from flashmd import keys
from flashmd.data.dataset import StridePairs, collate_pairs
from flashmd.data.generate import generate
from flashmd.data.graph import batch_to
from flashmd.data.recipes import RecipeError, load_recipe
from flashmd.data.store import TrajectoryStore
from flashmd.nn.scatter import scatter_sum
from flashmd.train import distributed
from flashmd.train.config import InputNoise, LossWeights, TrainConfig, load_train_config
from flashmd.train.errors import TrainingError
from flashmd.train.losses import compute_normalisation, input_noise
from flashmd.train.objective import Objective
from flashmd.train.trainer import Trainer, build_model, species_and_masses

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> str:
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml").model_copy(
        update={"production_fs": 200.0, "equilibration_fs": 20.0}
    )
    path = tmp_path_factory.mktemp("train") / "s.zarr"
    generate(recipe, str(path), progress=False)
    return str(path)


def tiny_config(store_path: str, output: Path, **changes) -> TrainConfig:
    config = load_train_config(REPO / "training" / "tiny.yaml")
    return config.model_copy(update={"store": store_path, "output": str(output), **changes})


def test_predictor_overfits_a_tiny_dataset(store_path):
    torch.manual_seed(0)
    store = TrajectoryStore.open(store_path)
    config = TrainConfig(
        name="o",
        store=store_path,
        output="unused",
        strides_fs=(16.0,),
        energy_model=None,
        predictor={"preset": "tiny"},
    )
    model = build_model(config, species_and_masses(store, store.ids()))
    items = list(StridePairs(store_path, store.ids()[:1], [16.0], shuffle=False))[:2]
    norm = compute_normalisation(items, model.species, (16.0,))
    batch = batch_to(collate_pairs(items, model.cutoff), dtype=torch.float32)
    objective = Objective(model, norm, LossWeights(energy=0, forces=0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(400):
        optimizer.zero_grad()
        loss = objective(batch)["total"]
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] / 100, (losses[0], losses[-1])


def read_losses(path: Path) -> list[float]:
    with open(path / "train.csv") as f:
        return [float(row["loss_total"]) for row in csv.DictReader(f)]


def test_resume_continues_the_same_loss_curve(store_path, tmp_path):
    # float64: with several threads torch's CPU scatter sums in varying order, so float32 losses
    # of two identical runs differ in the last bits
    straight = tiny_config(
        store_path,
        tmp_path / "straight",
        steps=10,
        checkpoint_every=5,
        validate_every=5,
        dtype="float64",
        input_noise=InputNoise(positions_A=0.01, momenta=0.05),  # its draws must resume too
    )
    Trainer(straight, progress=False).run()
    split = straight.model_copy(update={"output": str(tmp_path / "split")})
    Trainer(split, progress=False).run(until=5)
    with pytest.raises(TrainingError, match="already holds a run; pass --resume"):
        Trainer(split, progress=False)
    # an interrupted attempt that logged steps past its last checkpoint must not leave them twice
    with open(tmp_path / "split" / "train.csv", "a") as f:
        f.write("6,0,0.001,1,1,1,3,0.1,0.0\n")
    Trainer(split, resume=True, progress=False).run()
    np.testing.assert_allclose(
        read_losses(tmp_path / "split"), read_losses(tmp_path / "straight"), rtol=1e-9
    )
    assert len(read_losses(tmp_path / "split")) == 10
    changed = split.model_copy(update={"lr": 0.1})
    with pytest.raises(TrainingError, match="recipe changed.*lr"):
        Trainer(changed, resume=True, progress=False)


def test_a_moved_run_folder_and_store_resume(store_path, tmp_path):
    import shutil

    config = tiny_config(store_path, tmp_path / "here", steps=6, checkpoint_every=3)
    Trainer(config, progress=False).run(until=3)
    assert "here" in (tmp_path / "here" / "config.yaml").read_text()
    shutil.copytree(store_path, tmp_path / "moved" / "s.zarr")
    shutil.move(tmp_path / "here", tmp_path / "moved" / "run")
    moved = config.model_copy(
        update={"store": str(tmp_path / "moved" / "s.zarr"), "output": str(tmp_path / "moved/run")}
    )
    Trainer(moved, resume=True, progress=False).run()
    assert len(read_losses(tmp_path / "moved" / "run")) == 6
    other = tmp_path / "other.zarr"
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml").model_copy(
        update={"production_fs": 100.0, "equilibration_fs": 20.0, "seed": 99}
    )
    generate(recipe, str(other), progress=False)
    elsewhere = moved.model_copy(update={"store": str(other), "steps": 8})
    with pytest.raises(TrainingError, match="stores hold other data"):
        Trainer(elsewhere, resume=True, progress=False)


def test_a_run_saved_before_newer_recipe_fields_resumes(store_path, tmp_path):
    """state.pt of a run started before ``data_fraction`` and ``refit_energy_shift`` existed
    resumes: a field added later counts as the value such a run had."""
    config = tiny_config(store_path, tmp_path / "old", steps=4, checkpoint_every=2)
    Trainer(config, progress=False).run(until=2)
    state = torch.load(tmp_path / "old" / "state.pt", weights_only=False)
    del state["config"]["data_fraction"]
    for kind in ("predictor", "energy_model"):
        del state["config"][kind]["refit_energy_shift"]
    torch.save(state, tmp_path / "old" / "state.pt")
    Trainer(config, resume=True, progress=False).run()
    assert len(read_losses(tmp_path / "old")) == 4


def test_input_noise_perturbs_only_the_predictor_inputs(store_path):
    store = TrajectoryStore.open(store_path)
    config = tiny_config(store_path, Path("unused"), dtype="float64")
    model = build_model(config, species_and_masses(store, store.ids())).double()
    items = list(StridePairs(store_path, store.ids()[:2], [16.0, 32.0], shuffle=False))[:64]
    norm = compute_normalisation(items, model.species, (16.0, 32.0))
    batch = batch_to(collate_pairs(items, model.cutoff), dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    dq, dp = input_noise(batch, norm, 0.02, 0.1, generator)
    assert dq.std().item() == pytest.approx(0.02, rel=0.05)
    # momenta: a tenth of the data's RMS momentum component of each species and stride
    _, p_ms = norm.atom_scales(batch)
    ratio = dp / (p_ms * batch["masses"]).sqrt()[:, None]
    assert ratio.std().item() == pytest.approx(0.1, rel=0.05)
    # keep_kinetic_energy: only directions change; every system keeps its kinetic energy
    _, turned = input_noise(batch, norm, 0.0, 0.1, torch.Generator().manual_seed(0), True)

    def kinetic(p):
        per_atom = (p**2).sum(1) / (2 * batch["masses"])
        return scatter_sum(per_atom, batch["system"], len(batch["n_atoms"]))

    torch.testing.assert_close(kinetic(batch["momenta"] + turned), kinetic(batch["momenta"]))
    assert float(turned.abs().max()) > 0.01 * float(batch["momenta"].abs().max())
    objective = Objective(model, norm, LossWeights())
    clean = {k: float(v.detach()) for k, v in objective(batch).items()}
    noisy = {k: float(v.detach()) for k, v in objective(batch, (dq, dp)).items()}
    assert noisy["energy"] == clean["energy"] and noisy["forces"] == clean["forces"]
    assert noisy["predictor"] != clean["predictor"]
    # the targets stay the clean trajectory's: removing the noise in the prediction is rewarded
    undone = Objective(_Undo(model, dq, dp), norm, LossWeights(energy=0, forces=0))
    loss = float(undone(batch, (dq, dp))["predictor"].detach())
    assert loss == pytest.approx(clean["predictor"], rel=1e-9)


class _Undo(torch.nn.Module):
    """A model whose predictor subtracts known input noise before predicting."""

    def __init__(self, model, dq, dp):
        super().__init__()
        self.inner, self.dq, self.dp = model, dq, dp
        self.energy_model = self.generating = None

    def predictor(self, batch):
        clean = {**batch, "positions": batch["positions"] - self.dq}
        clean["momenta"] = batch["momenta"] - self.dp
        return self.inner.predictor(clean)


def test_best_model_loads_and_validation_is_reported(store_path, tmp_path):
    config = tiny_config(store_path, tmp_path / "run", steps=10, validate_every=5)
    metrics = Trainer(config, progress=False).run()
    for stride in ("16", "32"):
        assert 0 < metrics[f"pos_ratio_{stride}"] < 1.5 and metrics[f"pos_ff_rmse_{stride}"] > 0
    assert metrics["forces_rmse_meV_A"] > 0
    model = flashmd.load_model(tmp_path / "run" / "best.pt", device="cpu")
    assert model.strides_fs == (16.0, 32.0) and model.species == (13,)
    with open(tmp_path / "run" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and float(rows[-1]["data_wait_s"]) >= 0


class _Oracle(torch.nn.Module):
    """A predictor that returns the true state after the stride."""

    def forward(self, batch):
        return batch[keys.TARGET_POSITIONS], batch[keys.TARGET_MOMENTA]


def test_validation_reports_the_potential_energy_a_stride_adds(store_path, tmp_path):
    from flashmd.data.graph import with_neighbors
    from flashmd.train.validation import evaluate, held_out_batches

    config = tiny_config(store_path, tmp_path / "run", steps=4, validate_every=4)
    Trainer(config, progress=False).run()
    model = flashmd.load_model(tmp_path / "run" / "best.pt", device="cpu")
    ids = TrajectoryStore.open(store_path).ids()
    batches = held_out_batches(
        store_path, ids, (16.0, 32.0), 6, 4, model.cutoff, "cpu", model.dtype
    )
    shifts = {"16": [], "32": []}
    for batch in batches:
        with torch.no_grad():
            predicted = model.predictor(batch)[0]
            v = [
                model.energy_model.compute(
                    with_neighbors({**batch, keys.POSITIONS: q}, model.cutoff), forces=False
                )
                for q in (predicted, batch[keys.TARGET_POSITIONS])
            ]
        per_atom = 1e3 * (v[0][keys.ENERGY] - v[1][keys.ENERGY]) / batch[keys.N_ATOMS]
        for stride, value in zip(batch[keys.STRIDE].tolist(), per_atom.tolist(), strict=True):
            shifts[f"{stride:g}"].append(value)
    metrics = evaluate(model, batches)
    for stride, values in shifts.items():
        assert metrics[f"potential_shift_{stride}"] == pytest.approx(np.mean(values), rel=1e-4)
        assert abs(metrics[f"potential_shift_{stride}"]) > 0
    model.predictor = _Oracle()
    exact = evaluate(model, batches)
    assert exact["potential_shift_16"] == 0 and exact["potential_shift_32"] == 0


def test_energy_model_from_a_checkpoint_is_kept_fixed(store_path, tmp_path):
    from flashmd.train.config import ModelSpec

    first = tiny_config(store_path, tmp_path / "first", steps=4, validate_every=4)
    Trainer(first, progress=False).run()
    source = flashmd.load_model(tmp_path / "first" / "best.pt", device="cpu").energy_model
    frozen = ModelSpec(checkpoint=str(tmp_path / "first" / "best.pt"))
    second = tiny_config(
        store_path, tmp_path / "second", steps=4, validate_every=4, energy_model=frozen
    )
    trainer = Trainer(second, progress=False)
    predictor_before = [p.detach().clone() for p in trainer.model.predictor.parameters()]
    metrics = trainer.run()
    assert metrics["forces_rmse_meV_A"] > 0  # the fixed energy model is still validated
    exported = flashmd.load_model(tmp_path / "second" / "best.pt", device="cpu")
    for kept, original in zip(
        exported.energy_model.state_dict().values(), source.state_dict().values(), strict=True
    ):
        assert torch.equal(kept, original)
    trained = list(exported.predictor.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(trained, predictor_before, strict=True))
    with open(tmp_path / "second" / "train.csv") as f:
        assert all(float(row["loss_energy"]) == 0 for row in csv.DictReader(f))


def test_fine_tuning_starts_from_a_checkpoint_and_adds_the_kinetic_term(store_path, tmp_path):
    from flashmd.train.config import ModelSpec

    first = tiny_config(store_path, tmp_path / "first", steps=4, validate_every=4)
    Trainer(first, progress=False).run()
    source = flashmd.load_model(tmp_path / "first" / "best.pt", device="cpu")
    start = ModelSpec(start_from=str(tmp_path / "first" / "best.pt"))
    second = tiny_config(
        store_path,
        tmp_path / "second",
        steps=4,
        validate_every=4,
        predictor=start,
        energy_model=start,
        loss_weights=LossWeights(kinetic=2.0),
    )
    trainer = Trainer(second, progress=False)
    for name, model in (
        ("predictor", trainer.model.predictor),
        ("energy", trainer.model.energy_model),
    ):
        started = model.state_dict()
        original = getattr(source, "energy_model" if name == "energy" else name).state_dict()
        assert all(torch.equal(started[k], original[k]) for k in original), name
    metrics = trainer.run()
    assert 0 < metrics["kinetic_ratio_16"] < 2 and 0 < metrics["kinetic_ratio_32"] < 2
    with open(tmp_path / "second" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(row["loss_kinetic"]) >= 0 for row in rows) and len(rows) == 4
    tuned = flashmd.load_model(tmp_path / "second" / "best.pt", device="cpu")
    for part in ("predictor", "energy_model"):
        pairs = zip(
            getattr(tuned, part).parameters(), getattr(source, part).parameters(), strict=True
        )
        assert any(not torch.equal(a, b) for a, b in pairs), f"{part} was not trained"
    # the potential term prices predicted positions with the fixed energy model
    priced = second.model_copy(
        update={
            "output": str(tmp_path / "third"),
            "steps": 2,
            "energy_model": ModelSpec(checkpoint=str(tmp_path / "first" / "best.pt")),
            "loss_weights": LossWeights(potential=1.0, potential_bias=1.0),
        }
    )
    Trainer(priced, progress=False).run()
    with open(tmp_path / "third" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(row["loss_potential"]) > 0 for row in rows) and "loss_kinetic" not in rows[0]
    # the bias term: the squared mean of the shifts, never more than the mean of their squares
    assert all(0 < float(r["loss_potential_bias"]) <= float(r["loss_potential"]) for r in rows)
    with pytest.raises(ValueError, match="potential and potential_bias need an energy model"):
        Trainer(
            second.model_copy(
                update={"output": str(tmp_path / "y"), "loss_weights": priced.loss_weights}
            )
        )
    with pytest.raises(TrainingError, match=r"serves strides \[16.0, 32.0\] fs but the recipe"):
        Trainer(
            second.model_copy(update={"strides_fs": (16.0,), "output": str(tmp_path / "x")}),
            progress=False,
        )
    with pytest.raises(ValueError, match="exclude each other"):
        ModelSpec(start_from="a.pt", checkpoint="a.pt")


def test_energy_model_checkpoint_errors_are_clear(store_path, tmp_path):
    from flashmd.train.config import ModelSpec

    with pytest.raises(ValueError, match="no preset or overrides"):
        ModelSpec(checkpoint="x.pt", preset="tiny")
    recipe = tmp_path / "frozen-predictor.yaml"
    recipe.write_text(
        f"{{name: x, store: {store_path}, output: o, predictor: {{checkpoint: x.pt}}}}"
    )
    with pytest.raises(RecipeError, match="only the energy model can be taken from a checkpoint"):
        load_train_config(recipe)
    more_species = ModelSpec(checkpoint="emt-metals")  # knows 7 metals, the store holds Al
    config = tiny_config(store_path, tmp_path / "run", energy_model=more_species)
    kept = Trainer(config, progress=False).model.energy_model  # carried over to Al, kept fixed
    assert kept.config.species == (13,)
    assert not any(p.requires_grad for p in kept.parameters())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_environment(rank: int, world: int, port: int) -> None:
    """The variables torchrun sets for one rank of a loopback group."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )


RANK_STACK_DUMP_S = 240.0


def _ddp_worker(rank: int, world: int, port: int, config: TrainConfig, items, out: str) -> None:
    _rank_environment(rank, world, port)
    torch.set_num_threads(1)
    if world > 1:  # a stuck rank prints where it waits (captured in the failure report) and exits
        faulthandler.dump_traceback_later(RANK_STACK_DUMP_S, exit=True)
    trainer = Trainer(config.model_copy(update={"output": f"{out}/rank{rank}"}), progress=False)
    share = len(items) // world
    mine = items[rank * share : (rank + 1) * share]
    for _ in range(3):
        trainer.train_step(
            batch_to(collate_pairs(mine, trainer.cutoff), trainer.device, trainer.dtype)
        )
    if rank == 0:
        torch.save(
            {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
            f"{out}/params_{world}.pt",
        )
    trainer.close()


def _spawn_with_deadline(worker, args: tuple, nprocs: int, seconds: float) -> None:
    """``mp.spawn`` that fails after ``seconds`` instead of waiting forever on a stuck rank."""
    context = mp.start_processes(worker, args=args, nprocs=nprocs, join=False)
    deadline = time.monotonic() + seconds
    try:
        while not context.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"the {nprocs} DDP ranks did not finish within {seconds:.0f} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()


def _gloo_probe(rank: int, world: int, port: int) -> None:
    """Two processes joining a gloo group through ``distributed.setup`` and summing one number."""
    _rank_environment(rank, world, port)
    info = distributed.setup("cpu")
    total = torch.ones(1)
    dist.all_reduce(total)
    assert float(total) == world
    distributed.teardown(info)


GLOO_PROBE_S = 60.0


def _gloo_connects() -> bool:
    """Whether two gloo processes connect over loopback here within ``GLOO_PROBE_S``."""
    try:
        _spawn_with_deadline(_gloo_probe, (2, _free_port()), 2, GLOO_PROBE_S)
    except (pytest.fail.Exception, mp.ProcessRaisedException, mp.ProcessExitedException):
        return False
    return True


def test_gradients_of_parameters_with_a_unit_dimension_keep_the_parameters_strides():
    from flashmd.train.trainer import _with_canonical_grads

    class Readout(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(1, 16))

        def forward(self, x):  # einsum hands the (1, 16) weight a transposed gradient
            return torch.einsum("ni,oi->no", x, self.weight).sum()

    readout = Readout()
    readout(torch.ones(4, 16)).backward()
    assert readout.weight.grad.stride() != readout.weight.stride()  # what DDP warned about
    readout.weight.grad = None
    _with_canonical_grads(readout)(torch.ones(4, 16)).backward()
    assert readout.weight.grad.stride() == readout.weight.stride() == (16, 1)


def test_two_process_ddp_matches_one_process(store_path, tmp_path):
    if not _gloo_connects():  # a machine limit (a sandboxed network), not a training fault
        pytest.skip("two gloo processes cannot connect over loopback on this machine")
    config = tiny_config(store_path, tmp_path / "ddp", dtype="float64", warmup_steps=0)
    store = TrajectoryStore.open(store_path)
    items = list(StridePairs(store_path, store.ids()[:1], [16.0], shuffle=False))[:4]
    _ddp_worker(0, 1, _free_port(), config, items, str(tmp_path))
    args = (2, _free_port(), config, items, str(tmp_path))
    _spawn_with_deadline(_ddp_worker, args, 2, RANK_STACK_DUMP_S + 60.0)
    one = torch.load(tmp_path / "params_1.pt")
    two = torch.load(tmp_path / "params_2.pt")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-9, atol=1e-10, msg=name)
    initial = Trainer(
        config.model_copy(update={"output": str(tmp_path / "fresh")}), progress=False
    ).model.state_dict()
    assert any(not torch.equal(initial[k], one[k]) for k in one)  # the steps did change weights


def test_normalisation_covers_every_species_of_the_training_set(tmp_path):
    """Statistics come from every training trajectory: a species found in only one of many
    trajectories still gets its own scales, not the placeholder of an unseen species."""
    base = load_recipe(REPO / "data" / "al-emt-tiny.yaml")
    systems = [
        {"builder": "crystal", "element": "Al", "supercell": [2, 2, 2], "name": f"al{k}"}
        for k in range(5)
    ] + [{"builder": "crystal", "element": "Cu", "supercell": [2, 2, 2], "name": "cu"}]
    recipe = base.model_validate(
        {
            **base.model_dump(),
            "systems": systems,
            "temperatures_K": [600.0],
            "production_fs": 200.0,
            "equilibration_fs": 20.0,
        }
    )
    path = str(tmp_path / "two-species.zarr")
    generate(recipe, path, progress=False)
    config = tiny_config(path, tmp_path / "run", validation=[], stats_pairs=6, steps=1)
    trainer = Trainer(config, progress=False)
    try:
        norm = trainer.norm
        assert norm.species == (13, 29)
        for table in (norm.displacement_ms, norm.momentum_ms):
            assert bool((table != 1.0).all())  # both species measured at both strides
        # Cu atoms are heavier and slower than Al at one temperature: distinct momentum scales
        assert not torch.allclose(norm.momentum_ms[0], norm.momentum_ms[1])
    finally:
        trainer.close()


def generating_config(store_path: str, tmp_path: Path, name: str, **changes) -> TrainConfig:
    """A tiny generating-function run on a briefly trained predictor and energy model (kept
    fixed, from ``tmp_path/first/best.pt``), 30 steps at a high rate."""
    from flashmd.train.config import ModelSpec

    first = tiny_config(store_path, tmp_path / "first", steps=4, validate_every=4)
    Trainer(first, progress=False).run()
    fixed = ModelSpec(checkpoint=str(tmp_path / "first" / "best.pt"))
    settings = {"steps": 30, "validate_every": 15, "checkpoint_every": 15, "lr": 0.01}
    return tiny_config(
        store_path,
        tmp_path / name,
        **{**settings, "warmup_steps": 1, **changes},
        predictor=fixed,
        energy_model=fixed,
        generating=ModelSpec(preset="tiny"),
    )


def test_generating_function_trains_on_fixed_predictor_and_energy_model(store_path, tmp_path):
    config = generating_config(store_path, tmp_path, "gen")
    source = flashmd.load_model(tmp_path / "first" / "best.pt", device="cpu")
    metrics = Trainer(config, progress=False).run()
    assert {"mid_pos_ratio_16", "mid_mom_ratio_32", "pos_ratio_16"} <= set(metrics)
    with open(tmp_path / "gen" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(row["loss_generating"]) for row in rows]
    assert all(float(row["loss_predictor"]) == 0 for row in rows)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    trained = flashmd.load_model(tmp_path / "gen" / "last.pt", device="cpu")
    assert trained.symplectic_strides_fs == (16.0, 32.0)
    assert float(trained.generating.stride_scale.detach().abs().sum()) > 0
    for part in ("predictor", "energy_model"):  # kept fixed, exported unchanged
        pairs = zip(
            getattr(trained, part).parameters(), getattr(source, part).parameters(), strict=True
        )
        assert all(torch.equal(a, b) for a, b in pairs), part


def test_generating_function_distils_the_modified_midpoint_map(store_path, tmp_path):
    """loss_weights.modified alone: W learns the stride of the parameter-free modified midpoint
    map (no trajectory end in the loss), and its distance to that map shrinks."""
    from flashmd.train.config import LossWeights

    weights = LossWeights(generating=0.0, modified=1.0)
    config = generating_config(store_path, tmp_path, "distil", loss_weights=weights)
    Trainer(config, progress=False).run()
    with open(tmp_path / "distil" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(row["loss_modified"]) for row in rows]
    assert "loss_generating" not in rows[0] or all(float(r["loss_generating"]) == 0 for r in rows)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_generating_function_recipe_errors_are_clear(store_path, tmp_path):
    recipe = tmp_path / "gen.yaml"
    recipe.write_text(f"{{name: x, store: {store_path}, output: o, generating: {{preset: tiny}}}}")
    with pytest.raises(RecipeError, match="learns W on top of a trained energy model"):
        load_train_config(recipe)


def test_filtered_momenta_restore_the_target_energy_and_keep_the_centre_of_mass():
    from flashmd.train.losses import filtered_momenta

    generator = torch.Generator().manual_seed(0)
    batch = {
        keys.MASSES: torch.tensor([27.0, 27.0, 63.5, 63.5, 63.5], dtype=torch.float64),
        keys.SYSTEM: torch.tensor([0, 0, 1, 1, 1]),
        keys.N_ATOMS: torch.tensor([2, 3]),
        keys.POSITIONS: torch.zeros(5, 3, dtype=torch.float64),
        keys.NUMBERS: torch.tensor([13, 13, 29, 29, 29]),
        keys.CELL: torch.eye(3, dtype=torch.float64).repeat(2, 1, 1) * 10.0,
        keys.PBC: torch.ones(2, 3, dtype=torch.bool),
    }
    momenta = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    potential = torch.tensor([-1.0, -2.0], dtype=torch.float64)
    target = torch.tensor([-0.5, -3.0], dtype=torch.float64)  # system 1: no real factor
    out = filtered_momenta(batch, target, potential, momenta)
    per_atom = (out**2).sum(1) / (2 * batch[keys.MASSES])
    k0 = float(per_atom[:2].sum())
    assert k0 + float(potential[0]) == pytest.approx(float(target[0]), rel=1e-12)
    assert torch.allclose(out[:2].sum(0), momenta[:2].sum(0), atol=1e-12)
    assert torch.equal(out[2:], momenta[2:])  # unchanged where no real factor exists


def test_unrolled_strides_train_and_log_their_term(store_path, tmp_path):
    config = tiny_config(store_path, tmp_path / "run", steps=3, unroll_strides=1, val_pairs=4)
    trainer = Trainer(config, progress=False)
    assert trainer.train_data.unroll == 1
    trainer.run()
    trainer.close()
    with open(tmp_path / "run" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    values = [float(row["loss_unroll"]) for row in rows]
    assert len(values) == 3 and all(np.isfinite(v) and v > 0 for v in values)


def test_fine_tuning_onto_another_reference_and_species_set(store_path, tmp_path, capsys):
    """Pretrained on asap3-EMT Al, fine-tuned on ASE-EMT Cu/Al: the carried models keep Al's
    weights, Cu starts from the mean embedding, and the energy model is re-referenced (ASE's EMT
    is another parameterisation and the species differ) unless the recipe says not to."""
    from flashmd.data.recipes import parse_recipe
    from flashmd.train.config import ModelSpec

    first = tiny_config(store_path, tmp_path / "first", steps=4, validate_every=4)
    Trainer(first, progress=False).run()
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml").model_dump(mode="json")
    recipe.update(calculator={"name": "emt"}, production_fs=120.0, equilibration_fs=20.0)
    recipe["systems"] = [
        {"builder": "alloy", "elements": {"Al": 1, "Cu": 1}, "supercell": [2, 2, 2]},
        {"builder": "crystal", "element": "Cu", "supercell": [2, 2, 2]},
    ]
    target = tmp_path / "cu.zarr"
    generate(parse_recipe(recipe), str(target), progress=False)
    checkpoint = str(tmp_path / "first" / "best.pt")
    source = flashmd.load_model(checkpoint, device="cpu")
    second = tiny_config(
        str(target),
        tmp_path / "second",
        steps=2,
        validate_every=2,
        predictor=ModelSpec(start_from=checkpoint),
        energy_model=ModelSpec(start_from=checkpoint),
    )
    capsys.readouterr()
    trainer = Trainer(second, progress=False)
    printed = capsys.readouterr().out
    assert "adds Cu (started from the mean embedding)" in printed
    assert "energy model re-referenced to this store: Al " in printed
    model = trainer.model
    assert set(model.species) == {13, 29}
    al = model.species.index(13)
    torch.testing.assert_close(
        model.predictor.species_embedding.embedding.weight[al].cpu(),
        source.predictor.species_embedding.embedding.weight[0].to(torch.float32),
    )
    trainer.run()
    tuned = flashmd.load_model(tmp_path / "second" / "best.pt", device="cpu")
    assert tuned.species == model.species
    not_refitted = second.model_copy(
        update={
            "output": str(tmp_path / "third"),
            "energy_model": ModelSpec(start_from=checkpoint, refit_energy_shift=False),
        }
    )
    capsys.readouterr()
    Trainer(not_refitted, progress=False)
    assert "re-referenced" not in capsys.readouterr().out
    with pytest.raises(TrainingError, match="cannot learn new species: train it further"):
        Trainer(
            second.model_copy(
                update={
                    "output": str(tmp_path / "fourth"),
                    "energy_model": ModelSpec(checkpoint=checkpoint),
                    "predictor": None,
                    "generating": {"preset": "tiny"},
                }
            ),
            progress=False,
        )


def test_validation_on_a_held_out_store(store_path, tmp_path):
    """validation_store: every trajectory of the store trains, the held-out store validates
    (its own sample interval), and a held-out store of another reference is refused."""
    from flashmd.data.recipes import parse_recipe

    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml").model_dump(mode="json")
    recipe.update(seed=5, production_fs=160.0, equilibration_fs=20.0, sample_interval_fs=8.0)
    held_out = tmp_path / "held-out.zarr"
    generate(parse_recipe(recipe), str(held_out), progress=False)
    config = tiny_config(
        store_path,
        tmp_path / "run",
        steps=2,
        validate_every=2,
        validation=0.0,
        validation_store=str(held_out),
    )
    trainer = Trainer(config, progress=False)
    assert trainer.train_ids == TrajectoryStore.open(store_path).ids()
    assert trainer.val_ids == TrajectoryStore.open(str(held_out)).ids()
    metrics = trainer.run()
    assert metrics["pos_ratio_32"] > 0 and metrics["energy_rmse_meV_atom"] > 0
    recipe.update(calculator={"name": "emt"})
    other = tmp_path / "other.zarr"
    generate(parse_recipe(recipe), str(other), progress=False)
    with pytest.raises(TrainingError, match="one model learns one reference"):
        Trainer(
            config.model_copy(update={"validation_store": str(other), "output": str(tmp_path)}),
            progress=False,
        )
    with pytest.raises(RecipeError, match="set validation: 0"):
        load_train_config(REPO / "training" / "tiny.yaml", validation_store=str(held_out))
