"""Checks of an ``ase.Atoms`` before a FlashMD run: momenta and constraints (close contacts:
:mod:`flashmd.md.contacts`)."""

from __future__ import annotations

import ase
from ase.constraints import FixAtoms


def check_momenta(atoms: ase.Atoms) -> None:
    """Raise ``ValueError`` if ``atoms`` carry no momenta (a long-stride map needs them)."""
    if not atoms.has("momenta"):
        raise ValueError(
            "the atoms have no momenta; set them first, e.g. "
            "ase.md.velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=300)"
        )


def check_constraints(atoms: ase.Atoms) -> None:
    """Raise ``ValueError`` for constraints other than ``FixAtoms`` (not supported)."""
    for constraint in atoms.constraints:
        if not isinstance(constraint, FixAtoms):
            raise ValueError(
                f"constraint {type(constraint).__name__} is not supported by FlashMD dynamics; "
                "only FixAtoms is (total momentum is conserved without FixCom)"
            )
