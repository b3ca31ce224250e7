"""Time reversal of a model's strides, direct against symplectic, on states from trajectory stores.

One stride forward, momenta flipped, one stride forward, momenta flipped: exact dynamics returns
to the start. For each chosen trajectory (``STORE:ID_SUBSTRING``) the script takes ``--states``
frames spread over it, and prints the root-mean-square distance to the start (positions, Å;
momenta relative to their RMS) over the states whose strides were solved, for the direct
predictor and, when the model has a generating function, for symplectic strides (a symplectic
stride whose solve does not converge, either way, leaves its state out and is counted):

    python scripts/time_reversal.py MODEL runs/heldout/reference.zarr:Cu-750 \
        runs/heldout/reference.zarr:Cu3Au runs/emt-metals.zarr:Pt-fcc100 --stride-fs 32 64
"""

from __future__ import annotations

import argparse

import numpy as np

from flashmd.analysis.time_reversal import time_reversal_error
from flashmd.data.store import open_trajectory
from flashmd.md.symplectic import SolverConfig
from flashmd.models.io import load_model


def states(spec: str, count: int) -> tuple[str, list]:
    """``count`` frames spread over the first trajectory of ``STORE:SUBSTRING`` whose id
    contains the substring, as atoms with momenta; and that id."""
    reader = open_trajectory(spec)
    frames = np.linspace(reader.n_frames // 4, reader.n_frames - 1, count).astype(int)
    return reader.group.basename, [reader.to_atoms(int(k)) for k in frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint path or shipped model name")
    parser.add_argument("trajectories", nargs="+", help="STORE:ID_SUBSTRING")
    parser.add_argument("--stride-fs", type=float, nargs="+", default=[32.0, 64.0])
    parser.add_argument("--states", type=int, default=4, help="frames per trajectory")
    parser.add_argument("--tolerance-A", type=float, default=SolverConfig.tolerance_A)
    parser.add_argument("--max-iterations", type=int, default=SolverConfig.max_iterations)
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    solver = SolverConfig(tolerance_A=args.tolerance_A, max_iterations=args.max_iterations)
    kinds = [("direct", False)] + ([("symplectic", True)] if model.generating else [])
    print(
        "| trajectory | stride fs | strides | position RMSE Å | momentum RMSE / RMS p | "
        "states solved |"
    )
    print("|---|---|---|---|---|---|")
    for spec in args.trajectories:
        traj_id, atoms = states(spec, args.states)
        p_rms = float(np.sqrt(np.mean([np.mean(a.get_momenta() ** 2) for a in atoms])))
        for stride in args.stride_fs:
            for label, symplectic in kinds:
                result = time_reversal_error(
                    model, atoms, stride, symplectic, solver if symplectic else None
                )
                solved = np.isfinite(result.position_rmse)
                position = result.position_rmse[solved].mean() if solved.any() else np.nan
                momentum = result.momentum_rmse[solved].mean() if solved.any() else np.nan
                print(
                    f"| {traj_id} | {stride:g} | {label} | {position:.2e} | "
                    f"{momentum / p_rms:.2e} | {int(solved.sum())}/{solved.size} |"
                )


if __name__ == "__main__":
    main()
