"""The batch dictionary: every key, with its shape, dtype, unit and the entity it lives on.

A batch holds ``n_systems`` systems with ``n_atoms`` atoms in total and ``n_edges`` directed
neighbour pairs. Modules read some keys and write others; :data:`KEYS` is the single table that
says what each key means, and :func:`check_batch` validates a batch against it.

Shapes use the symbols ``A`` (atoms in the batch), ``E`` (edges), ``S`` (systems).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Field = Literal["atom", "edge", "system"]

POSITIONS = "positions"
MOMENTA = "momenta"
MASSES = "masses"
NUMBERS = "numbers"
CELL = "cell"
PBC = "pbc"
SYSTEM = "system"
N_ATOMS = "n_atoms"
EDGE_INDEX = "edge_index"
EDGE_SHIFTS = "edge_shifts"
EDGE_VECTORS = "edge_vectors"
STRIDE = "stride"
ENERGY = "energy"
FORCES = "forces"
STRESS = "stress"
TARGET_POSITIONS = "target_positions"
TARGET_MOMENTA = "target_momenta"
UNROLL_POSITIONS = "unroll_positions"
UNROLL_MOMENTA = "unroll_momenta"


@dataclass(frozen=True)
class Key:
    """Description of one batch entry.

    Attributes:
        name: the dictionary key.
        shape: symbolic shape, e.g. ``("A", 3)``.
        dtype: ``"float"`` (the model's float dtype), ``"long"`` or ``"bool"``.
        unit: physical unit, ``""`` when dimensionless.
        field: entity the first axis runs over, or ``None`` for edge_index (shape ``(2, E)``).
        doc: one line of meaning.
    """

    name: str
    shape: tuple[str | int, ...]
    dtype: str
    unit: str
    field: Field | None
    doc: str


KEYS: dict[str, Key] = {
    k.name: k
    for k in [
        Key(POSITIONS, ("A", 3), "float", "Å", "atom", "Cartesian positions, unwrapped"),
        Key(MOMENTA, ("A", 3), "float", "amu·Å/ASE-time", "atom", "momenta p = m v"),
        Key(MASSES, ("A",), "float", "amu", "atom", "atomic masses"),
        Key(NUMBERS, ("A",), "long", "", "atom", "atomic numbers"),
        Key(SYSTEM, ("A",), "long", "", "atom", "index of the system each atom belongs to"),
        Key(CELL, ("S", 3, 3), "float", "Å", "system", "cell vectors as rows"),
        Key(PBC, ("S", 3), "bool", "", "system", "periodicity along each cell vector"),
        Key(N_ATOMS, ("S",), "long", "", "system", "number of atoms per system"),
        Key(STRIDE, ("S",), "float", "fs", "system", "stride of the long-stride map"),
        Key(ENERGY, ("S",), "float", "eV", "system", "potential energy"),
        Key(FORCES, ("A", 3), "float", "eV/Å", "atom", "forces, minus the energy gradient"),
        Key(STRESS, ("S", 3, 3), "float", "eV/Å³", "system", "stress (1/V) dE/dstrain, ASE sign"),
        Key(EDGE_INDEX, (2, "E"), "long", "", None, "(receiver i, sender j) of each edge"),
        Key(EDGE_SHIFTS, ("E", 3), "float", "Å", "edge", "cell shift added to r_j - r_i"),
        Key(EDGE_VECTORS, ("E", 3), "float", "Å", "edge", "r_ij = r_j - r_i + shift"),
        Key(TARGET_POSITIONS, ("A", 3), "float", "Å", "atom", "positions after one stride"),
        Key(TARGET_MOMENTA, ("A", 3), "float", "amu·Å/ASE-time", "atom", "momenta after a stride"),
        Key(UNROLL_POSITIONS, ("A", "U", 3), "float", "Å", "atom", "positions, strides 2..U+1"),
        Key(UNROLL_MOMENTA, ("A", "U", 3), "float", "amu·Å/ASE-time", "atom", "momenta, same"),
    ]
}


def check_batch(batch: dict, required: tuple[str, ...] = ()) -> None:
    """Check that ``batch`` holds ``required`` keys and that every known key has a consistent shape.

    Raises:
        KeyError: a required key is missing.
        ValueError: a key's shape disagrees with the table (names the key and both shapes).
    """
    missing = [k for k in required if k not in batch]
    if missing:
        raise KeyError(f"batch is missing {missing}; it has {sorted(batch)}")
    sizes: dict[str, int] = {}
    for name, value in batch.items():
        key = KEYS.get(name)
        if key is None or not hasattr(value, "shape"):
            continue
        if len(value.shape) != len(key.shape):
            raise ValueError(
                f"batch[{name!r}] has shape {tuple(value.shape)}, expected {key.shape}"
            )
        for symbol, size in zip(key.shape, value.shape, strict=True):
            if isinstance(symbol, int):
                if size != symbol:
                    raise ValueError(
                        f"batch[{name!r}] has shape {tuple(value.shape)}, expected {key.shape}"
                    )
            elif sizes.setdefault(symbol, int(size)) != size:
                raise ValueError(
                    f"batch[{name!r}] has {size} along {symbol!r} but other keys have "
                    f"{sizes[symbol]}"
                )
