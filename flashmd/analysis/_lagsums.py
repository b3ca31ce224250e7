"""Streaming sums of lagged products over all time origins, by FFT (shared by VACF and MSD).

For a per-atom signal x(t) of shape (n_atoms, 3) and lags tau = 0 .. max_lag, :class:`LagSums`
accumulates, for every group column g of a weight matrix W (n_atoms, n_groups) and axis a,

- ``cross[tau, g, a] = sum_t sum_i W[i, g] x_i,a(t) x_i,a(t - tau)``
- ``late[tau, g, a]  = sum_t sum_i W[i, g] x_i,a(t)^2``
- ``early[tau, g, a] = sum_t sum_i W[i, g] x_i,a(t - tau)^2``
- ``count[tau]``     = number of time origins, T - tau,

with t running over every frame that has a frame tau earlier. Frames arrive in blocks of any size;
they are regrouped into chunks of a fixed length and each chunk is correlated, by FFT, with itself
and the ``max_lag`` frames before it. Because the chunking does not depend on how the caller
splits the frames, streaming and whole-array calls do identical arithmetic and give identical
results. Memory holds the ``max_lag`` latest processed frames, the frames waiting for a full
chunk (chunk length ``max(max_lag, 1024)``) and the incoming block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Bytes of complex spectra held at once while correlating one chunk (bounds peak memory).
_SPECTRUM_BYTES: int = 64 * 2**20


def fast_length(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


@dataclass(frozen=True)
class Sums:
    """Sums accumulated so far: cross, late, early (n_lags, n_groups, 3); count (n_lags,)."""

    cross: np.ndarray
    late: np.ndarray
    early: np.ndarray
    count: np.ndarray


class LagSums:
    """Accumulate :class:`Sums` for lags 0..``max_lag`` from blocks of frames (see module doc).

    ``weights`` (n_atoms, n_groups) combines atoms into groups; ``squares`` turns on the
    ``late``/``early`` sums (needed for mean-squared displacements).
    """

    def __init__(self, max_lag: int, weights: np.ndarray, squares: bool = False):
        if int(max_lag) != max_lag or max_lag < 0:
            raise ValueError(f"max_lag must be a non-negative integer, got {max_lag}")
        self.max_lag = int(max_lag)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.squares = squares
        self.chunk = max(self.max_lag, 1024)
        n_atoms, n_groups = self.weights.shape
        shape = (self.max_lag + 1, n_groups, 3)
        self._sums = Sums(np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(shape[0]))
        self._history = np.zeros((0, n_atoms, 3))
        self._pending: list[np.ndarray] = []
        self._n_pending = 0
        self.n_frames = 0

    def update(self, x: np.ndarray) -> None:
        """Add frames ``x`` (n_frames, n_atoms, 3)."""
        self._pending.append(np.array(x, dtype=np.float64))
        self._n_pending += x.shape[0]
        self.n_frames += x.shape[0]
        if self._n_pending < self.chunk:
            return
        frames = np.concatenate(self._pending)
        n_full = (frames.shape[0] // self.chunk) * self.chunk
        for start in range(0, n_full, self.chunk):
            chunk = frames[start : start + self.chunk]
            self._add(self._sums, self._correlate(self._history, chunk))
            joined = np.concatenate([self._history, chunk])
            self._history = joined[max(0, joined.shape[0] - self.max_lag) :]
        self._pending = [frames[n_full:]]
        self._n_pending = frames.shape[0] - n_full

    def sums(self) -> Sums:
        """Sums over all frames added so far (pending frames included; the state is unchanged)."""
        done = self._sums
        total = Sums(done.cross.copy(), done.late.copy(), done.early.copy(), done.count.copy())
        if self._n_pending:
            self._add(total, self._correlate(self._history, np.concatenate(self._pending)))
        return total

    @staticmethod
    def _add(target: Sums, extra: Sums) -> None:
        for name in ("cross", "late", "early", "count"):
            getattr(target, name)[...] += getattr(extra, name)

    def _correlate(self, history: np.ndarray, chunk: np.ndarray) -> Sums:
        """Contributions of the frames in ``chunk`` (paired with earlier frames) to the sums."""
        n_hist, n_chunk = history.shape[0], chunk.shape[0]
        n_ext = n_hist + n_chunk
        n_lags = self.max_lag + 1
        lags = np.arange(n_lags)
        first = np.minimum(np.maximum(n_hist, lags), n_ext)  # first frame with a partner tau back
        count = (n_ext - first).astype(np.float64)
        ext = np.concatenate([history, chunk])
        n_fft = fast_length(n_chunk + self.max_lag)
        n_atoms, n_groups = self.weights.shape
        late_only = ext.copy()
        late_only[:n_hist] = 0.0
        step = max(1, _SPECTRUM_BYTES // (16 * 3 * (n_fft // 2 + 1)))
        spectrum = np.zeros((n_fft // 2 + 1, 3, n_groups), dtype=np.complex128)
        for start in range(0, n_atoms, step):
            atoms = slice(start, start + step)
            late = np.fft.rfft(late_only[:, atoms], n=n_fft, axis=0)
            whole = np.fft.rfft(ext[:, atoms], n=n_fft, axis=0)
            product = (late * np.conj(whole)).transpose(0, 2, 1)  # (n_freq, 3, n_atoms)
            spectrum += product @ self.weights[atoms]
        spectrum = spectrum.transpose(0, 2, 1)
        cross = np.fft.irfft(spectrum, n=n_fft, axis=0)[:n_lags]
        if not self.squares:
            zeros = np.zeros_like(cross)
            return Sums(cross, zeros, zeros, count)
        squares = ((ext * ext).transpose(0, 2, 1) @ self.weights).transpose(0, 2, 1)
        cumulative = np.concatenate([np.zeros((1, n_groups, 3)), np.cumsum(squares, axis=0)])
        late = cumulative[n_ext] - cumulative[first]
        early = cumulative[np.maximum(n_ext - lags, 0)] - cumulative[np.maximum(first - lags, 0)]
        return Sums(cross, late, early, count)
