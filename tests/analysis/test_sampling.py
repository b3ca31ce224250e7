"""The integrated autocorrelation time against the exact value of an AR(1) process (within
10 %: the estimate's own statistical error at 200 000 samples is about 4 % for τ = 19)."""

from __future__ import annotations

import numpy as np
import pytest

from flashmd.analysis.sampling import (
    autocorrelation_time_and_error,
    effective_samples,
    integrated_autocorrelation_time,
    pooled_standard_error,
    standard_error_of_mean,
)
from tests.analysis.series import ar1


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


def test_the_autocorrelation_time_error_matches_the_scatter_of_replicas():
    """AR(1) with φ = 0.8 (τ = 9), 40 replicas of 3000 samples (about 330 τ)."""
    estimates = [autocorrelation_time_and_error(ar1(0.8, 3000, seed)) for seed in range(40)]
    taus, errors = np.array(estimates).T
    assert np.median(errors) == pytest.approx(np.std(taus, ddof=1), rel=0.35)
    assert np.median(errors) / 9.0 == pytest.approx(np.sqrt(2 * (2 * 5 * 9 + 1) / 3000), rel=0.3)


def test_standard_error_of_a_correlated_mean_matches_the_scatter_of_replica_means():
    """AR(1) with φ = 0.8 (τ = 9): the naive σ/√n would be three times too small."""
    replicas = [ar1(0.8, 2000, seed) for seed in range(60)]
    scatter = np.std([r.mean() for r in replicas], ddof=1)
    estimates = np.array([standard_error_of_mean(r) for r in replicas])
    assert np.median(estimates) == pytest.approx(scatter, rel=0.25)
    assert np.median([r.std() / np.sqrt(r.size) for r in replicas]) < 0.5 * scatter
    pooled = pooled_standard_error(replicas[:4])
    assert pooled == pytest.approx(np.sqrt(np.mean(estimates[:4] ** 2) / 4), rel=1e-9)
    assert standard_error_of_mean(np.ones(5)) == 0.0
    alternating = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])  # τ estimated below 1
    assert standard_error_of_mean(alternating) == pytest.approx(alternating.std(ddof=1) / 6**0.5)


def test_many_short_replicas_are_judged_by_their_scatter():
    """AR(1) with φ = 0.95 (τ = 39) over 10 τ: each replica's autocorrelation underestimates its
    error; with eight replicas the pooled error is at least their means' scatter."""
    replicas = [ar1(0.95, 400, seed) for seed in range(8)]
    scatter = np.std([r.mean() for r in replicas], ddof=1) / np.sqrt(8)
    within = np.sqrt(np.mean([standard_error_of_mean(r) ** 2 for r in replicas]) / 8)
    assert within < scatter  # the case the scatter is there for
    assert pooled_standard_error(replicas) == pytest.approx(scatter, rel=1e-9)
    assert pooled_standard_error(replicas[:4]) == pytest.approx(
        np.sqrt(np.mean([standard_error_of_mean(r) ** 2 for r in replicas[:4]]) / 4), rel=1e-9
    )  # too few replicas to trust a scatter


def test_a_constant_series_is_refused():
    with pytest.raises(ValueError, match="constant"):
        integrated_autocorrelation_time(np.ones(10))
