"""The modified midpoint map (``--symplectic modified``): the parameter-free correction
``(h²/24) H''(f, f)`` turns a harmonic mode by exactly ``2 atan((hω/2)(1 + h²ω²/12))``, which
makes the map fourth order where the plain implicit midpoint rule is second order (its
symplecticity and time reversal are tested with the learned kind's, in test_symplectic.py)."""

from __future__ import annotations

import math

import pytest
import torch

from flashmd import keys
from flashmd.md.symplectic import SymplecticPropagator, model_propagator
from flashmd.models.generating import modified_stride_gradients
from flashmd.units import FS

MASS = 63.546  # amu
STIFFNESS = 2.0  # eV/Å²
BOND = 2.5  # Å


class Spring(torch.nn.Module):
    """``V = k/2 (|r_2 - r_1| - r0)²`` of a dimer: a harmonic mode of the bond length when the
    atoms move along the bond."""

    def compute(self, batch: dict[str, torch.Tensor], forces: bool = False) -> dict:
        assert not forces
        q = batch[keys.POSITIONS]
        length = torch.linalg.vector_norm(q[1] - q[0])
        return {keys.ENERGY: (0.5 * STIFFNESS * (length - BOND) ** 2)[None]}


def dimer_stride(q, p, stride_fs, modified):
    """One implicit-midpoint stride of the dimer, solved by plain iteration to 1e-13."""
    base = {
        keys.MASSES: torch.full((2,), MASS, dtype=torch.float64),
        keys.SYSTEM: torch.zeros(2, dtype=torch.long),
        keys.STRIDE: torch.tensor([stride_fs], dtype=torch.float64),
    }
    h = stride_fs * FS
    spring = Spring()
    q_end, p_end = q.clone(), p.clone()
    for _ in range(200):
        mid = {**base, keys.POSITIONS: (q + q_end) / 2, keys.MOMENTA: (p + p_end) / 2}
        if modified:
            dq, dp = modified_stride_gradients(spring, mid)
        else:
            with torch.enable_grad():
                x = mid[keys.POSITIONS].requires_grad_(True)
                (gradient,) = torch.autograd.grad(
                    spring.compute({keys.POSITIONS: x})[keys.ENERGY].sum(), x
                )
            dq, dp = h * mid[keys.MOMENTA] / MASS, -h * gradient
        change = max(float((q + dq - q_end).abs().max()), float((p + dp - p_end).abs().max()))
        q_end, p_end = q + dq, p + dp
        if change < 1e-13:
            return q_end, p_end
    raise AssertionError("the test's fixed-point iteration did not converge")


def phase_after(strides, stride_fs, modified):
    """The bond mode's phase (rad) after ``strides`` strides from a stretched, resting dimer."""
    q = torch.tensor([[0.0, 0.0, 0.0], [BOND + 0.1, 0.0, 0.0]], dtype=torch.float64)
    p = torch.zeros_like(q)
    omega = math.sqrt(STIFFNESS / (MASS / 2))  # per ASE time unit
    total, previous = 0.0, 0.0
    for _ in range(strides):
        q, p = dimer_stride(q, p, stride_fs, modified)
        stretch = float(q[1, 0] - q[0, 0]) - BOND
        rate = float(p[1, 0] - p[0, 0]) / MASS  # d(stretch)/dt
        angle = math.atan2(-rate / omega, stretch)
        step = (angle - previous) % (2 * math.pi)
        total, previous = total + step, angle
    return total, omega


@pytest.mark.parametrize("stride_fs", [16.0, 32.0])
def test_a_harmonic_mode_turns_by_the_predicted_angle(stride_fs):
    strides = 6
    turned, omega = phase_after(strides, stride_fs, modified=True)
    x = stride_fs * FS * omega / 2
    assert turned == pytest.approx(strides * 2 * math.atan(x * (1 + x * x / 3)), abs=1e-9)
    plain, _ = phase_after(strides, stride_fs, modified=False)
    assert plain == pytest.approx(strides * 2 * math.atan(x), abs=1e-9)


def test_fourth_order_against_second_order():
    """Phase error after the same time at two strides: 16x smaller at half the stride for the
    modified map, 4x for the plain midpoint rule."""
    errors = {}
    for modified in (False, True):
        for stride_fs, strides in ((32.0, 8), (16.0, 16)):
            turned, omega = phase_after(strides, stride_fs, modified)
            errors[modified, stride_fs] = abs(turned - omega * 256.0 * FS)
    assert errors[False, 32.0] / errors[False, 16.0] == pytest.approx(4.0, rel=0.1)
    assert errors[True, 32.0] / errors[True, 16.0] == pytest.approx(16.0, rel=0.15)
    assert errors[True, 32.0] < 0.1 * errors[False, 32.0]


def test_modified_and_midpoint_strides_need_only_an_energy_model():
    from md_testkit import tiny_model

    propagator = model_propagator(tiny_model(), symplectic="modified")
    assert propagator.generating == "modified"
    with pytest.raises(ValueError, match="generating must be one of"):
        SymplecticPropagator(tiny_model(), generating="exact")


def test_the_command_line_names_the_kind_and_defaults_to_the_learned_one():
    from flashmd.cli_parser import build_parser

    base = ["md", "x.xyz", "--model", "m", "--stride-fs", "32", "--strides", "1", "-o", "r"]
    parser = build_parser()
    assert parser.parse_args(base).symplectic is None
    assert parser.parse_args([*base, "--symplectic"]).symplectic == "learned"
    assert parser.parse_args([*base, "--symplectic", "modified"]).symplectic == "modified"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--symplectic", "exact"])
