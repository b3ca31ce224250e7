"""A learned generating function for symplectic, time-reversible strides.

The stride map of :mod:`flashmd.md.symplectic` is the implicit midpoint rule on a scalar
``S(x̄; h)`` of the midpoint ``x̄ = (q̄, p̄)`` of the stride's two ends::

    S(q̄, p̄; h) = h [ K(p̄) + V(q̄) + a(h) W(q̄, p̄; h) ]

``K = Σ p̄²/2m`` is exact, ``V`` is the checkpoint's energy model (kept fixed), and this module is
the correction ``W`` (eV): a sum of per-atom invariants of an e3nn message-passing network. With
``a(h) = 0`` (the start of training) the map is the implicit midpoint rule on ``K + V``; ``W``
carries what a stride of tens of fs needs beyond it (the modified Hamiltonian's momentum-dependent
terms, of order ``h²``).

Symmetries, exact by construction:

* **E(3) invariance**: only relative edge vectors, species, and rotation invariants or ``l = 2``
  tensors of the momenta enter, and the readout is a scalar.
* **Even in the momenta** (time reversal): the momenta enter only through quadratic forms, even
  under ``p -> -p``: per atom ``|p̃|²`` and ``Y₂(p̃)``; per edge the pair's relative kinetic
  energy ``μ_ij |v_j - v_i|²`` and its part along the bond ``μ_ij ((v_j - v_i)·r̂_ij)²``
  (``μ_ij`` the reduced mass), summed over neighbours with a radial basis, and
  ``Σ_j f_c(r_ij) Y₂(√μ_ij (v_j - v_i))``. The edge terms carry the products of *different*
  atoms' momenta that the modified Hamiltonian of a long stride needs (for a pair potential its
  leading momentum term is ``Σ_ij v_ijᵀ ∂²φ(r_ij) v_ij``, a function of exactly these), which
  per-atom even features cannot form.
* **Galilean invariance**: ``p̃`` are the momenta relative to each system's centre-of-mass
  motion, ``p_i - m_i P/M``; so ``Σ_i m_i ∂W/∂p_i = 0`` and the centre of mass moves exactly by
  ``h P / M``. Translation invariance gives ``Σ_i ∂W/∂q_i = 0``: total momentum is conserved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from e3nn import o3

from flashmd import keys
from flashmd.data.graph import edge_vectors
from flashmd.models.config import BackboneConfig, stride_fields
from flashmd.nn import (
    GaussianEmbedding,
    PolynomialCutoff,
    RadialEmbedding,
    ScalarReadout,
    SpeciesEmbedding,
    scatter_sum,
)
from flashmd.units import FS


@dataclass(frozen=True, kw_only=True)
class GeneratingConfig(BackboneConfig):
    """Hyperparameters of :class:`GeneratingFunction` (backbone fields in BackboneConfig)."""

    strides_fs: tuple[float, ...] = (16.0, 32.0, 64.0)
    """Strides in fs the generating function serves; each has its own learnable scale ``a(h)``."""
    n_stride_basis: int = 8
    """Number of Gaussian features of the stride, centred evenly on ``[0, max(strides_fs)]``."""
    momentum_scale: float = 0.3
    """Typical ``|p/√m|`` in √eV; normalises the momentum features."""
    readout_hidden: int = 16
    """Width of the hidden layer of the per-atom readout."""
    energy_scale: float = 0.1
    """Scale in eV of each atom's contribution to ``W`` (times the learnable ``a(h)``)."""

    kind: ClassVar[str] = "generating"

    def __post_init__(self) -> None:
        super().__post_init__()
        strides = stride_fields(self.strides_fs, self.n_stride_basis, self.momentum_scale)
        object.__setattr__(self, "strides_fs", strides)
        if not self.energy_scale > 0:
            raise ValueError(f"energy_scale must be positive, got {self.energy_scale}")
        if self.readout_hidden < 1:
            raise ValueError(f"readout_hidden must be >= 1, got {self.readout_hidden}")


def internal_momenta(
    momenta: torch.Tensor, masses: torch.Tensor, system: torch.Tensor, n_systems: int
) -> torch.Tensor:
    """``p_i - m_i P/M`` (A, 3): momenta relative to each system's centre-of-mass motion.

    Args:
        momenta: (A, 3) amu·Å/ASE-time. masses: (A,) amu. system: (A,) system index.
    """
    total = scatter_sum(momenta, system, n_systems)
    mass = scatter_sum(masses, system, n_systems)
    return momenta - masses[:, None] * (total / mass[:, None])[system]


class RelativeMotion(torch.nn.Module):
    """Even, Galilean-invariant features of each atom's neighbours' motion relative to it.

    For every edge ``(i, j)``: ``u = √μ_ij (v_j - v_i) / σ`` (``μ_ij`` the reduced mass,
    ``v = p/m``, ``σ`` the momentum scale in √eV, so ``|u|²`` is the pair's relative kinetic
    energy over ``σ²/2``), and per atom ``i``::

        scalars  Σ_j R_k(r_ij) |u|²,  Σ_j R_k(r_ij) (u·r̂_ij)²        (A, 2 n_radial)
        tensor   Σ_j f_c(r_ij) Y₂(u)                                  (A, 5), 2e

    with ``R_k`` the Bessel basis times the smooth cutoff ``f_c`` (zero at the cutoff).
    """

    def __init__(self, cutoff: float, n_radial: int, momentum_scale: float, cutoff_p: int) -> None:
        super().__init__()
        self.radial = RadialEmbedding(cutoff, n_radial, cutoff_p)
        self.envelope = PolynomialCutoff(cutoff, cutoff_p)
        self.momentum_scale = float(momentum_scale)
        self.n_scalars = 2 * n_radial

    def forward(
        self, batch: dict[str, torch.Tensor], vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``vectors``: (E, 3) edge vectors in Å. Returns scalars (A, 2 n_radial) and (A, 5)."""
        receiver, sender = batch[keys.EDGE_INDEX]
        masses = batch[keys.MASSES]
        velocities = batch[keys.MOMENTA] / masses[:, None]
        reduced = masses[receiver] * masses[sender] / (masses[receiver] + masses[sender])
        u = (velocities[sender] - velocities[receiver]) * (
            torch.sqrt(reduced)[:, None] / self.momentum_scale
        )
        length = torch.linalg.vector_norm(vectors, dim=1)
        along = (u * vectors).sum(1) / length.clamp(min=1e-9)
        basis = self.radial(length)  # (E, n_radial)
        edge_scalars = torch.cat(
            [basis * (u**2).sum(1, keepdim=True), basis * (along**2)[:, None]], dim=1
        )
        n_atoms = batch[keys.POSITIONS].shape[0]
        quadrupole = self.envelope(length)[:, None] * o3.spherical_harmonics(2, u, normalize=False)
        return (
            scatter_sum(edge_scalars, receiver, n_atoms),
            scatter_sum(quadrupole, receiver, n_atoms),
        )


class GeneratingFunction(torch.nn.Module):
    """The correction ``W(q̄, p̄; h)`` (eV per system) of the generating function (module doc).

    Inputs per atom: species embedding, ``|p̃|²``, Gaussian features of the stride and the
    scalars of :class:`RelativeMotion` (through an MLP), ``Y₂(p̃)`` and the relative-motion
    tensor (``2x2e``), with ``p̃ = (p - m P/M) / (√m σ)``; edges: relative vectors of the midpoint
    positions, those within ``config.cutoff`` (which may be shorter than the energy model's).
    """

    strides_fs: torch.Tensor

    def __init__(self, config: GeneratingConfig) -> None:
        super().__init__()
        self.config = config
        n = config.n_scalars
        self.species_embedding = SpeciesEmbedding(config.species, n)
        self.stride_embedding = GaussianEmbedding(
            0.0, max(config.strides_fs), config.n_stride_basis
        )
        self.relative_motion = RelativeMotion(
            config.cutoff, config.n_radial, config.momentum_scale, config.cutoff_p
        )
        self.input_mlp = torch.nn.Sequential(
            torch.nn.Linear(n + 1 + config.n_stride_basis + self.relative_motion.n_scalars, n),
            torch.nn.SiLU(),
            torch.nn.Linear(n, n),
        )
        self.backbone = config.backbone(o3.Irreps(f"{n}x0e + 2x2e"), o3.Irreps(f"{n}x0e"))
        self.readout = ScalarReadout(self.backbone.irreps_out, config.readout_hidden)
        self.register_buffer("strides_fs", torch.tensor(config.strides_fs))
        self.stride_scale = torch.nn.Parameter(torch.zeros(len(config.strides_fs)))

    def stride_index(self, stride_fs: torch.Tensor) -> torch.Tensor:
        """``stride_fs``: ``(S,)`` in fs. Returns ``(S,)`` long index of the nearest stride."""
        return torch.argmin(torch.abs(stride_fs[:, None] - self.strides_fs[None, :]), dim=1)

    def own_edges(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The batch with only the edges within this function's cutoff, and their ``(E', 3)``
        vectors in Å. A model's neighbour list holds the pairs within its energy model's cutoff; a
        shorter one here (the nearest-neighbour shell of a metal) makes ``W`` cheaper: its gradient
        costs about half at 3.4 Å what it costs at 5 Å for fcc Cu (108 atoms, compiled, one
        thread, beside another job)."""
        vectors = edge_vectors(batch)
        inside = torch.linalg.vector_norm(vectors, dim=1) < self.config.cutoff
        if bool(inside.all()):  # W as far-reaching as the list: nothing to copy
            return batch, vectors
        edge_index = batch[keys.EDGE_INDEX][:, inside]
        shifts = batch[keys.EDGE_SHIFTS][inside]
        return {**batch, keys.EDGE_INDEX: edge_index, keys.EDGE_SHIFTS: shifts}, vectors[inside]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``a(h) W`` ``(S,)`` in eV at the batch's positions and momenta (the midpoint).

        Reads positions, momenta, masses, numbers, system, n_atoms, stride (fs), edge_index and
        edge_shifts.
        """
        keys.check_batch(
            batch,
            (
                keys.POSITIONS,
                keys.MOMENTA,
                keys.MASSES,
                keys.NUMBERS,
                keys.SYSTEM,
                keys.N_ATOMS,
                keys.STRIDE,
                keys.EDGE_INDEX,
                keys.EDGE_SHIFTS,
            ),
        )
        masses, system = batch[keys.MASSES], batch[keys.SYSTEM]
        n_systems = batch[keys.N_ATOMS].shape[0]
        relative = internal_momenta(batch[keys.MOMENTA], masses, system, n_systems)
        p_scaled = relative / (self.config.momentum_scale * torch.sqrt(masses)[:, None])
        stride_fs = batch[keys.STRIDE]
        batch, vectors = self.own_edges(batch)
        pair_scalars, pair_quadrupole = self.relative_motion(batch, vectors)
        scalars = torch.cat(
            [
                self.species_embedding(batch[keys.NUMBERS]),
                (p_scaled**2).sum(1, keepdim=True),
                self.stride_embedding(stride_fs[system]),
                pair_scalars,
            ],
            dim=1,
        )
        quadrupole = o3.spherical_harmonics(2, p_scaled, normalize=False)  # even in p̃
        x = torch.cat([self.input_mlp(scalars), quadrupole, pair_quadrupole], dim=1)
        features = self.backbone(x, vectors, batch[keys.EDGE_INDEX])
        per_atom = self.config.energy_scale * self.readout(features)
        scale = self.stride_scale[self.stride_index(stride_fs)]
        return scale * scatter_sum(per_atom, system, n_systems)


def stride_gradients(
    generating: GeneratingFunction | None,
    potential: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    create_graph: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂S/∂p̄, -∂S/∂q̄)`` at the batch's state (the midpoint): the stride's displacement
    ``(A, 3)`` Å and momentum change ``(A, 3)`` amu·Å/ASE-time under the implicit midpoint rule.

    ``S = h [K(p̄) + V(q̄) + a(h) W(q̄, p̄; h)]`` (module docstring); ``h`` per system from the
    batch's ``stride`` (fs). The fixed energy model ``potential``'s forces never carry a graph;
    ``W``'s derivatives carry one when ``create_graph`` (training). ``generating`` None gives the
    implicit midpoint rule on ``K + V``.
    """
    system = batch[keys.SYSTEM]
    h = (batch[keys.STRIDE] * FS)[system][:, None]
    momenta, masses = batch[keys.MOMENTA], batch[keys.MASSES]
    forces = potential.compute(batch, forces=True)[keys.FORCES].detach()
    displacement = h * momenta / masses[:, None]
    kick = h * forces
    if generating is None:
        return displacement, kick
    with torch.enable_grad():
        q = batch[keys.POSITIONS].detach().requires_grad_(True)
        p = momenta.detach().requires_grad_(True)
        w = generating({**batch, keys.POSITIONS: q, keys.MOMENTA: p})
        dw_dq, dw_dp = torch.autograd.grad(w.sum(), (q, p), create_graph=create_graph)
    return displacement + h * dw_dp, kick - h * dw_dq


def modified_stride_gradients(
    potential: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂S/∂p̄, -∂S/∂q̄)`` of the *modified* generating function, no learned part::

        S = h [K(p̄) + V(q̄) + (h²/24) (v̄ᵀ ∇²V(q̄) v̄ + ∇V(q̄)ᵀ M⁻¹ ∇V(q̄))],   v̄ = M⁻¹ p̄

    The implicit midpoint rule on ``H = K + V`` follows the flow of a modified Hamiltonian
    ``H - (h²/24) H''(f, f) + O(h⁴)`` with ``f = J∇H = (v, -∇V)`` (Hairer, Lubich and Wanner,
    Geometric Numerical Integration, IX), which is why its vibrations run slow (a harmonic mode
    turns by ``2 atan(hω/2)`` instead of ``hω``). Solving the midpoint rule on
    ``H + (h²/24) H''(f, f)`` instead cancels that term: the map is a "modifying integrator"
    (Chartier, Hairer and Vilmart 2007) of order four, still symplectic and, as the added term
    is even in ``p̄`` and E(3) invariant, time-reversible and exactly equivariant. For a harmonic
    mode ``H''(f, f) = 2ω²H``, so it turns by ``2 atan((hω/2)(1 + h²ω²/12))``. It needs the
    energy model's third derivatives (autograd), about five times the cost of its forces.

    Shapes: displacement ``(A, 3)`` Å and momentum change ``(A, 3)`` amu·Å/ASE-time, from the
    batch's positions (A, 3) Å, momenta (A, 3) and masses (A,) amu, ``h`` per system from its
    stride (fs).
    """
    system = batch[keys.SYSTEM]
    h = (batch[keys.STRIDE] * FS)[system]
    masses = batch[keys.MASSES]
    with torch.enable_grad():
        q = batch[keys.POSITIONS].detach().requires_grad_(True)
        p = batch[keys.MOMENTA].detach().requires_grad_(True)
        energy = potential.compute({**batch, keys.POSITIONS: q}, forces=False)[keys.ENERGY]
        (gradient,) = torch.autograd.grad(energy.sum(), q, create_graph=True)
        velocity = p / masses[:, None]
        (curvature,) = torch.autograd.grad((gradient * velocity).sum(), q, create_graph=True)
        per_atom = (velocity * curvature).sum(1) + (gradient**2).sum(1) / masses
        correction = (h**2 / 24 * per_atom).sum()
        dw_dq, dw_dp = torch.autograd.grad(correction, (q, p))
    hh = h[:, None]
    return hh * (p.detach() / masses[:, None] + dw_dp), -hh * (gradient.detach() + dw_dq)
