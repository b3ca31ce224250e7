"""Close contacts in a starting structure: refused before any work unless the user means it.

Two atoms closer than ``CONTACT_FRACTION`` of the sum of their covalent radii (default) are
closer than any training structure had them, deep in the repulsive wall: a long-stride model's
predictions there mean nothing, and the energy filter then redoes every stride with velocity
Verlet on the energy model, which is no more trustworthy. A user who means it (a collision
study, a test) passes ``allow=True`` and gets a warning instead.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import ase
import numpy as np
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

from flashmd.md.filters import CONTACT_FRACTION


class Contact(NamedTuple):
    """The closest pair below the limit: atom indices, distance and limit in Å."""

    first: int
    second: int
    distance: float
    limit: float


def closest_contact(atoms: ase.Atoms, min_distance: float | None = None) -> Contact | None:
    """The closest pair of ``atoms`` nearer than ``min_distance`` Å (None: ``CONTACT_FRACTION``
    times the sum of the pair's covalent radii), or None when there is no such pair."""
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
    return Contact(int(first[k]), int(second[k]), float(distance[k]), float(limit[k]))


def check_contacts(
    atoms: ase.Atoms,
    min_distance: float | None = None,
    allow: bool = False,
    name: str = "the structure",
    opt_out: str = "allow_close_contacts=True",
) -> Contact | None:
    """Raise ``ValueError`` when ``atoms`` hold a close contact (:func:`closest_contact`); with
    ``allow``, warn (``RuntimeWarning``) instead. ``name`` names the structure and ``opt_out``
    the option that allows it, in the message. Returns the contact found, or None."""
    contact = closest_contact(atoms, min_distance)
    if contact is None:
        return None
    message = (
        f"atoms {contact.first} and {contact.second} of {name} are {contact.distance:.3f} Å "
        f"apart, closer than {contact.limit:.3f} Å: the model never saw such a contact in "
        "training and its strides there are not to be trusted"
    )
    if not allow:
        raise ValueError(f"{message}; fix the structure, or pass {opt_out} to run it anyway")
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return contact
