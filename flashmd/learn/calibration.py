"""How well an uncertainty signal ranks the true error of strides: rank correlation and recall.

Used by ``scripts/uncertainty_signal.py`` to choose the signal of :mod:`flashmd.learn` on
held-out reference pairs, where the true error of every stride is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr


@dataclass(frozen=True)
class SignalQuality:
    """How a signal ranks the true errors.

    Attributes:
        spearman: rank correlation of signal and error (-1..1; 1 = same order).
        recall: fraction of the worst ``fraction`` of errors that are among the ``fraction``
            highest signals (a random signal gives ``fraction``).
        fraction: the tail compared (default 5 %).
        count: samples compared.
    """

    spearman: float
    recall: float
    fraction: float
    count: int


def signal_quality(signal: np.ndarray, error: np.ndarray, fraction: float = 0.05) -> SignalQuality:
    """Rank correlation of ``signal`` (N,) with ``error`` (N,) and recall of the worst tail.

    Raises:
        ValueError: shapes differ, fewer than 1 / ``fraction`` samples, or a non-finite value.
    """
    signal, error = np.asarray(signal, float).ravel(), np.asarray(error, float).ravel()
    if signal.shape != error.shape:
        raise ValueError(f"signal {signal.shape} and error {error.shape} differ in shape")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    tail = int(np.floor(fraction * len(error)))
    if tail < 1:
        raise ValueError(f"{len(error)} samples have no worst {fraction:.0%}")
    if not (np.isfinite(signal).all() and np.isfinite(error).all()):
        raise ValueError("signal and error must be finite")
    worst = set(np.argsort(error)[-tail:].tolist())
    flagged = set(np.argsort(signal)[-tail:].tolist())
    rho = float(spearmanr(signal, error).statistic)
    return SignalQuality(rho, len(worst & flagged) / tail, fraction, len(error))
