"""Human-readable summary of a trajectory store (``flashmd inspect``)."""

from __future__ import annotations

from flashmd.data.store import TrajectoryStore


def _size(n_bytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError


def format_store(location: str) -> str:
    """A table of the store's trajectories (atoms, species, frames, temperature, calculator,
    status) followed by its totals, size on storage and compression ratio."""
    store = TrajectoryStore.open(location)
    rows = store.info()
    header = ("id", "atoms", "species", "frames", "T (K)", "calculator", "status")
    table = [header] + [
        (
            r.id,
            str(r.n_atoms),
            r.species,
            str(r.n_frames),
            "-" if r.temperature_K is None else f"{r.temperature_K:g}",
            r.calculator,
            r.status,
        )
        for r in rows
    ]
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
        f"store        {location}",
        f"recipe       {recipe.get('name', '?')} (sha256 "
        f"{str(store.root.attrs.get('recipe_sha256', '?'))[:12]})",
        f"trajectories {len(rows)} ({complete} complete), {sum(r.n_frames for r in rows)} frames",
        f"size         {_size(stored)} stored, {_size(logical)} uncompressed, "
        f"compression {logical / stored if stored else float('nan'):.2f}x",
    ]
    return "\n".join(lines)
