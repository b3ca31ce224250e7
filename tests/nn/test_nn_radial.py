"""Radial basis and smooth cutoff."""

from __future__ import annotations

import math

import pytest
import torch

from flashmd.nn import BesselBasis, PolynomialCutoff, RadialEmbedding


def test_bessel_basis_formula():
    basis = BesselBasis(cutoff=5.0, n_basis=4).double()
    r = torch.linspace(0.5, 6.0, 12, dtype=torch.float64)
    n = torch.arange(1, 5, dtype=torch.float64)
    expected = math.sqrt(2 / 5.0) * torch.sin(n * math.pi * r[:, None] / 5.0) / r[:, None]
    torch.testing.assert_close(basis(r), expected)


@pytest.mark.parametrize("p", [2, 6])
def test_cutoff_is_one_at_zero_and_vanishes_smoothly(p):
    cutoff = PolynomialCutoff(cutoff=4.0, p=p)
    r = torch.tensor([0.0, 3.999999, 4.0, 4.5], dtype=torch.float64, requires_grad=True)
    values = cutoff(r)
    assert values[0] == 1.0 and values[2] == 0.0 and values[3] == 0.0
    (grad,) = torch.autograd.grad(values.sum(), r, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), r)
    assert abs(float(grad[1].detach())) < 1e-8 and abs(float(second[1])) < 1e-3
    inside = torch.linspace(0.0, 3.99, 50, dtype=torch.float64)
    assert (cutoff(inside) > 0).all() and (cutoff(inside) <= 1).all()


def test_radial_embedding_is_zero_beyond_cutoff():
    embedding = RadialEmbedding(cutoff=3.0, n_basis=6)
    features = embedding(torch.tensor([1.0, 2.5, 3.0, 3.5]))
    assert features.shape == (4, 6)
    assert features[2:].abs().max() == 0 and features[:2].abs().max() > 0


def test_bad_parameters():
    with pytest.raises(ValueError, match="cutoff > 0"):
        BesselBasis(0.0, 4)
    with pytest.raises(ValueError, match="p >= 2"):
        PolynomialCutoff(4.0, p=1)
