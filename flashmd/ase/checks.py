"""Checks of an ``ase.Atoms`` before a FlashMD run: momenta, constraints, close contacts."""

from __future__ import annotations

import warnings

import ase
import numpy as np
from ase.constraints import FixAtoms
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

from flashmd.md.filters import CONTACT_FRACTION


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


def warn_close_contacts(atoms: ase.Atoms, min_distance: float | None = None) -> float | None:
    """Warn when two atoms are closer than ``min_distance`` Å (default: ``CONTACT_FRACTION``
    times the sum of their covalent radii), closer than any training structure ever had them.

    Returns:
        The closest distance found below the threshold, or None.
    """
    radii = covalent_radii[atoms.numbers]
    reach = float(min_distance) if min_distance is not None else 2 * CONTACT_FRACTION * radii.max()
    first, second, distance = neighbor_list("ijd", atoms, reach)
    if min_distance is None:
        limit = CONTACT_FRACTION * (radii[first] + radii[second])
    else:
        limit = np.full_like(distance, float(min_distance))
    close = distance < limit
    if not close.any():
        return None
    k = int(np.argmin(np.where(close, distance, np.inf)))
    warnings.warn(
        f"atoms {first[k]} and {second[k]} are {distance[k]:.3f} Å apart, closer than "
        f"{limit[k]:.3f} Å: the model never saw such a contact in training and its predictions "
        "there are not to be trusted",
        RuntimeWarning,
        stacklevel=3,
    )
    return float(distance[k])
