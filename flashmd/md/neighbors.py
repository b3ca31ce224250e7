"""Neighbour lists reused across strides with a skin (Verlet lists).

The list is built at ``cutoff + skin`` and stays valid while no atom has moved more than
``skin / 2`` since the build: then no pair can have come within ``cutoff`` unseen. Pairs between
``cutoff`` and ``cutoff + skin`` contribute exactly zero to the models, whose radial features are
multiplied by a cutoff envelope that is zero beyond ``cutoff``.
"""

from __future__ import annotations

import torch

from flashmd.data.graph import neighbor_list
from flashmd.md.state import MDState


class NeighborCache:
    """Neighbour lists of a batched state, rebuilt only when an atom moved more than skin/2.

    Args:
        cutoff: the model's cutoff in Å.
        skin: extra distance in Å (0 rebuilds every time the positions change).

    Attributes:
        builds: how many times the list was (re)built.
    """

    def __init__(self, cutoff: float, skin: float = 1.0) -> None:
        if not cutoff > 0 or skin < 0:
            raise ValueError(f"need cutoff > 0 and skin >= 0, got {cutoff}, {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.builds = 0
        self._reference: torch.Tensor | None = None
        self._cell: torch.Tensor | None = None
        self._edges: tuple[torch.Tensor, torch.Tensor] | None = None
        #: The positions the within-cutoff edges were last selected at, and those edges (a
        #: stride asks again at the positions its energy filter priced).
        self._selected: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None

    def _valid(self, state: MDState) -> bool:
        ref = self._reference
        if ref is None or self._cell is None or ref.shape != state.positions.shape:
            return False
        if not torch.equal(self._cell, state.cell):
            return False
        if self.skin == 0:
            return torch.equal(ref, state.positions)
        moved = torch.linalg.vector_norm(state.positions - ref, dim=1).max()
        return bool(moved <= 0.5 * self.skin)

    def edges(self, state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
        """``edge_index`` (2, E) long and ``edge_shifts`` (E, 3) Å (float64) for ``state``:
        exactly the pairs closer than ``cutoff``, in the neighbour list's canonical order.

        The pairs of the skin are dropped although they would contribute zero: which of them a
        list holds depends on where it was built, and summing a different number of zeros can
        change the rounding of vectorised sums. Without them the edges depend on the positions
        alone, so a run resumed with a fresh list repeats the uninterrupted one bit for bit.
        """
        if self._edges is None or not self._valid(state):
            self._edges = self._build(state)
            self._reference = state.positions.clone()
            self._cell = state.cell.clone()
            self._selected = None
            self.builds += 1
        if self.skin == 0:
            return self._edges
        positions = state.positions.detach()
        selected = self._selected
        if selected is None or not torch.equal(selected[0], positions):
            index, shifts = self._edges
            ends = positions.to(shifts.dtype)
            vectors = ends[index[1]] - ends[index[0]] + shifts
            within = (vectors * vectors).sum(dim=1) < self.cutoff**2
            selected = self._selected = positions.clone(), (index[:, within], shifts[within])
        return selected[1]

    def _build(self, state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
        radius = self.cutoff + self.skin
        positions = state.positions.detach().cpu()
        cells, pbcs = state.cell.cpu(), state.pbc.cpu()
        index, shifts = [], []
        start = 0
        for s, n in enumerate(state.n_atoms.tolist()):
            pairs, cell_shifts = neighbor_list(
                positions[start : start + n], cells[s], pbcs[s], radius
            )
            index.append(pairs + start)
            shifts.append(cell_shifts.to(torch.float64) @ cells[s])
            start += n
        device = state.device
        return torch.cat(index, dim=1).to(device), torch.cat(shifts).to(device)
