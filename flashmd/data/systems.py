"""Build ``ase.Atoms`` from the system entries of a recipe (crystals, alloys, surfaces, files).

Random choices (alloy site occupation, vacancies, rattle) come from the generator passed in, so a
trajectory's structure is fixed by its seed.
"""

from __future__ import annotations

import ase.build
import ase.io
import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, reference_states
from ase.neighborlist import neighbor_list

from flashmd.data.recipes import (
    AlloySystem,
    CrystalSystem,
    FileSystem,
    RecipeError,
    SurfaceSystem,
    System,
)

#: Atoms closer than this (Å) in a built structure are rejected as overlapping.
MIN_DISTANCE = 0.5

_ATOMS_PER_CUBIC_CELL = {"fcc": 4, "bcc": 2, "sc": 1, "diamond": 8}


def _symbol_number(symbol: str) -> int:
    if symbol not in atomic_numbers:
        raise RecipeError(f"unknown element {symbol!r}")
    return atomic_numbers[symbol]


def atomic_volume(symbol: str) -> float:
    """Volume per atom (Å^3) of the element's reference crystal in ASE's data."""
    state = reference_states[_symbol_number(symbol)] or {}
    structure, a = state.get("symmetry"), state.get("a")
    if structure in _ATOMS_PER_CUBIC_CELL and a:
        return a**3 / _ATOMS_PER_CUBIC_CELL[structure]
    if structure == "hcp" and a:
        c = state.get("c/a", 1.633) * a
        return np.sqrt(3) / 4 * a * a * c
    raise RecipeError(f"ASE has no reference lattice constant for {symbol}; give 'a' explicitly")


def lattice_constant(symbols: dict[str, float], lattice: str) -> float:
    """Cubic lattice constant (Å) from Vegard's law on the elements' atomic volumes."""
    total = sum(symbols.values())
    volume = sum(fraction / total * atomic_volume(s) for s, fraction in symbols.items())
    return float((volume * _ATOMS_PER_CUBIC_CELL[lattice]) ** (1 / 3))


def _crystal(spec: CrystalSystem) -> Atoms:
    _symbol_number(spec.element)
    kwargs = {"orthorhombic": True} if spec.lattice == "hcp" else {"cubic": spec.cubic}
    a = spec.a
    if a is None and reference_states[atomic_numbers[spec.element]].get("symmetry") != spec.lattice:
        a = lattice_constant({spec.element: 1.0}, spec.lattice) if spec.lattice != "hcp" else None
    return ase.build.bulk(spec.element, spec.lattice, a=a, **kwargs)


def _alloy(spec: AlloySystem, rng: np.random.Generator) -> Atoms:
    for symbol in spec.elements:
        _symbol_number(symbol)
    a = spec.a or lattice_constant(spec.elements, spec.lattice)
    first = next(iter(spec.elements))
    cell = ase.build.bulk(first, spec.lattice, a=a, cubic=True)
    (major, _), (minor, _) = sorted(spec.elements.items(), key=lambda kv: -kv[1])[:2]
    if spec.ordered == "L12":  # A3B: one corner site of the cubic fcc cell is B
        cell.symbols = [minor, major, major, major]
    elif spec.ordered == "L10":  # alternating (001) layers: z = 0 sites 0, 3; z = a/2 sites 1, 2
        cell.symbols = [major, minor, minor, major]
    elif spec.ordered == "B2":
        cell.symbols = [major, minor]
    atoms = cell.repeat(spec.supercell)
    if spec.ordered is None:
        fractions = np.array(list(spec.elements.values()), dtype=float)
        counts = np.floor(fractions / fractions.sum() * len(atoms)).astype(int)
        counts[np.argmax(fractions)] += len(atoms) - counts.sum()
        symbols = np.repeat(list(spec.elements), counts)
        atoms.symbols = list(rng.permutation(symbols))
    return atoms


def _surface(spec: SurfaceSystem) -> Atoms:
    _symbol_number(spec.element)
    builder = getattr(ase.build, f"{spec.lattice}{spec.facet}")
    a = spec.a
    if a is None and reference_states[atomic_numbers[spec.element]].get("symmetry") != spec.lattice:
        a = lattice_constant({spec.element: 1.0}, spec.lattice)
    return builder(spec.element, size=spec.size, a=a, vacuum=spec.vacuum)


def _file(spec: FileSystem) -> Atoms:
    try:
        atoms = ase.io.read(spec.path, index=spec.index)
    except FileNotFoundError:
        raise RecipeError(f"structure file {spec.path} does not exist") from None
    except Exception as error:
        raise RecipeError(f"ASE cannot read structure file {spec.path}: {error}") from None
    atoms.calc = None
    return atoms


def _strain(atoms: Atoms, strain: float | tuple[float, float, float]) -> None:
    factors = 1.0 + np.broadcast_to(np.asarray(strain, dtype=float), (3,))
    if np.allclose(factors, 1.0):
        return
    atoms.set_cell(atoms.cell[:] * factors[:, None], scale_atoms=True)


def check_overlaps(atoms: Atoms, label: str, min_distance: float = MIN_DISTANCE) -> None:
    """Raise :class:`RecipeError` when two atoms are closer than ``min_distance`` Å."""
    i, j, d = neighbor_list("ijd", atoms, min_distance)
    if len(d):
        k = int(np.argmin(d))
        raise RecipeError(
            f"{label}: atoms {i[k]} and {j[k]} are {d[k]:.3f} Å apart (below {min_distance} Å); "
            "the structure overlaps. Check the file, the lattice constant or the rattle amplitude."
        )


def build_system(spec: System, rng: np.random.Generator, label: str = "system") -> Atoms:
    """Build one system: the structure, then strain, vacancies and rattle, checked for overlaps.

    Args:
        spec: a validated system entry of a recipe.
        rng: source of the random choices (alloy occupation, vacancies, rattle).
        label: how errors name the system (e.g. ``systems.2``).
    """
    if isinstance(spec, CrystalSystem):
        atoms = _crystal(spec).repeat(spec.supercell)
    elif isinstance(spec, AlloySystem):
        atoms = _alloy(spec, rng)
    elif isinstance(spec, SurfaceSystem):
        atoms = _surface(spec)
    else:
        atoms = _file(spec).repeat(spec.supercell)
    _strain(atoms, spec.strain)
    if spec.vacancies:
        if spec.vacancies >= len(atoms):
            raise RecipeError(f"{label}: {spec.vacancies} vacancies but only {len(atoms)} atoms")
        del atoms[rng.choice(len(atoms), size=spec.vacancies, replace=False).tolist()]
    if spec.rattle:
        atoms.positions += rng.normal(scale=spec.rattle, size=atoms.positions.shape)
    check_overlaps(atoms, label)
    return atoms
