"""Several reference stores of one calculator read as one (``flashmd evaluate --reference A B``).

A reference too short to judge a rollout (its own noise above a tolerance) is made longer by
generating more of it into a second store, from a recipe that differs only in its seed and
length; the generator refuses to append to a store of another recipe, so the stores stay
apart and are pooled here, read-only. Ids are prefixed with their store's recipe name
(``sevennet-cuau-heldout-liquid-gentle-2/00000_Cu-liquid_1700K_r0``), or with the store's
position (``1/...``) where two recipes share a name. Stores of different calculators (or
different calculator parameters) are refused: a pooled reference must be one reference.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from flashmd.data.store import StoreError, TrajectoryReader, TrajectoryStore


class StoreUnion:
    """Read-only view of ``stores`` as one store: the subset of :class:`TrajectoryStore`'s API
    that reading a reference uses (``ids``, ``[id]``, ``in``, ``recipe``, ``location``).

    Raises:
        StoreError: no store, or stores whose recipes name different calculators.
    """

    def __init__(self, stores: Sequence[TrajectoryStore]) -> None:
        if not stores:
            raise StoreError("no reference store given")
        calculators = [store.recipe.get("calculator") for store in stores]
        if any(c != calculators[0] for c in calculators[1:]):
            listed = "; ".join(
                f"{store.location}: {calculator}"
                for store, calculator in zip(stores, calculators, strict=True)
            )
            raise StoreError(
                f"the reference stores were made with different calculators ({listed}); pool only "
                "stores of one reference, and judge against each reference separately"
            )
        names = [str(store.recipe.get("name") or "") for store in stores]
        distinct = all(names) and len(set(names)) == len(names)
        prefixes = names if distinct else [str(k) for k in range(len(stores))]
        self.stores = tuple(stores)
        self.location = " + ".join(store.location for store in stores)
        self._where = {
            f"{prefix}/{traj_id}": (store, traj_id)
            for prefix, store in zip(prefixes, stores, strict=True)
            for traj_id in store.ids()
        }

    @property
    def recipe(self) -> dict[str, Any]:
        """The first store's recipe (every store's calculator is the same)."""
        return self.stores[0].recipe

    def ids(self) -> list[str]:
        """Prefixed trajectory ids, sorted."""
        return sorted(self._where)

    def __contains__(self, traj_id: str) -> bool:
        return traj_id in self._where

    def __len__(self) -> int:
        return len(self._where)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def __getitem__(self, traj_id: str) -> TrajectoryReader:
        if traj_id not in self._where:
            raise KeyError(f"no trajectory {traj_id!r} in {self.location}; it has {self.ids()}")
        store, own_id = self._where[traj_id]
        return store[own_id]  # named by its own store and id


#: What reading a reference accepts: one store or several pooled.
ReadableStore = TrajectoryStore | StoreUnion


def open_reference(
    locations: str | os.PathLike | Sequence[str | os.PathLike],
) -> ReadableStore:
    """The store at ``locations``, or the :class:`StoreUnion` of several (each opened and
    validated as :meth:`TrajectoryStore.open` does)."""
    if isinstance(locations, str | os.PathLike):
        return TrajectoryStore.open(locations)
    stores = [TrajectoryStore.open(location) for location in locations]
    return stores[0] if len(stores) == 1 else StoreUnion(stores)
