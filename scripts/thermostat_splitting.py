"""How much a Langevin thermostat applied around long strides moves ``flashmd evaluate``'s
frequency row by itself, in harmonic theory.

A rollout applies Langevin friction in half-strides around each stride (``O(h/2) B(h) O(h/2)``),
the reference at every 2 fs step. Even with an exact stride ``B`` the two processes differ: for a
harmonic mode of angular frequency ω both decay as ``exp(-γt/2)``, but the stroboscopic VACF of the
split process, ``c^n [cos nθ + b sin nθ]`` with ``c = exp(-γh/2)``, ``cos θ = cosh(γh/2) cos ωh``
and ``b = -sinh(γh/2) cos ωh / sin θ``, carries a different phase term from the continuous
process's ``-γ/(2ω₁)``, and the first moment of the spectrum moves with it.

This script computes both VACFs exactly for modes of a Debye spectrum (every mode's linear map
iterated; the reference is the same splitting at ``--fine-fs``), samples both at the stride, turns
them into spectra with the same functions and lag window as ``flashmd evaluate``
(:func:`flashmd.analysis.vacf.vibrational_dos`, ``vacf_max_lag_fs``) and prints the relative
shift of the mean frequency: the share of the frequency row that is the thermostat's, not the
strides'. Measured on the engine with exact maps (``scripts/control_rollout.py``) at 32 fs and
0.01/fs: Cu 450 K on asap3 -4.0 %, Cu3Au 700 K -3.7 %; this estimate: -4.3 % (Debye 7 THz) and
-3.5 to -3.8 % (5.5-6 THz). The evaluation guide has the table.

    python scripts/thermostat_splitting.py                       # 0.01 and 0.001/fs, 16-64 fs
    python scripts/thermostat_splitting.py --friction-per-fs 0.005 --strides-fs 32 --debye-THz 9
"""

from __future__ import annotations

import argparse

import numpy as np

from flashmd.analysis.tolerances import load_config
from flashmd.analysis.vacf import mean_frequency, vibrational_dos

#: Modes of the Debye spectrum (their frequencies at the midpoints of equal-weight bins).
N_MODES = 2000


def debye_modes(debye_THz: float, n_modes: int = N_MODES) -> np.ndarray:
    """(n_modes,) angular frequencies in rad/fs of a Debye density ``g(ν) ∝ ν²`` up to
    ``debye_THz``, one per quantile bin (deterministic)."""
    quantiles = (np.arange(n_modes) + 0.5) / n_modes
    return 2 * np.pi * debye_THz * quantiles ** (1 / 3) * 1e-3


def split_map(omega: np.ndarray, friction_per_fs: float, step_fs: float) -> np.ndarray:
    """(n_modes, 2, 2) the mean map of one ``O(h/2) B(h) O(h/2)`` step on ``(ωq, p)``: exact
    harmonic rotation between two momentum dampings by ``exp(-γh/2)``."""
    c = np.exp(-friction_per_fs * step_fs / 2)
    cos, sin = np.cos(omega * step_fs), np.sin(omega * step_fs)
    return np.stack([np.stack([cos, c * sin], -1), np.stack([-c * sin, c * c * cos], -1)], axis=-2)


def stroboscopic_vacf(step_map: np.ndarray, steps_per_frame: int, lags: int) -> np.ndarray:
    """(lags + 1,) the VACF averaged over modes at frames ``steps_per_frame`` steps apart,
    normalised to 1 at lag 0. Noise is independent of the past, so ``C(n) = e_pᵀ Mⁿ e_p`` for
    the equilibrium covariance (the identity in ``(ωq, p)``)."""
    frame_map = np.linalg.matrix_power(step_map, steps_per_frame)
    vector = np.zeros(step_map.shape[:-1])
    vector[:, 1] = 1.0
    values = np.empty(lags + 1)
    for lag in range(lags + 1):
        values[lag] = vector[:, 1].mean()
        vector = np.einsum("mij,mj->mi", frame_map, vector)
    return values


def frequency_shift(
    friction_per_fs: float, stride_fs: float, debye_THz: float, fine_fs: float, max_lag_fs: float
) -> tuple[float, float]:
    """(reference mean frequency THz, relative shift of the split process) at ``stride_fs``."""
    omega = debye_modes(debye_THz)
    lags = max(3, round(max_lag_fs / stride_fs))
    fine_steps = round(stride_fs / fine_fs)
    reference = stroboscopic_vacf(split_map(omega, friction_per_fs, fine_fs), fine_steps, lags)
    rollout = stroboscopic_vacf(split_map(omega, friction_per_fs, stride_fs), 1, lags)
    spectra = [vibrational_dos(vacf, stride_fs) for vacf in (reference, rollout)]
    band = spectra[0][0][-1]
    ref, run = (mean_frequency(f, dos, band) for f, dos in spectra)
    return ref, run / ref - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--friction-per-fs", type=float, nargs="+", default=[0.01, 0.001])
    parser.add_argument("--strides-fs", type=float, nargs="+", default=[16.0, 32.0, 64.0])
    parser.add_argument(
        "--debye-THz", type=float, default=7.0, help="top of the spectrum (default: 7, Cu)"
    )
    parser.add_argument(
        "--fine-fs", type=float, default=2.0, help="the reference's step (default: 2)"
    )
    args = parser.parse_args()
    max_lag_fs = load_config().analysis.vacf_max_lag_fs
    print(f"Debye spectrum up to {args.debye_THz:g} THz, VACF lags up to {max_lag_fs:g} fs")
    print("friction 1/fs | stride fs | friction x stride | reference THz | thermostat's shift")
    print("---|---|---|---|---")
    for gamma in args.friction_per_fs:
        for stride in args.strides_fs:
            ref, shift = frequency_shift(gamma, stride, args.debye_THz, args.fine_fs, max_lag_fs)
            cells = f"{gamma:g} | {stride:g} | {gamma * stride:.3g} | {ref:.3f}"
            print(f"{cells} | {100 * shift:+.2f} %")


if __name__ == "__main__":
    main()
