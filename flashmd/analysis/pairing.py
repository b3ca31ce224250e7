"""Which reference trajectories a rollout's trajectories are compared with.

By default trajectories are grouped into *conditions*: the same atoms (species and how many of
each) at the same ``temperature_K`` attribute. A condition present in both stores is compared,
all replicas on each side pooled. An explicit selection narrows or replaces that: an item
``REF_ID=RUN_ID`` pairs two trajectories whatever their attributes (pairs sharing a reference id
form one condition); a plain ``ID`` (of either store) restricts the matching by conditions to the
trajectories named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from flashmd.data.store import TrajectoryReader, TrajectoryStore
from flashmd.data.union import ReadableStore

#: Trajectories need this many frames to be analysed (time correlations, drift).
MIN_FRAMES = 2


class PairingError(ValueError):
    """Nothing to compare, or a selection that names unknown or incompatible trajectories."""


@dataclass(frozen=True)
class Condition:
    """One comparison: reference ids and rollout ids of the same atoms and temperature."""

    label: str
    reference: tuple[str, ...]
    rollout: tuple[str, ...]

    @property
    def slug(self) -> str:
        """``label`` reduced to characters safe in file names."""
        text = "".join(c if c.isalnum() or c in "-." else "_" for c in self.label)
        return "_".join(part for part in text.split("_") if part)


@dataclass(frozen=True)
class Pairing:
    """Conditions to compare, and what could not be paired (with the reason)."""

    conditions: list[Condition]
    unmatched: list[str] = field(default_factory=list)


def composition(reader: TrajectoryReader) -> tuple[tuple[int, int], ...]:
    """((atomic number, count), ...) sorted by atomic number."""
    species, counts = np.unique(reader.numbers, return_counts=True)
    return tuple((int(z), int(n)) for z, n in zip(species, counts, strict=True))


def _temperature(reader: TrajectoryReader) -> float | None:
    value = reader.attrs.get("temperature_K")
    return None if value is None else round(float(value), 3)


def _label(reader: TrajectoryReader) -> str:
    temperature = _temperature(reader)
    return f"{reader.formula} {'?' if temperature is None else f'{temperature:g}'} K"


def parse_selection(items: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Split ``items`` into explicit ``(reference id, rollout id)`` pairs and plain ids."""
    pairs, ids = [], []
    for item in items:
        if "=" in item:
            ref, _, run = item.partition("=")
            if not ref or not run or "=" in run:
                raise PairingError(f"--trajectories {item!r}: a pair is written REF_ID=RUN_ID")
            pairs.append((ref, run))
        else:
            ids.append(item)
    return pairs, ids


def _usable(store: ReadableStore, traj_id: str, side: str, unmatched: list[str]) -> bool:
    n_frames = store[traj_id].n_frames
    if n_frames < MIN_FRAMES:
        unmatched.append(f"{side} {traj_id}: {n_frames} frames, too few to analyse")
        return False
    return True


def _explicit(
    reference: ReadableStore, rollout: TrajectoryStore, pairs: list[tuple[str, str]]
) -> list[Condition]:
    grouped: dict[str, list[str]] = {}
    for ref, run in pairs:
        for store, traj_id, side in ((reference, ref, "reference"), (rollout, run, "rollout")):
            if traj_id not in store:
                raise PairingError(
                    f"no trajectory {traj_id!r} in the {side} store {store.location}"
                )
        if composition(reference[ref]) != composition(rollout[run]):
            raise PairingError(
                f"{ref}={run}: different atoms ({reference[ref].formula} against "
                f"{rollout[run].formula}); only the same species and counts can be compared"
            )
        grouped.setdefault(ref, []).append(run)
    return [
        Condition(f"{ref} vs {', '.join(runs)}", (ref,), tuple(dict.fromkeys(runs)))
        for ref, runs in grouped.items()
    ]


def pair_trajectories(
    reference: ReadableStore, rollout: TrajectoryStore, selection: Sequence[str] = ()
) -> Pairing:
    """Conditions of ``rollout`` matched to ``reference`` (see the module docstring).

    Raises:
        PairingError: a selected id is in neither store, an explicit pair has different atoms,
            or nothing matches (the message lists the conditions of both stores).
    """
    pairs, ids = parse_selection(selection)
    unknown = [i for i in ids if i not in reference and i not in rollout]
    if unknown:
        raise PairingError(
            f"--trajectories: {', '.join(unknown)} in neither store (reference has "
            f"{reference.ids()}, rollout has {rollout.ids()})"
        )
    conditions = _explicit(reference, rollout, pairs)
    unmatched: list[str] = []
    if ids or not pairs:
        chosen = set(ids)
        groups: dict[tuple, tuple[str, list[str], list[str]]] = {}
        for index, store in enumerate((reference, rollout)):
            for traj_id in store.ids():
                if chosen and traj_id not in chosen:
                    continue
                if not _usable(store, traj_id, ("reference", "rollout")[index], unmatched):
                    continue
                reader = store[traj_id]
                key = (composition(reader), _temperature(reader))
                label, *sides = groups.setdefault(key, (_label(reader), [], []))
                sides[index].append(traj_id)
        for label, refs, runs in groups.values():
            if refs and runs:
                conditions.append(Condition(label, tuple(refs), tuple(runs)))
            else:
                side, ids_ = ("reference", refs) if refs else ("rollout", runs)
                unmatched.extend(f"{side} {i}: no {label} in the other store" for i in ids_)
    if not conditions:
        seen = [
            f"{side}: {', '.join(sorted({_label(store[i]) for i in store.ids()})) or 'empty'}"
            for side, store in (("reference", reference), ("rollout", rollout))
        ]
        raise PairingError(
            f"nothing to compare: no rollout trajectory has the atoms and temperature of a "
            f"reference one ({'; '.join(seen)}); pair them explicitly with --trajectories "
            "REF_ID=RUN_ID"
        )
    return Pairing(conditions, unmatched)
