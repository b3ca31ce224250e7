"""One equivariant message-passing interaction (NequIP-style convolution)."""

from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet

from flashmd.nn.gate import GatedNonlinearity
from flashmd.nn.irreps import check_irreps
from flashmd.nn.scatter import scatter_sum


def _message_irreps(
    irreps_in: o3.Irreps, irreps_sh: o3.Irreps, targets: o3.Irreps
) -> tuple[o3.Irreps, list[tuple[int, int, int, str, bool]]]:
    """Irreps and ``uvu`` instructions of the tensor product ``irreps_in x irreps_sh`` restricted
    to the irreps present in ``targets``; the output irreps are sorted."""
    wanted = {ir for _, ir in targets}
    irreps_mid: list[tuple[int, o3.Irrep]] = []
    instructions: list[tuple[int, int, int, str, bool]] = []
    for i_in, (mul, ir_in) in enumerate(irreps_in):
        for i_sh, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in wanted:
                    instructions.append((i_in, i_sh, len(irreps_mid), "uvu", True))
                    irreps_mid.append((mul, ir_out))
    irreps_sorted, permutation, _ = o3.Irreps(irreps_mid).sort()
    instructions = [(i1, i2, permutation[k], mode, w) for i1, i2, k, mode, w in instructions]
    return irreps_sorted, instructions


def refresh_wigner_3j(module: torch.nn.Module) -> None:
    """Recompute e3nn's Wigner-3j buffers of ``module`` exactly in their current dtype.

    e3nn builds them in the default dtype (float32) and ``.double()`` only casts those rounded
    values, which breaks float64 equivariance at ~1e-9. Computing them in float64 and casting
    restores exact equivariance in float64 (and correctly rounded values in float32).
    """
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            base = name.rsplit(".", 1)[-1]
            if base.startswith("_w3j_"):
                l1, l2, l3 = (int(degree) for degree in base.removeprefix("_w3j_").split("_"))
                exact = o3.wigner_3j(l1, l2, l3, dtype=torch.float64, device=buffer.device)
                buffer.copy_(exact.to(buffer.dtype))


def _refresh_after_load(module: torch.nn.Module, incompatible_keys: object) -> None:
    refresh_wigner_3j(module)


class InteractionBlock(torch.nn.Module):
    """Message passing: ``x_i' = Gate(Lin(Σ_j TP(Lin(x_j), Y(r̂_ij); R(|r_ij|)) / √n) + SC(x_i))``.

    The tensor-product weights of each edge come from a bias-free radial MLP of the (already
    cutoff-enveloped) radial features, so messages vanish smoothly at the cutoff. A residual
    connection is added when ``irreps_in == irreps_out``.

    With ``receiver_messages`` the tensor product reads ``Lin(x_j) + Lin'(x_i)``: each message
    then depends on both ends of its edge, so products such as ``p_i ⊗ Y(r̂_ij)`` (the receiver's
    own momentum against each bond, which the change of the force over a stride needs) and
    relative momenta along bonds are formed in one layer instead of through a two-hop path.

    Args:
        irreps_in: irreps of the node features read.
        irreps_out: irreps of the node features written (scalars first, see GatedNonlinearity).
        irreps_sh: irreps of the edge spherical harmonics (``o3.Irreps.spherical_harmonics``).
        n_radial: number of radial features per edge.
        radial_hidden: width of the two hidden layers of the radial MLP.
        avg_num_neighbors: typical neighbour count; aggregated messages are divided by its root.
        receiver_messages: add a linear map of the receiver's features to each message's input.
    """

    def __init__(
        self,
        irreps_in: str | o3.Irreps,
        irreps_out: str | o3.Irreps,
        irreps_sh: str | o3.Irreps,
        n_radial: int,
        radial_hidden: int,
        avg_num_neighbors: float,
        receiver_messages: bool = False,
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.irreps_sh = o3.Irreps(irreps_sh)
        lmax = self.irreps_sh.lmax
        if self.irreps_sh != o3.Irreps.spherical_harmonics(lmax):
            raise ValueError(f"irreps_sh {self.irreps_sh} are not spherical harmonics 0..{lmax}")
        if avg_num_neighbors <= 0:
            raise ValueError(f"avg_num_neighbors must be positive, got {avg_num_neighbors}")
        self.gate = GatedNonlinearity(self.irreps_out)
        irreps_mid, instructions = _message_irreps(
            self.irreps_in, self.irreps_sh, self.gate.irreps_in
        )
        check_irreps("InteractionBlock messages", irreps_mid, self.gate.irreps_in)

        self.linear_up = o3.Linear(self.irreps_in, self.irreps_in)
        self.linear_receiver = (
            o3.Linear(self.irreps_in, self.irreps_in) if receiver_messages else None
        )
        self.tensor_product = o3.TensorProduct(
            self.irreps_in,
            self.irreps_sh,
            irreps_mid,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )
        self.radial_mlp = FullyConnectedNet(
            [n_radial, radial_hidden, radial_hidden, self.tensor_product.weight_numel],
            torch.nn.functional.silu,
        )
        self.linear_down = o3.Linear(irreps_mid, self.gate.irreps_in)
        self.self_connection = o3.Linear(self.irreps_in, self.gate.irreps_in)
        self.residual = self.irreps_in == self.irreps_out
        self.norm = 1.0 / math.sqrt(avg_num_neighbors)
        refresh_wigner_3j(self)
        self.register_load_state_dict_post_hook(_refresh_after_load)

    def _apply(self, fn, recurse=True):
        # every .to(), .double(), .cuda() goes through here: keep the 3j symbols exact
        super()._apply(fn, recurse)
        refresh_wigner_3j(self)
        return self

    def forward(
        self,
        x: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        edge_index: torch.Tensor,
    ) -> torch.Tensor:
        """Update node features.

        Args:
            x: ``(A, irreps_in.dim)`` node features.
            edge_sh: ``(E, irreps_sh.dim)`` spherical harmonics of the edge directions.
            edge_radial: ``(E, n_radial)`` radial features, zero at and beyond the cutoff.
            edge_index: ``(2, E)`` long, (receiver i, sender j) of each edge.

        Returns:
            ``(A, irreps_out.dim)`` new node features.
        """
        receiver, sender = edge_index[0], edge_index[1]
        weights = self.radial_mlp(edge_radial)
        inputs = self.linear_up(x)[sender]
        if self.linear_receiver is not None:
            inputs = inputs + self.linear_receiver(x)[receiver]
        messages = self.tensor_product(inputs, edge_sh, weights)
        aggregated = scatter_sum(messages, receiver, x.shape[0]) * self.norm
        out = self.gate(self.linear_down(aggregated) + self.self_connection(x))
        return x + out if self.residual else out
