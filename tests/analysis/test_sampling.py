"""The integrated autocorrelation time against the exact value of an AR(1) process (within
10 %: the estimate's own statistical error at 200 000 samples is about 4 % for τ = 19)."""

from __future__ import annotations

import numpy as np
import pytest

from flashmd.analysis.sampling import effective_samples, integrated_autocorrelation_time


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_ar1_autocorrelation_time(phi):
    rng = np.random.default_rng(0)
    noise = rng.normal(size=200_000)
    x = np.empty_like(noise)
    x[0] = noise[0]
    for t in range(1, x.size):
        x[t] = phi * x[t - 1] + noise[t]
    exact = (1 + phi) / (1 - phi)
    assert integrated_autocorrelation_time(x) == pytest.approx(exact, rel=0.1)
    assert effective_samples(x) == pytest.approx(x.size / exact, rel=0.1)


def test_a_constant_series_is_refused():
    with pytest.raises(ValueError, match="constant"):
        integrated_autocorrelation_time(np.ones(10))
