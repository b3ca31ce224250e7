"""Stride pairs from a trajectory store, read lazily and chunk by chunk.

A sample is a pair of frames ``(t, t + k)`` of one trajectory, ``k = stride / sample_interval``:
the state at ``t`` is the input, the state at ``t + k`` the target. :class:`StridePairs` iterates
over *blocks* (one frame chunk of one trajectory plus the look-ahead of the longest stride, read
with one call so only those chunks are decompressed), keeps a few blocks in a shuffle buffer and
yields their pairs in random order. Memory is bounded by the buffer, not by the store's size.

Splits are by trajectory (:func:`split_trajectories`), never by frame: neighbouring frames are
correlated, so a frame split would leak training data into validation. Pairs may come from several
stores at once (a base store and, say, reference continuations written later), which must share
one sample interval.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from flashmd import keys
from flashmd.data.graph import collate, with_neighbors
from flashmd.data.store import TrajectoryStore

_FRAME_KEYS = ("positions", "momenta", "cell", "energy", "forces", "stress")


@dataclass(frozen=True)
class Block:
    """Frames ``[start, stop)`` of trajectory ``traj_id`` of source (store) number ``source`` are
    pair origins; ``stop + lookahead`` frames are read."""

    traj_id: str
    start: int
    stop: int
    source: int = 0


def split_trajectories(
    store: TrajectoryStore, validation: float | Sequence[str], seed: int = 0
) -> tuple[list[str], list[str]]:
    """(training ids, validation ids) of the store's complete trajectories.

    Args:
        validation: a fraction of trajectories (at least one when > 0), chosen with ``seed``, or
            an explicit list of trajectory ids.
    """
    ids = [tid for tid in store.ids() if store[tid].status == "complete"]
    if not ids:
        raise ValueError(f"{store.location} holds no complete trajectory to train on")
    if isinstance(validation, (int, float)):
        if not 0 <= validation < 1:
            raise ValueError(f"validation fraction must be in [0, 1), got {validation}")
        count = max(1, round(validation * len(ids))) if validation > 0 else 0
        if count >= len(ids):
            raise ValueError(f"{len(ids)} trajectories cannot give {count} for validation")
        chosen = set(np.random.default_rng(seed).choice(ids, size=count, replace=False).tolist())
    else:
        chosen = set(validation)
        missing = chosen - set(ids)
        if missing:
            raise ValueError(f"validation trajectories {sorted(missing)} are not in the store")
    return [t for t in ids if t not in chosen], [t for t in ids if t in chosen]


def sample_interval(store: TrajectoryStore, traj_ids: Sequence[str]) -> float:
    """The sample interval (fs) shared by the trajectories ``traj_ids`` of ``store``."""
    intervals = {float(store[t].attrs["sample_interval_fs"]) for t in traj_ids}
    if len(intervals) != 1:
        raise ValueError(f"trajectories have different sample intervals {sorted(intervals)} fs")
    return intervals.pop()


def stride_steps(
    store: TrajectoryStore, traj_ids: Sequence[str], strides_fs: Sequence[float]
) -> dict[float, int]:
    """Frames per stride: each stride must be a whole multiple of every trajectory's interval."""
    return _steps(sample_interval(store, traj_ids), strides_fs)


def _steps(interval: float, strides_fs: Sequence[float]) -> dict[float, int]:
    """Frames per stride for frames ``interval`` fs apart."""
    steps = {}
    for stride in strides_fs:
        ratio = stride / interval
        if not math.isclose(ratio, round(ratio), abs_tol=1e-9) or round(ratio) < 1:
            raise ValueError(
                f"stride {stride} fs is not a whole multiple of the store's sample interval "
                f"{interval} fs; use strides in steps of {interval} fs"
            )
        steps[float(stride)] = round(ratio)
    return steps


def collate_pairs(items: list[dict[str, torch.Tensor]], cutoff: float) -> dict[str, torch.Tensor]:
    """Pair items joined into one batch with neighbour lists at ``cutoff`` Å (float64, CPU);
    the DataLoader ``collate_fn`` of training."""
    return with_neighbors(collate(items), cutoff)


def random_orthogonal(rng: np.random.Generator) -> np.ndarray:
    """A (3, 3) random rotation, composed with a reflection half of the time (Haar on O(3))."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _subset(pairs: list, chosen: np.ndarray | None) -> list:
    return pairs if chosen is None else [pairs[i] for i in chosen]


def _sources(
    location: str | os.PathLike | Sequence[str | os.PathLike],
    traj_ids: Sequence[str] | Sequence[Sequence[str]],
) -> tuple[list[str], list[list[str]]]:
    """(store locations, their trajectory id lists) of :class:`StridePairs`'s arguments."""
    if isinstance(location, (str, os.PathLike)):
        return [os.fspath(location)], [list(cast(Sequence[str], traj_ids))]
    locations = [os.fspath(item) for item in location]
    if not locations:
        raise ValueError("StridePairs needs at least one store location")
    if isinstance(traj_ids, str) or any(isinstance(ids, str) for ids in traj_ids):
        raise ValueError(
            f"with {len(locations)} store locations traj_ids must hold one sequence of "
            "trajectory ids per location, not trajectory ids"
        )
    id_lists = [list(ids) for ids in traj_ids]
    if len(id_lists) != len(locations):
        raise ValueError(
            f"{len(locations)} store locations but {len(id_lists)} trajectory id lists; "
            "give one id list per location"
        )
    return locations, id_lists


class StridePairs(torch.utils.data.IterableDataset):
    """Shuffled stride pairs of some trajectories of one or more stores, as batch dictionaries of
    one system.

    Each item has the keys of :func:`flashmd.data.graph.atoms_to_batch` (state at ``t``, float64)
    plus ``stride`` (fs), ``target_positions`` and ``target_momenta`` (state at ``t + k``), and
    ``energy`` and ``forces`` at ``t`` when every trajectory has forces, and ``stress`` (1, 3, 3)
    eV/Å³ when any trajectory has stress (NaN for those without). Join items with
    :func:`flashmd.data.graph.collate`.

    Args:
        location: store path or URL; or a sequence of them (the base store first, then e.g.
            stores of reference continuations), all with one sample interval.
        traj_ids: the trajectories to draw from (see :func:`split_trajectories`); with a sequence
            of locations, one sequence of ids per location (an empty one draws nothing there).
        strides_fs: strides in fs, whole multiples of the sample interval.
        shuffle: random block order and pair order (seeded by ``seed`` and :meth:`set_epoch`).
        buffer_blocks: blocks mixed together in the shuffle buffer.
        rotate: apply a random rotation or reflection to each pair (positions, momenta, cell,
            forces, stress).
        time_reversal: with probability 1/2 return the reversed pair ((q', -p') -> (q, -p)).
        rank, world_size: this process's share of blocks under DistributedDataParallel.
        pairs_per_block: when shuffling, take at most this many pairs (a random subset, new each
            epoch) from each block. A block (one chunk of one trajectory) holds thousands of
            pairs, so without it a stretch of training sees only the few trajectories in the
            shuffle buffer; with it every trajectory comes round within ``len(self)`` pairs.
            None: every pair.
        unroll: further strides whose targets every item carries (``unroll_positions`` and
            ``unroll_momenta``, (A, unroll, 3): the states ``2k, ..., (1 + unroll) k`` after
            ``t``, reversed along with the pair); a pair exists only when all of them do.
        frame_fraction: use only the first ``ceil(frame_fraction * n_frames)`` frames of each
            trajectory of the first location (the base store), origins and targets alike
            (learning curves on scarce data); extra stores' trajectories (reference
            continuations, each only as long as the longest stride plus a tail) are used whole.
    """

    def __init__(
        self,
        location: str | os.PathLike | Sequence[str | os.PathLike],
        traj_ids: Sequence[str] | Sequence[Sequence[str]],
        strides_fs: Sequence[float],
        shuffle: bool = True,
        buffer_blocks: int = 8,
        rotate: bool = False,
        time_reversal: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pairs_per_block: int | None = None,
        unroll: int = 0,
        frame_fraction: float = 1.0,
    ):
        super().__init__()
        if not 0 < frame_fraction <= 1:
            raise ValueError(f"frame_fraction must be in (0, 1], got {frame_fraction}")
        self.frame_fraction = frame_fraction
        if pairs_per_block is not None and pairs_per_block < 1:
            raise ValueError(f"pairs_per_block must be at least 1, got {pairs_per_block}")
        if unroll < 0:
            raise ValueError(f"unroll must be at least 0, got {unroll}")
        self.unroll = unroll
        self.pairs_per_block = pairs_per_block
        self.locations, self.source_ids = _sources(location, traj_ids)
        self.location = self.locations[0]
        self.traj_ids = [traj_id for ids in self.source_ids for traj_id in ids]
        if not self.traj_ids:
            raise ValueError("StridePairs needs at least one trajectory")
        stores = {  # sources with trajectories, by number
            source: TrajectoryStore.open(self.locations[source])
            for source, ids in enumerate(self.source_ids)
            if ids
        }
        self.steps = _steps(self._shared_interval(stores), strides_fs)
        #: frames from a pair's origin to its last target, per stride
        self.span = {stride: k * (1 + unroll) for stride, k in self.steps.items()}
        self.lookahead = max(self.span.values())
        self.blocks = self._blocks(stores)
        if not self.blocks:
            raise ValueError(f"trajectories {self.traj_ids} are shorter than the longest stride")
        self.with_forces = all(
            store[t].has_forces for source, store in stores.items() for t in self.source_ids[source]
        )
        #: whether any trajectory has stress; items of those without carry a NaN stress
        self.with_stress = any(
            store[t].has_stress for source, store in stores.items() for t in self.source_ids[source]
        )
        self.shuffle, self.buffer_blocks = shuffle, buffer_blocks
        self.rotate, self.time_reversal = rotate, time_reversal
        self.seed, self.epoch, self.skip_batches, self.batch_size = seed, 0, 0, 1
        self.rank, self.world_size = rank, world_size
        self._stores: dict[int, TrajectoryStore] = {}  # by source, opened lazily in each worker

    def _shared_interval(self, stores: dict[int, TrajectoryStore]) -> float:
        """The sample interval (fs) of every trajectory of every source (the first source with
        trajectories is the reference)."""
        reference: tuple[str, float] | None = None
        for source, store in stores.items():
            where = self.locations[source]
            interval = sample_interval(store, self.source_ids[source])
            if reference is None:
                reference = (where, interval)
            elif not math.isclose(interval, reference[1], rel_tol=1e-9):
                raise ValueError(
                    f"store {where} has sample interval {interval} fs but {reference[0]} has "
                    f"{reference[1]} fs; an extra store's sample interval must equal the base "
                    "store's"
                )
        assert reference is not None
        return reference[1]

    def _blocks(self, stores: dict[int, TrajectoryStore]) -> list[Block]:
        blocks = []
        self._n_frames: dict[tuple[int, str], int] = {}
        for source, store in stores.items():
            for traj_id in self.source_ids[source]:
                reader = store[traj_id]
                fraction = self.frame_fraction if source == 0 else 1.0
                n_frames = math.ceil(fraction * reader.n_frames)
                self._n_frames[source, traj_id] = n_frames
                last_origin = n_frames - min(self.span.values())
                for start in range(0, last_origin, reader.chunk_frames):
                    stop = min(start + reader.chunk_frames, last_origin)
                    blocks.append(Block(traj_id, start, stop, source))
        return blocks

    def _open(self, source: int) -> TrajectoryStore:
        """The store of ``source``, opened on first use (once per loader worker process)."""
        if source not in self._stores:
            self._stores[source] = TrajectoryStore.open(self.locations[source])
        return self._stores[source]

    def __len__(self) -> int:
        """Pairs per epoch over all ranks (a pair exists when its target frame exists)."""
        return sum(self._taken(self._count_pairs(block)) for block in self.blocks)

    def _taken(self, n_pairs: int) -> int:
        """Pairs taken from a block that holds ``n_pairs``."""
        if self.pairs_per_block is None or not self.shuffle:
            return n_pairs
        return min(n_pairs, self.pairs_per_block)

    def _selection(self, block: Block, rng: np.random.Generator) -> np.ndarray | None:
        """Indices of the block's pairs taken this epoch (None: all), drawn from ``rng``."""
        n_pairs = self._count_pairs(block)
        taken = self._taken(n_pairs)
        if taken == n_pairs:
            return None
        return np.sort(rng.choice(n_pairs, size=taken, replace=False))

    def set_epoch(self, epoch: int, skip_batches: int = 0, batch_size: int = 1) -> None:
        """Change the shuffle of the next iteration (once per epoch, like DistributedSampler).

        ``skip_batches`` loader batches of ``batch_size`` items are skipped cheaply (no tensors
        are built), so a resumed run continues the epoch exactly where it stopped.
        """
        self.epoch, self.skip_batches, self.batch_size = epoch, skip_batches, batch_size

    def _items_to_skip(self, worker: int, n_workers: int) -> int:
        # A DataLoader takes batch j from worker j % n_workers, so of the first skip_batches
        # batches this worker made ceil((skip_batches - worker) / n_workers).
        mine = max(0, -(-(self.skip_batches - worker) // n_workers))
        return mine * self.batch_size

    def _my_blocks(self, rng: np.random.Generator) -> list[Block]:
        order = rng.permutation(len(self.blocks)) if self.shuffle else np.arange(len(self.blocks))
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        share = self.rank * n_workers + worker
        return [self.blocks[i] for i in order[share :: self.world_size * n_workers]]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, self.epoch])  # block order: same on every rank
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        item_rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        skip = self._items_to_skip(worker, n_workers)
        blocks = self._my_blocks(rng)
        for position in range(0, len(blocks), self.buffer_blocks):
            group = blocks[position : position + self.buffer_blocks]
            selections = [self._selection(block, item_rng) for block in group]
            n_pairs = sum(self._taken(self._count_pairs(block)) for block in group)
            if skip >= n_pairs:  # skip the whole group without reading it
                order = item_rng.permutation(n_pairs) if self.shuffle else range(n_pairs)
                for _ in order:
                    self._augmentation(item_rng)
                skip -= n_pairs
                continue
            buffer = [
                pair
                for block, chosen in zip(group, selections, strict=True)
                for pair in _subset(self._pairs(block), chosen)
            ]
            order = item_rng.permutation(len(buffer)) if self.shuffle else range(len(buffer))
            for i in order:
                augmentation = self._augmentation(item_rng)
                if skip:
                    skip -= 1
                    continue
                yield self._item(*buffer[i], *augmentation)

    def _count_pairs(self, block: Block) -> int:
        """Pairs :meth:`_pairs` would return for ``block``, without reading it."""
        n_frames = self._n_frames[block.source, block.traj_id]
        return sum(max(0, min(block.stop, n_frames - k) - block.start) for k in self.span.values())

    def _pairs(self, block: Block) -> list[tuple[dict, int, float]]:
        reader = self._open(block.source)[block.traj_id]
        n_frames = self._n_frames[block.source, block.traj_id]
        stop = min(n_frames, block.stop + self.lookahead)
        frames = reader.read(
            block.start,
            stop,
            keys=tuple(
                k
                for k in _FRAME_KEYS
                if (k != "forces" or self.with_forces) and (k != "stress" or reader.has_stress)
            ),
        )
        frames["masses"], frames["numbers"] = reader.masses, reader.numbers
        frames["pbc"] = np.asarray(reader.attrs.get("pbc", [True] * 3), dtype=bool)
        pairs = []
        for stride, k in self.span.items():
            for t in range(0, min(block.stop, n_frames - k) - block.start):
                pairs.append((frames, t, stride))
        return pairs

    def _augmentation(self, rng: np.random.Generator) -> tuple[bool, np.ndarray | None]:
        """(reverse the pair?, rotation or None), drawn for every item, skipped ones too."""
        reverse = bool(self.time_reversal and rng.random() < 0.5)
        return reverse, random_orthogonal(rng) if self.rotate else None

    def _item(
        self, frames: dict, t: int, stride: float, reverse: bool, rotation: np.ndarray | None
    ) -> dict[str, torch.Tensor]:
        k = self.steps[stride]
        order = [t + j * k for j in range(self.unroll + 2)]  # origin, target, unrolled targets
        sign = 1.0
        if reverse:  # ((q', -p') -> (q, -p)), and so on back along the sequence
            order, sign = order[::-1], -1.0
        origin = order[0]
        item = {
            keys.POSITIONS: frames["positions"][origin],
            keys.MOMENTA: sign * frames["momenta"][origin],
            keys.TARGET_POSITIONS: frames["positions"][order[1]],
            keys.TARGET_MOMENTA: sign * frames["momenta"][order[1]],
            keys.CELL: frames["cell"][origin][None],
        }
        if self.unroll:
            later = order[2:]
            item[keys.UNROLL_POSITIONS] = frames["positions"][later].transpose(1, 0, 2)
            item[keys.UNROLL_MOMENTA] = sign * frames["momenta"][later].transpose(1, 0, 2)
        if self.with_forces:
            item[keys.FORCES] = frames["forces"][origin]
        if self.with_stress:
            unknown = np.full((1, 3, 3), np.nan)
            item[keys.STRESS] = frames["stress"][origin][None] if "stress" in frames else unknown
        if rotation is not None:  # vectors v -> R v; the stress, a tensor, -> R σ Rᵀ
            item = {name: value @ rotation.T for name, value in item.items()}
            if self.with_stress:
                item[keys.STRESS] = rotation @ item[keys.STRESS]
        n = len(frames["numbers"])
        out = {
            name: torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float64)
            for name, v in item.items()
        }
        out.update(
            {
                keys.MASSES: torch.as_tensor(frames["masses"], dtype=torch.float64),
                keys.NUMBERS: torch.as_tensor(frames["numbers"], dtype=torch.long),
                keys.SYSTEM: torch.zeros(n, dtype=torch.long),
                keys.N_ATOMS: torch.tensor([n]),
                keys.PBC: torch.as_tensor(frames["pbc"])[None],
                keys.STRIDE: torch.tensor([stride], dtype=torch.float64),
                keys.ENERGY: torch.tensor([frames["energy"][origin]], dtype=torch.float64),
            }
        )
        return out
