"""Potential energies of a rollout's frames recomputed with the reference store's calculator.

A rollout store records ``V`` from the model's own energy model, so comparing its mean with the
reference mixes two errors: where the dynamics went and how well the energy model prices it.
Recomputing ``V`` of the rollout's frames with the calculator the reference was generated with
(taken from the reference store's recipe) isolates the first: ``flashmd evaluate --energy
reference``.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from flashmd.analysis.observables import EnergyFunction
from flashmd.data.calculators import make_calculator
from flashmd.data.recipes import CalculatorSpec
from flashmd.data.store import TrajectoryReader
from flashmd.data.union import ReadableStore


def reference_calculator_spec(reference: ReadableStore) -> CalculatorSpec:
    """The calculator of the recipe that generated ``reference``.

    Raises:
        ValueError: the store was not made by ``flashmd generate`` (no calculator in its recipe).
    """
    spec = reference.recipe.get("calculator")
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(
            f"{reference.location} records no generation recipe with a calculator, so the rollout "
            "energies cannot be recomputed; use --energy stored or a reference made by "
            "flashmd generate"
        )
    return CalculatorSpec.model_validate(spec)


def energy_function(spec: CalculatorSpec, reader: TrajectoryReader) -> EnergyFunction:
    """``V`` of frames of ``reader``'s atoms with a fresh calculator of ``spec``."""
    atoms = Atoms(
        numbers=reader.numbers,
        masses=reader.masses,
        pbc=reader.attrs.get("pbc", True),
        cell=reader.frame(0)["cell"],
    )
    atoms.calc = make_calculator(spec)

    def energies(positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
        out = np.empty(len(positions))
        for k in range(len(positions)):
            atoms.set_cell(cell[k])
            atoms.set_positions(positions[k])
            out[k] = atoms.get_potential_energy()
        return out

    return energies
