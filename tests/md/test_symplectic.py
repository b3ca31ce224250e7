"""Symplectic strides: the Anderson solver, symplecticity, time reversal, conservation, and how
unconverged strides, missing generating functions and the rollout store are handled."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from md_testkit import cluster, crystal, thermal, tiny_model, tiny_symplectic_model

from flashmd.md.batch import MDSettings
from flashmd.md.metropolis import check_proposal
from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import ModelPotential, ModelPropagator
from flashmd.md.state import state_from_atoms
from flashmd.md.stepper import Stepper
from flashmd.md.symplectic import (
    SolverConfig,
    SymplecticPropagator,
    anderson_solve,
    model_propagator,
)
from flashmd.units import FS

TIGHT = SolverConfig(tolerance_A=1e-11, max_iterations=200)


def solve(propagator, state, stride_fs=16.0):
    edges = NeighborCache(propagator.cutoff, 1.0).edges(state)
    return propagator.propagate(state, edges, stride_fs)


def test_anderson_solves_a_linear_map_that_plain_iteration_cannot():
    rng = np.random.default_rng(0)
    system = torch.tensor([0, 0, 1, 1, 1])
    # per system, y -> A y + b with spectral radius above 1 (plain iteration diverges)
    blocks = [rng.normal(size=(4, 4)), rng.normal(size=(6, 6))]
    blocks = [torch.tensor(1.3 * b / np.abs(np.linalg.eigvals(b)).max()) for b in blocks]
    b = torch.tensor(rng.normal(size=(5, 2)))

    def mapping(y):
        first = (blocks[0] @ y[:2].reshape(-1)).reshape(2, 2)
        second = (blocks[1] @ y[2:].reshape(-1)).reshape(3, 2)
        return torch.cat([first, second]) + b

    exact = torch.cat(
        [
            torch.linalg.solve(torch.eye(4) - blocks[0], b[:2].reshape(-1)).reshape(2, 2),
            torch.linalg.solve(torch.eye(6) - blocks[1], b[2:].reshape(-1)).reshape(3, 2),
        ]
    ).to(b.dtype)
    start = torch.zeros_like(b)
    config = SolverConfig(tolerance_A=1e-10, max_iterations=40, history=8)
    y, iterations, converged = anderson_solve(mapping, start, system, 2, config)
    assert bool(converged.all()) and int(iterations.max()) < 40
    assert torch.allclose(y, exact, atol=1e-9)
    plain = SolverConfig(tolerance_A=1e-10, max_iterations=40, history=0)
    _, _, converged = anderson_solve(mapping, start, system, 2, plain)
    assert not bool(converged.any())
    # each system is solved on its own: alone it takes the same iterates
    alone, iterations_alone, _ = anderson_solve(
        lambda y: mapping(torch.cat([y, y[:0].new_zeros(3, 2)]))[:2],
        start[:2],
        system[:2],
        1,
        config,
    )
    assert torch.allclose(alone, y[:2], atol=1e-12) and int(iterations_alone[0]) == int(
        iterations[0]
    )


@pytest.mark.parametrize("generating", ["learned", "modified"])
def test_the_map_is_symplectic(generating):
    """The Jacobian M of the solved map (central differences) satisfies MᵀJM = J, for the
    learned generating function and for the parameter-free modified midpoint map."""
    model = tiny_symplectic_model()
    propagator = SymplecticPropagator(model, TIGHT, generating=generating)
    state = state_from_atoms([thermal(cluster(), seed=1, temperature_K=600.0)[:3]])
    edges = NeighborCache(model.cutoff, 3.0).edges(state)
    n = state.positions.numel()
    x0 = torch.cat([state.positions.reshape(-1), state.momenta.reshape(-1)])

    def stride(x):
        moved = state.replace(positions=x[:n].reshape(-1, 3), momenta=x[n:].reshape(-1, 3))
        q, p = propagator.propagate(moved, edges, 16.0)
        return torch.cat([q.reshape(-1), p.reshape(-1)])

    eps = 1e-5
    columns = []
    for i in range(2 * n):
        e = torch.zeros(2 * n, dtype=torch.float64)
        e[i] = eps
        columns.append((stride(x0 + e) - stride(x0 - e)) / (2 * eps))
    jacobian = torch.stack(columns, dim=1)
    j = torch.zeros(2 * n, 2 * n, dtype=torch.float64)
    j[:n, n:], j[n:, :n] = torch.eye(n), -torch.eye(n)
    assert float((jacobian - torch.eye(2 * n)).abs().max()) > 0.05  # a real map, not identity
    assert float((jacobian.T @ j @ jacobian - j).abs().max()) < 1e-7
    assert abs(float(torch.linalg.det(jacobian)) - 1.0) < 1e-7


@pytest.mark.parametrize(
    ("kind", "generating"),
    [("crystal", "learned"), ("cluster", "learned"), ("crystal", "modified")],
)
def test_forward_then_back_with_flipped_momenta_returns_to_the_start(kind, generating):
    model = tiny_symplectic_model()
    propagator = SymplecticPropagator(model, TIGHT, generating=generating)
    reference = crystal((2, 2, 1)) if kind == "crystal" else cluster()
    state = state_from_atoms([thermal(reference, seed=2, temperature_K=900.0)])
    positions, momenta = solve(propagator, state, 32.0)
    assert float((positions - state.positions).abs().max()) > 0.05  # atoms moved
    back = state.replace(positions=positions, momenta=-momenta)
    positions_back, momenta_back = solve(propagator, back, 32.0)
    assert float((positions_back - state.positions).abs().max()) < 1e-9
    assert float((-momenta_back - state.momenta).abs().max()) < 1e-8
    # the direct predictor of the same model is not reversible
    direct = ModelPropagator(model)
    q, p = solve(direct, state, 32.0)
    q_back, _ = solve(direct, state.replace(positions=q, momenta=-p), 32.0)
    assert float((q_back - state.positions).abs().max()) > 1e-4


def test_batch_equals_single_and_momentum_is_conserved():
    model = tiny_symplectic_model()
    propagator = SymplecticPropagator(model, SolverConfig(tolerance_A=1e-10))
    systems = [thermal(crystal(), seed=3), thermal(cluster(), seed=4)]
    batched = state_from_atoms(systems)
    positions, _ = solve(propagator, batched)
    iterations = propagator.last_iterations.clone()
    for k, atoms in enumerate(systems):
        single = state_from_atoms([atoms])
        q, p = solve(propagator, single)
        part = batched.system == k
        assert torch.allclose(q, positions[part], atol=1e-9)
        assert int(propagator.last_iterations[0]) == int(iterations[k])
        assert torch.allclose(p.sum(0), single.momenta.sum(0), atol=1e-9)
    assert propagator.strides == 4 and propagator.mean_iterations > 1


def test_unconverged_strides_are_redone_counted_and_warned_about():
    model = tiny_symplectic_model()
    solver = SolverConfig(tolerance_A=1e-14, max_iterations=2, warn_rate=0.5, warn_after=10)
    propagator = SymplecticPropagator(model, solver)
    stepper = Stepper(propagator, 32.0, potential=ModelPotential(model))
    state = stepper.prepare(state_from_atoms([thermal(crystal(), seed=5)]))
    with pytest.warns(RuntimeWarning, match="did not converge on 100.0% of 1[0-9] strides"):
        for _ in range(4):
            state, stats = stepper.step(state)
    # each stride and both its half strides failed, then velocity Verlet repaired it
    assert propagator.unconverged == 12 and stepper.fallbacks == 4
    assert stepper.verlet_fallbacks == 8
    assert bool(torch.isfinite(state.positions).all())
    assert float(stats.iterations[0]) == 6  # the stride's and its half strides' iterations


def test_nve_with_symplectic_strides_conserves_energy_and_records_iterations():
    model = tiny_symplectic_model()
    propagator = model_propagator(model, symplectic=True)
    stepper = Stepper(propagator, 16.0, potential=ModelPotential(model))
    state = stepper.prepare(state_from_atoms([thermal(crystal(), seed=6)]))
    target = state.target_energy.clone()
    for _ in range(8):
        state, stats = stepper.step(state)
    total = state.kinetic_energy() + stats.potential_energy
    assert torch.allclose(total, target, rtol=0, atol=1e-9)
    assert stats.iterations is not None and float(stats.iterations[0]) >= 1


def test_clear_errors():
    with pytest.raises(ValueError, match="no generating function.*generating: \\{preset"):
        model_propagator(tiny_model(), symplectic=True)
    with pytest.raises(ValueError, match="symplectic strides only"):
        model_propagator(tiny_model(), solver=SolverConfig())
    with pytest.raises(ValueError, match="tolerance_A must be positive"):
        SolverConfig(tolerance_A=0)
    propagator = SymplecticPropagator(tiny_symplectic_model())
    state = state_from_atoms([thermal(crystal(), seed=7)])
    with pytest.raises(ValueError, match="supported symplectic strides are"):
        propagator.check(state, 64.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        propagator.check(state, 16.0)


def test_corrector_strides_shrink_the_predictors_error_with_each_iteration():
    """Corrector strides keep the iterate after k sweeps from the predictor's stride: each sweep
    brings it closer to the solved stride, none is redone, and the map is no longer one a
    Metropolis chain may take."""
    model = tiny_symplectic_model()
    state = state_from_atoms([thermal(crystal(), seed=8, temperature_K=900.0)])
    solved = torch.cat(solve(SymplecticPropagator(model, TIGHT), state, 32.0), dim=1)
    predicted = torch.cat(solve(ModelPropagator(model), state, 32.0), dim=1)
    moved = (32.0 * FS / state.masses)[:, None].expand(-1, 3)  # momenta as Å moved
    scale = torch.cat([torch.ones_like(moved), moved], dim=1)
    errors = [float(((predicted - solved) * scale).abs().max())]
    for k in (1, 2, 3):
        propagator = SymplecticPropagator(
            model, SolverConfig(tolerance_A=1e-14, max_iterations=k, corrector=True)
        )
        propagator.check(state, 32.0)
        corrected = torch.cat(solve(propagator, state, 32.0), dim=1)
        assert bool(torch.isfinite(corrected).all()) and propagator.unconverged == 0
        assert int(propagator.last_iterations[0]) == k
        errors.append(float(((corrected - solved) * scale).abs().max()))
    assert errors[0] > 1e-3  # the predictor is off the solved stride
    assert all(b < 0.6 * a for a, b in itertools.pairwise(errors)), errors
    assert not propagator.volume_preserving
    assert SymplecticPropagator(model).volume_preserving
    with pytest.raises(ValueError, match="not a volume-preserving.*corrector=True"):
        check_proposal(propagator)


def test_corrector_strides_need_the_predictors_stride_and_symplectic_settings():
    model = tiny_symplectic_model()
    model.predictor = None
    propagator = SymplecticPropagator(model, SolverConfig(max_iterations=2, corrector=True))
    state = state_from_atoms([thermal(crystal(), seed=9)])
    with pytest.raises(ValueError, match="corrector strides start from the direct predictor"):
        propagator.check(state, 16.0)
    common = {"structures": ("x.xyz",), "model": "m", "stride_fs": 32.0}
    with pytest.raises(ValueError, match="add --symplectic"):
        MDSettings(**common, corrector_iterations=3)
    with pytest.raises(ValueError, match="corrector strides are not"):
        MDSettings(**common, corrector_iterations=3, symplectic=True, ensemble="metropolis")
    with pytest.raises(ValueError, match="must be >= 1"):
        MDSettings(**common, corrector_iterations=0, symplectic=True)
    with pytest.raises(ValueError, match="drop --solver-max-iterations"):
        MDSettings(**common, corrector_iterations=3, symplectic=True, solver_max_iterations=5)


def speed_rows(model_path, **options) -> dict[str, str]:
    """The flashmd rows of a tiny speed benchmark: method label -> its iterations column."""
    from flashmd.bench.speed import bench_speed

    out = bench_speed(
        str(model_path),
        "Al",
        cells=(1,),
        strides_fs=(16.0,),
        seconds=0.01,
        repeats=1,
        equilibration_fs=20.0,
        devices=["cpu"],
        **options,
    )
    lines = out.splitlines()
    header = next(line.split("|")[1:-1] for line in lines if line.startswith("| method"))
    column = [cell.strip() for cell in header].index("iterations")
    return {
        r[0].strip(): r[column].strip()
        for r in (line.split("|")[1:-1] for line in lines if line.startswith("| flashmd"))
    }


@pytest.mark.parametrize(("kind", "label"), [(True, "symplectic"), ("modified", "modified")])
def test_speed_benchmark_reports_symplectic_rows_with_their_iterations(tmp_path, kind, label):
    from flashmd.models.io import save_checkpoint

    model = save_checkpoint(tiny_symplectic_model(torch.float32), tmp_path / "sym.pt")
    rows = speed_rows(model, symplectic=kind)
    assert list(rows) == ["flashmd (energy filter)", f"flashmd {label} (energy filter)"]
    assert rows["flashmd (energy filter)"] == "-"
    assert float(rows[f"flashmd {label} (energy filter)"]) >= 1


def test_speed_benchmark_reports_corrector_rows_with_their_iterations(tmp_path):
    from flashmd.bench.speed import bench_speed
    from flashmd.models.io import save_checkpoint

    model = save_checkpoint(tiny_symplectic_model(torch.float32), tmp_path / "sym.pt")
    assert speed_rows(model, corrector_iterations=(1, 2)) == {
        "flashmd (energy filter)": "-",
        "flashmd symplectic corrector 1 (energy filter)": "1.0",
        "flashmd symplectic corrector 2 (energy filter)": "2.0",
    }
    with pytest.raises(ValueError, match="corrector iterations must be >= 1"):
        bench_speed(str(model), "Al", cells=(1,), corrector_iterations=(0,))
