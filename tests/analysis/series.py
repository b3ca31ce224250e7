"""Synthetic series for the analysis tests."""

from __future__ import annotations

import numpy as np


def ar1(phi: float, size: int, seed: int) -> np.ndarray:
    """(size,) seeded first-order autoregressive series ``x_t = φ x_{t-1} + ξ_t`` with unit
    innovations, stationary from the start (variance ``1 / (1 - φ²)``, integrated
    autocorrelation time ``(1 + φ) / (1 - φ)`` samples)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=size)
    x = np.empty_like(noise)
    x[0] = noise[0] / np.sqrt(1 - phi**2)  # stationary from the start
    for t in range(1, x.size):
        x[t] = phi * x[t - 1] + noise[t]
    return x
