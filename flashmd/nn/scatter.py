"""Sums of per-item rows into groups (messages into atoms, atoms into systems)."""

from __future__ import annotations

import torch


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum the rows of ``src`` into ``dim_size`` groups given by ``index``.

    Args:
        src: ``(N, ...)`` values, any unit.
        index: ``(N,)`` long, the group of each row, in ``[0, dim_size)``.
        dim_size: number of groups.

    Returns:
        ``(dim_size, ...)`` group sums, same unit and dtype as ``src``; empty groups are zero.
    """
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.index_add_(0, index, src)
