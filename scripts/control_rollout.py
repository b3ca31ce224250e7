"""Control run: the rollout engine with an exact map instead of the model.

Each stride is integrated by velocity Verlet (2 fs) on the reference calculator, inside the same
stepper as ``flashmd md``: Langevin half-strides around the map, momentum constraints, the energy
filter (priced with the reference calculator). Written to a store that ``flashmd evaluate``
compares with the reference exactly as it compares a model's rollout. Whatever differs from the
reference here comes from the engine (the thermostat applied every half stride instead of every
2 fs step), not from a model. ``--thermostat bussi`` applies Bussi's global rescaling instead of
Langevin (for a reference made with a Bussi production): at 32 fs it leaves the frequencies
within 0.4 % where Langevin at 0.01/fs moves them 4 %.

With ``--model M`` the map is velocity Verlet on M's energy model instead (the filter prices with
it too, as ``flashmd md`` does): the best any stride built on that energy model can do. Judged
with ``flashmd evaluate --energy reference`` (frames priced by the reference calculator), it
splits a rollout's error into the energy model's share (this control against the reference) and
the stride's share (the rollout against this control). With ``--pressure-GPa P`` the stepper
carries the stochastic cell rescaling of ``flashmd md --ensemble npt`` (once per stride), so the
same split holds at constant pressure: a volume the energy model alone gets wrong is not the
stride's.

    python scripts/control_rollout.py runs/heldout/reference.zarr --temperature-K 1400 \\
        --stride-fs 32 --strides 2000 -o runs/control-T1400-32fs.zarr
    flashmd evaluate --reference runs/heldout/reference.zarr --rollout runs/control-T1400-32fs.zarr
    python scripts/control_rollout.py runs/demo/reference.zarr --temperature-K 700 \\
        --thermostat bussi --strides 1000 -o runs/control-demo.zarr
    python scripts/control_rollout.py runs/demo/reference.zarr --temperature-K 700 \\
        --thermostat bussi --model emt-metals --strides 1000 -o runs/control-em.zarr
    flashmd evaluate --reference runs/demo/reference.zarr --rollout runs/control-em.zarr \\
        --energy reference --out runs/control-em
    python scripts/control_rollout.py runs/heldout/npt-reference.zarr --temperature-K 1400 \\
        --model emt-metals --pressure-GPa 0 --strides 400 -o runs/control-em-npt.zarr
    flashmd evaluate --reference runs/heldout/npt-reference.zarr \\
        --rollout runs/control-em-npt.zarr --energy reference --out runs/control-em-npt
"""

from __future__ import annotations

import argparse

import torch
from tqdm.auto import tqdm

from flashmd.analysis.reference_energy import reference_calculator_spec
from flashmd.data.calculators import make_calculator
from flashmd.data.store import TrajectoryStore
from flashmd.md.barostats import GPA, StochasticCellRescaling
from flashmd.md.batch import make_thermostat, stored_starts, thermostat_attrs
from flashmd.md.fallback import velocity_verlet
from flashmd.md.filters import FilterConfig
from flashmd.md.output import RolloutWriter
from flashmd.md.propagators import CalculatorPotential, Edges, ModelPotential
from flashmd.md.rollout import rollout
from flashmd.md.state import MDState, state_from_atoms
from flashmd.md.stepper import Stepper
from flashmd.models.io import load_model
from flashmd.units import FS


class VerletPropagator:
    """The exact map (up to Verlet's error): ``stride / timestep`` velocity-Verlet steps."""

    cutoff = None

    def __init__(self, potential: CalculatorPotential | ModelPotential, timestep_fs: float) -> None:
        self.potential = potential
        self.timestep_fs = timestep_fs

    def check(self, state: MDState, stride_fs: float) -> None:
        """Any stride and species the calculator knows."""

    def propagate(
        self, state: MDState, edges: Edges | None, stride_fs: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        after, _ = velocity_verlet(state, self.potential, stride_fs, self.timestep_fs)
        return after.positions, after.momenta


def barostat(args: argparse.Namespace) -> StochasticCellRescaling | None:
    """The barostat of ``flashmd md --ensemble npt`` at ``--pressure-GPa`` (None without)."""
    if args.pressure_GPa is None:
        return None
    return StochasticCellRescaling(
        pressure=args.pressure_GPa * GPA,
        temperature_K=args.temperature_K,
        tau=args.barostat_tau_fs * FS,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", help="reference store (flashmd generate)")
    parser.add_argument("--temperature-K", type=float, required=True)
    parser.add_argument("--stride-fs", type=float, default=32.0)
    parser.add_argument("--strides", type=int, default=2000)
    parser.add_argument("--timestep-fs", type=float, default=2.0)
    parser.add_argument("--friction-per-fs", type=float, default=0.01)
    parser.add_argument(
        "--thermostat",
        choices=("langevin", "bussi"),
        default="langevin",
        help="langevin at --friction-per-fs or bussi at --taut-fs (default: langevin)",
    )
    parser.add_argument("--taut-fs", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model", help="velocity Verlet on this model's energy model (default: the reference's)"
    )
    parser.add_argument(
        "--pressure-GPa",
        type=float,
        help="constant pressure: stochastic cell rescaling at this pressure (default: none)",
    )
    parser.add_argument("--barostat-tau-fs", type=float, default=1000.0)
    parser.add_argument(
        "--no-filter",
        action="store_true",
        help="no energy filter: the map's own energy errors stay (default: as flashmd md)",
    )
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()

    reference = TrajectoryStore.open(args.reference)
    if args.model is None:
        potential = CalculatorPotential(make_calculator(reference_calculator_spec(reference)))
        calculator = "control: velocity Verlet on the reference calculator"
    else:
        potential = ModelPotential(load_model(args.model))
        calculator = f"control: velocity Verlet on the energy model of {args.model}"
    starts = stored_starts(args.reference, args.temperature_K)
    state = state_from_atoms(starts, seed=args.seed)
    stepper = Stepper(
        VerletPropagator(potential, args.timestep_fs),
        args.stride_fs,
        potential=potential,
        thermostat=make_thermostat(
            args.thermostat, args.temperature_K, args.friction_per_fs, args.taut_fs
        ),
        barostat=barostat(args),
        filters=FilterConfig(energy=False) if args.no_filter else None,
    )
    store = TrajectoryStore.create(args.output, {"name": "control-rollout", **vars(args)})
    ids = [f"{k:05d}_{a.get_chemical_formula('metal')}_r0" for k, a in enumerate(starts)]
    attrs = [
        {
            "calculator": {"name": calculator},
            "ensemble": args.thermostat if args.pressure_GPa is None else "npt",
            **thermostat_attrs(args.thermostat, args.friction_per_fs, args.taut_fs),
            "temperature_K": args.temperature_K,
            "timestep_fs": args.stride_fs,
            "sample_interval_fs": args.stride_fs,
            "pbc": [bool(p) for p in a.pbc],
            "start_from": a.info["start_from"],
        }
        for a in starts
    ]
    n_frames = args.strides + 1
    writer = RolloutWriter(store, ids, attrs, state, capacity=n_frames)
    with tqdm(total=n_frames, initial=writer.n_frames, unit="frame") as bar:
        _, report = rollout(stepper, state, n_frames, 1, writer, on_frame=bar.update)
    writer.close(complete=True, attrs={"fallbacks": stepper.fallbacks})
    print(f"{report.strides} strides, {report.fallbacks} filter rejections, {args.output}")


if __name__ == "__main__":
    main()
