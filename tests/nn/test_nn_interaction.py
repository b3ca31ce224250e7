"""Equivariance of the gate, interaction, backbone and readouts, and their irreps checks."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from flashmd.nn import (
    Backbone,
    GatedNonlinearity,
    InteractionBlock,
    ScalarReadout,
    VectorReadout,
    check_irreps,
    hidden_irreps,
)

HIDDEN = hidden_irreps(n_scalars=6, n_tensors=3, lmax=2)
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def random_graph(generator: torch.Generator, dtype: torch.dtype, n_atoms: int = 7):
    """Random positions in a 3 Å box and all pairs closer than 3 Å as edges."""
    positions = 3.0 * torch.rand(n_atoms, 3, generator=generator, dtype=dtype)
    distances = torch.cdist(positions, positions)
    receiver, sender = torch.nonzero((distances < 3.0) & (distances > 0), as_tuple=True)
    return positions, torch.stack([receiver, sender])


def random_o3(generator: torch.Generator, dtype: torch.dtype, reflect: bool) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    q = q * torch.sign(torch.det(q))
    return (-q if reflect else q).to(dtype)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())  # callers pass detached tensors


def wigner_D(irreps: o3.Irreps, rotation: torch.Tensor) -> torch.Tensor:
    """Representation matrix of ``irreps`` for an O(3) matrix, exact in float64.

    e3nn's ``D_from_matrix`` uses float32 constants (errors ~1e-7), too coarse for float64
    checks; here each ``D^l`` solves ``Y_l(R x) = D^l Y_l(x)`` by least squares on random
    points (spherical harmonics are exact polynomials), times the parity for improper ``R``.
    """
    points = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rotation64 = rotation.to(torch.float64)
    det = float(torch.det(rotation64).sign())
    blocks = []
    for mul, ir in irreps:
        y = o3.spherical_harmonics(ir.l, points, normalize=True)
        y_rotated = o3.spherical_harmonics(ir.l, points @ (det * rotation64).T, normalize=True)
        d = torch.linalg.lstsq(y, y_rotated).solution.T * (ir.p if det < 0 else 1)
        blocks += [d] * mul
    return torch.block_diag(*blocks).to(rotation.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reflect", [False, True])
@pytest.mark.parametrize("receiver_messages", [False, True])
def test_backbone_is_equivariant(dtype, reflect, receiver_messages):
    torch.manual_seed(0)
    irreps_in = o3.Irreps("4x0e + 1x1o + 1x1e + 1x2e + 1x2o")
    backbone = Backbone(
        irreps_in, HIDDEN, HIDDEN, 2, 2, 3.0, 4, 8, 5.0, receiver_messages=receiver_messages
    ).to(dtype)
    generator = torch.Generator().manual_seed(1)
    positions, edge_index = random_graph(generator, dtype)
    x = torch.randn(len(positions), irreps_in.dim, generator=generator, dtype=dtype)
    rotation = random_o3(generator, dtype, reflect)
    vectors = positions[edge_index[1]] - positions[edge_index[0]]
    with torch.no_grad():
        out = backbone(x, vectors, edge_index)
        out_rotated = backbone(
            x @ wigner_D(irreps_in, rotation).T, vectors @ rotation.T, edge_index
        )
    expected = out @ wigner_D(HIDDEN, rotation).T
    assert relative_error(out_rotated, expected) < TOLERANCE[dtype]
    assert out.abs().max() > 1e-3


def test_interaction_is_equivariant_and_uses_residual():
    torch.manual_seed(2)
    irreps_sh = o3.Irreps.spherical_harmonics(2)
    block = InteractionBlock(HIDDEN, HIDDEN, irreps_sh, 4, 8, 5.0).double()
    assert block.residual
    generator = torch.Generator().manual_seed(3)
    positions, edge_index = random_graph(generator, torch.float64)
    vectors = positions[edge_index[1]] - positions[edge_index[0]]
    radial = torch.rand(len(vectors), 4, generator=generator, dtype=torch.float64)
    x = torch.randn(len(positions), HIDDEN.dim, generator=generator, dtype=torch.float64)
    rotation = random_o3(generator, torch.float64, reflect=True)

    def run(features, edges):
        sh = o3.spherical_harmonics(irreps_sh, edges, normalize=True, normalization="component")
        return block(features, sh, radial, edge_index)

    D = wigner_D(HIDDEN, rotation)
    with torch.no_grad():
        rotated, plain = run(x @ D.T, vectors @ rotation.T), run(x, vectors)
    assert relative_error(rotated, plain @ D.T) < 1e-10


def message_into_first_atom(block: InteractionBlock, x: torch.Tensor) -> torch.Tensor:
    """What one edge (atom 1 -> atom 0) adds to atom 0's gate input, for features ``x``."""
    irreps_sh = block.irreps_sh
    vectors = torch.tensor([[1.0, 0.5, -0.3]], dtype=torch.float64)
    sh = o3.spherical_harmonics(irreps_sh, vectors, normalize=True, normalization="component")
    radial = torch.ones(1, 4, dtype=torch.float64)
    edge_index = torch.tensor([[0], [1]])
    gate_inputs: list[torch.Tensor] = []
    hook = block.gate.register_forward_pre_hook(lambda _, args: gate_inputs.append(args[0][0]))
    with torch.no_grad():
        block(x, sh, radial, edge_index)
        block(x, sh, 0 * radial, edge_index)  # zero radial features: no message
    hook.remove()
    return gate_inputs[0] - gate_inputs[1]


@pytest.mark.parametrize("receiver_messages", [False, True])
def test_receiver_messages_read_the_receiving_atom(receiver_messages):
    """Without them a message ignores its receiver's features; with them it does not."""
    torch.manual_seed(5)
    block = InteractionBlock(
        HIDDEN,
        HIDDEN,
        o3.Irreps.spherical_harmonics(2),
        4,
        8,
        5.0,
        receiver_messages=receiver_messages,
    ).double()
    x = torch.randn(2, HIDDEN.dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x_receiver_changed = x.clone()
    x_receiver_changed[0] += 1.0
    before = message_into_first_atom(block, x)
    after = message_into_first_atom(block, x_receiver_changed)
    assert before.abs().max() > 1e-6
    assert (not torch.allclose(before, after)) == receiver_messages


def test_layers_compute_only_reachable_and_needed_irreps():
    backbone = Backbone("4x0e", HIDDEN, "6x0e + 2x1o", 3, 2, 3.0, 4, 8, 5.0)
    assert backbone.layers[0].irreps_out == o3.Irreps("6x0e + 3x1o + 3x2e")
    assert backbone.layers[1].irreps_out == HIDDEN
    assert backbone.layers[2].irreps_out == o3.Irreps("6x0e + 2x1o")
    with pytest.raises(ValueError, match="cannot produce"):
        Backbone("4x0e", HIDDEN, "6x0e + 2x1e", 1, 2, 3.0, 4, 8, 5.0)


def test_gate_checks_its_irreps():
    gate = GatedNonlinearity(HIDDEN)
    assert gate.gate.irreps_out == HIDDEN
    assert gate.irreps_in == (o3.Irreps("6x0e + 12x0e") + HIDDEN[1:]).sort().irreps.simplify()
    with pytest.raises(ValueError, match="scalars before"):
        GatedNonlinearity("2x1o + 3x0e")
    with pytest.raises(ValueError, match="no scalars"):
        GatedNonlinearity("2x1o")


def test_modules_reject_wrong_irreps():
    with pytest.raises(ValueError, match="not spherical harmonics"):
        InteractionBlock(HIDDEN, HIDDEN, "1x0e + 1x1e", 4, 8, 5.0)
    with pytest.raises(ValueError, match="needs \\['1o'\\]"):
        VectorReadout("4x0e + 2x1e", 2)
    with pytest.raises(ValueError, match="needs \\['0e'\\]"):
        ScalarReadout("2x1o", 4)
    with pytest.raises(ValueError, match="needs"):
        check_irreps("thing", o3.Irreps("1x0e"), "1x2e")


def test_readouts_shapes_and_parity():
    torch.manual_seed(4)
    vector, scalar = VectorReadout(HIDDEN, 2).double(), ScalarReadout(HIDDEN, 4).double()
    x = torch.randn(5, HIDDEN.dim, dtype=torch.float64)
    inversion = wigner_D(HIDDEN, -torch.eye(3, dtype=torch.float64))
    assert vector(x).shape == (5, 2, 3) and scalar(x).shape == (5,)
    with torch.no_grad():
        torch.testing.assert_close(vector(x @ inversion.T), -vector(x))
        torch.testing.assert_close(scalar(x @ inversion.T), scalar(x))
