"""Fixtures for the analysis tests: seeded generators and block splitting."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20250101)


def _split(n_frames: int, sizes: tuple[int, ...]) -> Iterator[slice]:
    """Consecutive slices of ``range(n_frames)`` with the given sizes, repeated to the end."""
    start, k = 0, 0
    while start < n_frames:
        stop = min(start + sizes[k % len(sizes)], n_frames)
        yield slice(start, stop)
        start, k = stop, k + 1


@pytest.fixture
def uneven_blocks() -> Callable[[int], list[slice]]:
    """Split ``n_frames`` into uneven blocks (1, 7, 3, 64, ... frames) to mimic store chunks."""
    return lambda n_frames: list(_split(n_frames, (1, 7, 3, 64, 2, 500)))
