"""The constraint layer: exact total momentum and uniform centre-of-mass motion."""

from __future__ import annotations

import torch

from flashmd.models.constraints import apply_constraints
from flashmd.nn import scatter_sum
from flashmd.units import FS


def random_step(seed: int = 0, sizes: tuple[int, ...] = (5, 1, 9)):
    generator = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    system = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    masses = 1.0 + 60.0 * torch.rand(n, generator=generator, dtype=torch.float64)
    stride_fs = torch.tensor([16.0, 32.0, 64.0], dtype=torch.float64)[: len(sizes)]
    return randn(n, 3), randn(n, 3) * 5, randn(n, 3) * 5, masses, system, stride_fs


def test_total_momentum_is_kept_exactly():
    displacements, new_momenta, momenta, masses, system, stride_fs = random_step()
    _, constrained = apply_constraints(
        displacements, new_momenta, momenta, masses, system, stride_fs
    )
    torch.testing.assert_close(
        scatter_sum(constrained, system, 3), scatter_sum(momenta, system, 3), rtol=0, atol=1e-12
    )


def test_centre_of_mass_moves_by_stride_times_velocity():
    displacements, new_momenta, momenta, masses, system, stride_fs = random_step(1)
    constrained, _ = apply_constraints(
        displacements, new_momenta, momenta, masses, system, stride_fs
    )
    total_mass = scatter_sum(masses, system, 3)[:, None]
    com = scatter_sum(masses[:, None] * constrained, system, 3) / total_mass
    expected = (stride_fs * FS)[:, None] * scatter_sum(momenta, system, 3) / total_mass
    torch.testing.assert_close(com, expected, rtol=0, atol=1e-12)


def test_corrections_are_uniform_within_each_system():
    displacements, new_momenta, momenta, masses, system, stride_fs = random_step(2)
    constrained_q, constrained_p = apply_constraints(
        displacements, new_momenta, momenta, masses, system, stride_fs
    )
    shift = constrained_q - displacements
    velocity_shift = (constrained_p - new_momenta) / masses[:, None]
    for s in range(3):
        rows = system == s
        torch.testing.assert_close(shift[rows], shift[rows][:1].expand(int(rows.sum()), 3))
        torch.testing.assert_close(
            velocity_shift[rows], velocity_shift[rows][:1].expand(int(rows.sum()), 3)
        )


def test_projection_is_idempotent():
    displacements, new_momenta, momenta, masses, system, stride_fs = random_step(3)
    once = apply_constraints(displacements, new_momenta, momenta, masses, system, stride_fs)
    twice = apply_constraints(*once, momenta, masses, system, stride_fs)
    torch.testing.assert_close(twice[0], once[0], rtol=0, atol=1e-13)
    torch.testing.assert_close(twice[1], once[1], rtol=0, atol=1e-13)


def test_rotation_commutes_with_constraints():
    displacements, new_momenta, momenta, masses, system, stride_fs = random_step(4)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(5)).double())
    rotated = apply_constraints(
        displacements @ q.T, new_momenta @ q.T, momenta @ q.T, masses, system, stride_fs
    )
    plain = apply_constraints(displacements, new_momenta, momenta, masses, system, stride_fs)
    torch.testing.assert_close(rotated[0], plain[0] @ q.T)
    torch.testing.assert_close(rotated[1], plain[1] @ q.T)
