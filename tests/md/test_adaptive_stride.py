"""Adaptive stride: strides the predictor is unsure of are declined and taken as half strides
before the filter is tried; frames stay on the longest stride's grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from md_testkit import crystal, thermal
from md_testkit import harmonic as harmonic_model
from test_consistency import Biased

from flashmd.analysis.report import evaluate
from flashmd.md.batch import MDSettings, run_md
from flashmd.md.consistency import StrideConsistency
from flashmd.md.state import state_from_atoms
from flashmd.md.stepper import AdaptiveStride, Stepper

STRIDES = (16.0, 32.0, 64.0)


@pytest.fixture
def system():
    reference = crystal((2, 2, 2))
    return harmonic_model([reference]), state_from_atoms(thermal(reference, 5, 600.0))


def adaptive_stepper(propagator, threshold_A: float) -> Stepper:
    adaptive = AdaptiveStride(StrideConsistency(propagator, STRIDES), threshold_A)
    return Stepper(propagator, 64.0, adaptive=adaptive)


def test_an_exact_flow_takes_every_stride_whole(system):
    exact, state = system
    stepper = adaptive_stepper(exact, 1e-6)
    fixed = Stepper(exact, 64.0)
    a, b = stepper.prepare(state), fixed.prepare(state)
    for _ in range(3):
        a, stats = stepper.step(a)
        b, _ = fixed.step(b)
    assert stepper.declined == 0 and not bool(stats.declined.any())
    assert torch.allclose(a.positions, b.positions, atol=1e-12)
    assert stepper.predictions == 3 * 3  # every check: the whole stride and its two halves


def test_an_unsure_stride_takes_the_two_half_strides_of_its_check(system):
    exact, state = system
    # a bias of 0.02 Å x (S / 32 fs)^2: one 64 fs stride is 0.08 Å off, two 32 fs strides 0.04
    # Å, so about 0.04 Å apart; at 32 fs about 0.01 Å
    biased = Biased(exact, 0.02)
    stepper = adaptive_stepper(biased, 0.02)
    two_halves = Stepper(biased, 32.0)
    a, b = stepper.prepare(state), two_halves.prepare(state)
    a, stats = stepper.step(a)
    b, _ = two_halves.step(b)
    b, _ = two_halves.step(b)
    assert stepper.declined == 1 and bool(stats.declined.all()) and not bool(stats.fallback.any())
    assert stepper.fallbacks == 0 and stepper.splits == 0  # the halves were already computed
    assert torch.allclose(a.positions, b.positions, atol=1e-12)
    assert stepper.predictions == 3


def test_md_auto_stride_records_declined_strides_on_the_longest_grid(tmp_path, reference_and_model):
    reference, model = reference_and_model
    settings = MDSettings(
        model=model,
        start_from=reference,
        temperature_K=600.0,
        stride_fs="auto",
        strides=3,
        adaptive_threshold_A=1e-9,  # every 32 fs stride declined: taken as two 16 fs strides
        energy_filter=False,  # no stride redone: three predictions per stride exactly
        contact_fraction=0.0,
    )
    report = run_md(settings, str(tmp_path / "md.zarr"), progress=False)
    group = zarr.open_group(str(tmp_path / "md.zarr"), mode="r")["trajectories"]
    for name in group.group_keys():
        assert group[name].attrs["timestep_fs"] == 32.0
        assert np.asarray(group[name]["stride_declined"][:]).tolist() == [0.0, 1.0, 1.0, 1.0]
        assert np.asarray(group[name]["time_fs"][:]).tolist() == [0.0, 32.0, 64.0, 96.0]
    assert report.declined == 3 * len(list(group.group_keys()))
    assert report.effective_stride_fs == pytest.approx(32.0 / 3)
    shown = evaluate(reference, str(tmp_path / "md.zarr"), tmp_path / "report", figures=False)
    rows = {m.key: m for condition in shown.conditions for m in condition.metrics}
    assert rows["declined_fraction"].rollout == 1.0


def test_adaptive_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="number of fs or 'auto'"):
        MDSettings(model="m", structures=("a.xyz",), stride_fs="fast")
    with pytest.raises(ValueError, match="needs stride_fs 'auto'"):
        MDSettings(model="m", structures=("a.xyz",), stride_fs=32.0, adaptive_threshold_A=0.1)
    with pytest.raises(ValueError, match="adaptive_threshold_A must be positive"):
        MDSettings(model="m", structures=("a.xyz",), stride_fs="auto", adaptive_threshold_A=0.0)
    with pytest.raises(ValueError, match="drop --symplectic"):
        MDSettings(model="m", structures=("a.xyz",), stride_fs="auto", symplectic=True)
    with pytest.raises(ValueError, match="threshold_A must be positive"):
        AdaptiveStride(StrideConsistency(Biased(None, 0.0), STRIDES), 0.0)
