"""Human-readable summary of a trajectory store (``flashmd inspect``)."""

from __future__ import annotations

import numpy as np

from flashmd.data.store import TrajectoryReader, TrajectoryStore


def _size(n_bytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError


Frame = dict[str, np.ndarray]


def end_frames(reader: TrajectoryReader) -> tuple[Frame, Frame] | None:
    """The first and the last stored frame (the same one when there is one; None without)."""
    if reader.n_frames == 0:
        return None
    first = reader.frame(0)
    return first, (first if reader.n_frames == 1 else reader.frame(reader.n_frames - 1))


def displacement(reader: TrajectoryReader, ends: tuple[Frame, Frame] | None = None) -> float | None:
    """Mean-squared displacement (Å²) of the atoms from the first to the last stored frame
    (``ends``, read when not given), the centre of mass's own motion removed; None below two
    frames. A solid stays near its vibrations' amplitude (under 1 Å²), a liquid's grows with
    the trajectory's length."""
    if reader.n_frames < 2:
        return None
    first, last = ends or end_frames(reader)
    moved = last["positions"] - first["positions"]
    masses = reader.masses[:, None]
    moved -= (masses * moved).sum(axis=0) / masses.sum()
    return float((moved**2).sum(axis=1).mean())


def crystalline(reader: TrajectoryReader, ends: tuple[Frame, Frame] | None = None) -> str:
    """The fraction of atoms in crystalline (fcc, hcp, bcc) environments in the first and the
    last stored frame (``ends``, read when not given), as ``"2 → 96 %"``
    (:func:`flashmd.analysis.structure_fractions`): a melt that froze back, or a crystal that
    melted, shows at a glance. ``"-"`` without frames, for a system that is not fully periodic,
    or without asap3."""
    ends = ends or end_frames(reader)
    if ends is None or not all(reader.attrs.get("pbc", (True,) * 3)):
        return "-"
    from flashmd.analysis.local_structure import structure_fractions

    try:  # asap3's template matching is an optional extra
        fractions = structure_fractions(
            [f["positions"] for f in ends], [f["cell"] for f in ends], reader.numbers
        ).crystalline
    except ImportError:
        return "-"
    first, last = (round(100 * f) for f in fractions)
    return f"{first} → {last} %"


def format_store(location: str) -> str:
    """A table of the store's trajectories (atoms, species, frames, temperature, mean-squared
    displacement over the trajectory, crystalline fraction of the first and last frames,
    calculator, status) followed by its totals, size on
    storage and compression ratio."""
    store = TrajectoryStore.open(location)
    rows = store.info()
    header = (
        "id",
        "atoms",
        "species",
        "frames",
        "T (K)",
        "MSD (Å²)",
        "crystalline",
        "calculator",
        "status",
    )
    table = [header]
    for r in rows:
        reader = store[r.id]
        ends = end_frames(reader)
        msd = displacement(reader, ends)
        status = r.status
        if r.n_frames == 0 and reader.attrs.get("equilibration"):  # an MLIP's, committed
            status += f" (equilibration step {reader.attrs['equilibration']['steps_taken']})"
        table.append(
            (
                r.id,
                str(r.n_atoms),
                r.species,
                str(r.n_frames),
                "-" if r.temperature_K is None else f"{r.temperature_K:g}",
                "-" if msd is None else f"{msd:.3g}",
                crystalline(reader, ends),
                r.calculator,
                status,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    logical, stored = store.nbytes()
    recipe = store.recipe
    complete = sum(r.status == "complete" for r in rows)
    lines += [
        "",
        "MSD: mean-squared displacement from the first to the last frame; a solid stays under "
        "about 1 Å², a liquid's grows with time (a crystal heated far past melting can stay "
        "solid: recipes melt liquids with melt_K); crystalline: atoms in fcc, hcp or bcc "
        "environments in the first and the last frame (a melt that froze back shows as a rise)",
        f"store        {location}",
        f"recipe       {recipe.get('name', '?')} (sha256 "
        f"{str(store.root.attrs.get('recipe_sha256', '?'))[:12]})",
        f"trajectories {len(rows)} ({complete} complete), {sum(r.n_frames for r in rows)} frames",
        f"size         {_size(stored)} stored, {_size(logical)} uncompressed, "
        f"compression {logical / stored if stored else float('nan'):.2f}x",
    ]
    return "\n".join(lines)
