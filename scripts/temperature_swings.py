"""How steady a rollout's kinetic temperature is, and whether one vibration dominates its swings.

In NVE a predictor that pumps one vibration shows it as a kinetic temperature swinging at one
frequency (twice the vibration's, aliased by the stride) with a spread far above the thermal one;
the energy filter's factors say whether strides gain (α < 1) or lose (α > 1) energy on average.
Prints one row per trajectory of each store (frames after ``--skip`` strides):

    python scripts/temperature_swings.py runs/noise/v1-T750-32-nve.zarr runs/noise/v4-nofilter.zarr
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from flashmd.analysis.temperature import kinetic_temperature
from flashmd.data.store import TrajectoryStore


@dataclass(frozen=True)
class Swings:
    """Kinetic temperature of frames ``skip:`` and the filter's factors of the strides.

    Attributes:
        mean_K, std_K, min_K, max_K: kinetic temperature statistics, K.
        peak_THz: frequency of the largest Fourier component of T(t) (mean removed), THz.
        peak_share: that component's share of the spectrum's power (0-1).
        alpha_median, alpha_mean: filter factors of accepted strides (NaN without filter data).
        redone: fraction of strides the filter rejected (NaN without filter data).
    """

    mean_K: float
    std_K: float
    min_K: float
    max_K: float
    peak_THz: float
    peak_share: float
    alpha_median: float
    alpha_mean: float
    redone: float


def swings(
    temperature: np.ndarray,
    frame_fs: float,
    scale: np.ndarray | None = None,
    fallback: np.ndarray | None = None,
) -> Swings:
    """Statistics of a (F,) kinetic temperature series sampled every ``frame_fs`` fs; ``scale``
    and ``fallback`` (F,) are the filter's per-stride arrays of the same frames, if stored."""
    if len(temperature) < 4:
        raise ValueError(f"need at least 4 frames, got {len(temperature)}")
    centred = temperature - temperature.mean()
    power = np.abs(np.fft.rfft(centred)) ** 2
    power[0] = 0.0
    freqs = np.fft.rfftfreq(len(centred), d=frame_fs)  # 1/fs
    peak = int(np.argmax(power))
    total = float(power.sum())
    alpha_median = alpha_mean = redone = float("nan")
    if scale is not None and fallback is not None:
        accepted = scale[fallback == 0]
        redone = float(fallback.mean())
        if len(accepted):
            alpha_median, alpha_mean = float(np.median(accepted)), float(accepted.mean())
    return Swings(
        float(temperature.mean()),
        float(temperature.std()),
        float(temperature.min()),
        float(temperature.max()),
        float(freqs[peak] * 1e3),
        float(power[peak] / total) if total > 0 else 0.0,
        alpha_median,
        alpha_mean,
        redone,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stores", nargs="+", help="rollout stores (flashmd md)")
    parser.add_argument("--skip", type=int, default=100, help="frames left out at the start")
    args = parser.parse_args()
    print(
        f"{'store / trajectory':58} {'T mean':>7} {'std':>5} {'min':>5} {'max':>5} "
        f"{'peak THz':>8} {'share':>5} {'α med':>6} {'α mean':>6} {'redone':>6}"
    )
    for path in args.stores:
        store = TrajectoryStore.open(path)
        for tid in store.ids():
            group = store[tid].group
            times = np.asarray(group["time_fs"][args.skip :])
            temperature = kinetic_temperature(
                np.asarray(group["momenta"][args.skip :]), np.asarray(group["masses"][:])
            ).total
            scale = fallback = None
            if "filter_scale" in group and "filter_fallback" in group:
                scale = np.asarray(group["filter_scale"][:])
                # a run with --no-filter stores factor 1 and no fallback for every stride
                if np.all(scale == 1):
                    scale = None
                else:
                    scale = scale[args.skip :]
                    fallback = np.asarray(group["filter_fallback"][args.skip :])
            row = swings(temperature, float(np.median(np.diff(times))), scale, fallback)
            print(
                f"{path + ' ' + tid:58.58} {row.mean_K:7.0f} {row.std_K:5.0f} {row.min_K:5.0f} "
                f"{row.max_K:5.0f} {row.peak_THz:8.2f} {row.peak_share:5.2f} "
                f"{row.alpha_median:6.3f} {row.alpha_mean:6.4f} {row.redone:6.3f}"
            )


if __name__ == "__main__":
    main()
