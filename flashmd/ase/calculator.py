"""``EnergyCalculator``: the energy model of a :class:`~flashmd.models.FlashMDModel` as an ASE
calculator (energy, forces, and stress for fully periodic systems)."""

from __future__ import annotations

from typing import Any

import ase
from ase.calculators.calculator import Calculator, all_changes

from flashmd import keys
from flashmd.models.model import FlashMDModel


class EnergyCalculator(Calculator):
    """ASE calculator of a model's energy model.

    Args:
        model: a :class:`FlashMDModel` with an energy model.

    Raises:
        ValueError: the model has no energy model.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]  # noqa: RUF012

    def __init__(self, model: FlashMDModel, **kwargs: Any) -> None:
        if model.energy_model is None:
            raise ValueError("this model has no energy model; it cannot be a calculator")
        super().__init__(**kwargs)
        self.model = model

    def calculate(
        self,
        atoms: ase.Atoms | None = None,
        properties: tuple[str, ...] = ("energy",),
        system_changes: tuple[str, ...] = tuple(all_changes),
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        stress = "stress" in properties
        if stress and not self.atoms.pbc.all():
            raise ValueError(
                f"stress needs a fully periodic system; this one has pbc={self.atoms.pbc.tolist()}"
            )
        batch = self.model.make_batch(self.atoms)
        out = self.model.compute_energy(batch, forces="forces" in properties, stress=stress)
        energy = float(out[keys.ENERGY][0].detach())
        self.results = {"energy": energy, "free_energy": energy}
        if keys.FORCES in out:
            self.results["forces"] = out[keys.FORCES].detach().cpu().double().numpy()
        if keys.STRESS in out:
            full = out[keys.STRESS][0].detach().cpu().double().numpy()
            self.results["stress"] = full[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]

    def store_energy(self, atoms: ase.Atoms, energy: float) -> None:
        """Cache ``energy`` (eV) as the result for ``atoms`` (used by the dynamics, which already
        computed it), so loggers and trajectories read it without another evaluation."""
        self.atoms = atoms.copy()
        self.results = {"energy": float(energy), "free_energy": float(energy)}
