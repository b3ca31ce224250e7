"""The Zarr trajectory store (schema version 1).

One store holds many trajectories; each is a group under ``trajectories/`` written by exactly one
writer. Layout, units and attributes are described in ``data/README.md`` and ``DESIGN.md``::

    STORE.zarr/                 attrs: format, schema_version, units, recipe, recipe_sha256
      trajectories/<id>/        attrs: n_frames (trusted), status, calculator, ensemble, ...
        numbers   (n_atoms,)             int64
        masses    (n_atoms,)             float64, amu
        positions (n_frames, n_atoms, 3) float64, Å, unwrapped
        momenta   (n_frames, n_atoms, 3) float64, amu·Å/ASE-time
        cell      (n_frames, 3, 3)       float64, Å
        energy    (n_frames,)            float64, eV (potential)
        forces    (n_frames, n_atoms, 3) float64, eV/Å (optional)
        stress    (n_frames, 3, 3)       float64, eV/Å³, ASE's sign (optional, periodic cells)
        time_fs   (n_frames,)            float64, fs

Crash safety: frame arrays may be allocated beyond the data (capacity). A writer first writes whole
chunks of frames, then rewrites the group attributes with the new ``n_frames``; both writes are
atomic file replacements on a local store. Readers trust ``n_frames`` only, so a process killed at
any point leaves a store whose trusted prefix is intact and from which the writer resumes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.errors
import zarr.storage
from zarr.codecs import BloscCodec
from zarr.core.group import GroupMetadata
from zarr.core.metadata import ArrayV3Metadata
from zarr.core.sync import sync

from flashmd import __version__
from flashmd.data.claims import CLAIM_TTL_S, Claim, claim
from flashmd.units import UNITS

FORMAT = "flashmd.trajectories"
SCHEMA_VERSION = 1
TRAJECTORIES = "trajectories"
#: Default seconds between commits of a writer's buffered frames (besides every full chunk): a
#: killed run loses at most this much work. Each commit rewrites the chunk it falls in, which
#: `flashmd bench storage --commit-every-s` measures.
COMMIT_INTERVAL_S = 60.0

#: Per-frame arrays: name -> (trailing shape builder, dimension names, unit).
FRAME_ARRAYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "positions": ("atom3", ("frame", "atom", "xyz")),
    "momenta": ("atom3", ("frame", "atom", "xyz")),
    "forces": ("atom3", ("frame", "atom", "xyz")),
    "cell": ("cell", ("frame", "cell_vector", "xyz")),
    "stress": ("cell", ("frame", "stress_row", "stress_column")),
    "energy": ("scalar", ("frame",)),
    "time_fs": ("scalar", ("frame",)),
}
#: CF-style attributes of every array of a trajectory (xarray shows them with the data).
ARRAY_ATTRIBUTES: dict[str, dict[str, str]] = {
    "numbers": {"long_name": "atomic number", "units": "1"},
    "masses": {"long_name": "atomic mass", "units": UNITS["masses"]},
    "positions": {"long_name": "Cartesian positions", "units": UNITS["positions"]},
    "momenta": {"long_name": "momenta", "units": UNITS["momenta"]},
    "forces": {"long_name": "forces of the reference calculator", "units": UNITS["forces"]},
    "cell": {"long_name": "cell vectors (rows)", "units": UNITS["cell"]},
    "stress": {
        "long_name": "stress of the reference calculator (ASE sign: (1/V) dE/dstrain)",
        "units": UNITS["stress"],
    },
    "energy": {"long_name": "potential energy", "units": UNITS["energy"]},
    "time_fs": {"long_name": "simulated time", "units": UNITS["time"]},
}
REQUIRED_FRAME_ARRAYS = ("positions", "momenta", "cell", "energy", "time_fs")
OPTIONAL_FRAME_ARRAYS = ("forces", "stress")

COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle", typesize=8)
TARGET_CHUNK_BYTES = 4 * 1024 * 1024


@functools.lru_cache(maxsize=16)
def _array_metadata(
    n_atoms: int, capacity: int, with_forces: bool, with_stress: bool = False
) -> dict[str, ArrayV3Metadata]:
    """Metadata of a trajectory's arrays (built once per shape in memory, then reused)."""
    scratch = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    metadata = {
        name: scratch.create_array(
            name,
            shape=(n_atoms,),
            dtype=dtype,
            dimension_names=("atom",),
            attributes=ARRAY_ATTRIBUTES[name],
        ).metadata
        for name, dtype in (("numbers", "int64"), ("masses", "float64"))
    }
    chunk = frames_per_chunk(n_atoms)
    for key, (kind, dims) in FRAME_ARRAYS.items():
        if (key == "forces" and not with_forces) or (key == "stress" and not with_stress):
            continue
        trailing = _trailing_shape(kind, n_atoms)
        metadata[key] = scratch.create_array(
            key,
            shape=(capacity, *trailing),
            chunks=(chunk, *trailing),
            dtype="float64",
            compressors=COMPRESSOR,
            fill_value=np.nan,
            dimension_names=dims,
            attributes=ARRAY_ATTRIBUTES[key],
        ).metadata
    assert all(isinstance(m, ArrayV3Metadata) for m in metadata.values())
    return metadata  # type: ignore[return-value]


class StoreError(Exception):
    """A store cannot be opened, created or written as asked; the message says what to do."""


def _trailing_shape(kind: str, n_atoms: int) -> tuple[int, ...]:
    return {"atom3": (n_atoms, 3), "cell": (3, 3), "scalar": ()}[kind]


def frames_per_chunk(n_atoms: int) -> int:
    """Frames per chunk so that a positions chunk is about 4 MiB (a power of two, 8 to 4096)."""
    frames = TARGET_CHUNK_BYTES // max(1, n_atoms * 3 * 8)
    return int(np.clip(2 ** int(np.log2(max(frames, 1))), 8, 4096))


def recipe_hash(recipe: Mapping[str, Any]) -> str:
    """SHA-256 of a recipe's canonical JSON form (key order does not matter)."""
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _is_url(location: str) -> bool:
    return "://" in location


def _describe_foreign(location: str) -> str | None:
    """Say what a local path holds when it is not a Zarr store, or None if it is usable."""
    if _is_url(location):
        return None
    path = Path(location)
    if not path.exists():
        return None
    if path.is_file():
        return f"{location} is a file, not a Zarr store directory"
    if any(path.iterdir()) and not (path / "zarr.json").exists():
        if (path / ".zgroup").exists() or (path / ".zarray").exists():
            return f"{location} is a Zarr v2 store, not a flashmd trajectory store"
        return f"{location} is a non-empty directory that is not a Zarr store"
    return None


@dataclass(frozen=True)
class TrajectoryInfo:
    """Summary of one trajectory, as shown by ``flashmd inspect``."""

    id: str
    n_atoms: int
    species: str
    n_frames: int
    temperature_K: float | None
    calculator: str
    status: str


class TrajectoryStore:
    """A flashmd trajectory store on a local path or any fsspec URL.

    Use :meth:`open` for an existing store and :meth:`create` to make (or reopen for appending) one.
    """

    def __init__(self, root: zarr.Group, location: str, writable: bool):
        self.root = root
        self.location = location
        self.writable = writable

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, location: str | os.PathLike, mode: str = "r") -> TrajectoryStore:
        """Open an existing store, validating its format and schema version.

        Args:
            location: a local directory or an fsspec URL (``memory://...``, ``s3://...``).
            mode: ``"r"`` to read, ``"a"`` to also write trajectories.

        Raises:
            StoreError: nothing is there, it is not a flashmd store, or its schema is newer.
        """
        location = os.fspath(location)
        if mode not in ("r", "a"):
            raise StoreError(f"mode must be 'r' or 'a', got {mode!r}")
        foreign = _describe_foreign(location)
        if foreign:
            raise StoreError(f"{foreign}. Give the path of a flashmd store (flashmd generate).")
        try:
            root = zarr.open_group(location, mode="r" if mode == "r" else "r+")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as error:
            raise StoreError(
                f"no Zarr store at {location}: create one with `flashmd generate RECIPE -o "
                f"{location}`"
            ) from error
        except (zarr.errors.ContainsArrayError, ValueError) as error:
            raise StoreError(f"{location} is not a flashmd trajectory store: {error}") from error
        cls._validate_root(root, location)
        return cls(root, location, writable=mode == "a")

    @classmethod
    def create(
        cls, location: str | os.PathLike, recipe: Mapping[str, Any] | None = None
    ) -> TrajectoryStore:
        """Create a store, or reopen an existing one for appending.

        An existing flashmd store is reused only if it was made from the same recipe (same hash);
        anything else already at ``location`` raises and is left untouched.
        """
        location = os.fspath(location)
        foreign = _describe_foreign(location)
        if foreign:
            raise StoreError(f"{foreign}; refusing to write there. Choose another output path.")
        recipe = dict(recipe or {})
        digest = recipe_hash(recipe)
        try:
            existing = zarr.open_group(location, mode="r+")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            existing = None
        except zarr.errors.ContainsArrayError as error:
            raise StoreError(f"{location} holds a Zarr array, not a flashmd store") from error
        if existing is not None and (dict(existing.attrs) or list(existing.keys())):
            cls._validate_root(existing, location)
            if existing.attrs.get("recipe_sha256") != digest:
                raise StoreError(
                    f"{location} already holds trajectories from a different recipe "
                    f"({existing.attrs.get('recipe', {}).get('name', '?')}, sha256 "
                    f"{str(existing.attrs.get('recipe_sha256'))[:12]}); this recipe has sha256 "
                    f"{digest[:12]}. Write to a new store; nothing was changed."
                )
            existing.require_group(TRAJECTORIES)
            return cls(existing, location, writable=True)
        root = zarr.open_group(location, mode="a")
        root.attrs.update(
            {
                "format": FORMAT,
                "schema_version": SCHEMA_VERSION,
                "flashmd_version": __version__,
                "units": UNITS,
                "recipe": recipe,
                "recipe_sha256": digest,
            }
        )
        root.require_group(TRAJECTORIES)
        return cls(root, location, writable=True)

    @staticmethod
    def _validate_root(root: zarr.Group, location: str) -> None:
        attrs = dict(root.attrs)
        fmt = attrs.get("format")
        if fmt != FORMAT:
            found = f"format={fmt!r}" if fmt else "no 'format' attribute"
            raise StoreError(
                f"{location} is a Zarr store but not a flashmd trajectory store ({found}; "
                f"expected format={FORMAT!r})"
            )
        version = attrs.get("schema_version")
        if not isinstance(version, int):
            raise StoreError(f"{location}: schema_version is missing or not an integer")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{location} uses store schema version {version}, newer than this flashmd "
                f"{__version__} reads ({SCHEMA_VERSION}); upgrade flashmd"
            )

    # ------------------------------------------------------------------ trajectories
    @property
    def _trajectories(self) -> zarr.Group:
        return self.root.require_group(TRAJECTORIES) if self.writable else self.root[TRAJECTORIES]

    @property
    def recipe(self) -> dict:
        return dict(self.root.attrs.get("recipe", {}))

    def ids(self) -> list[str]:
        """Trajectory ids, sorted."""
        if TRAJECTORIES not in self.root:
            return []
        return sorted(name for name, _ in self.root[TRAJECTORIES].groups())

    def __contains__(self, traj_id: str) -> bool:
        return traj_id in self.ids()

    def __len__(self) -> int:
        return len(self.ids())

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def __getitem__(self, traj_id: str) -> TrajectoryReader:
        if traj_id not in self.root.get(TRAJECTORIES, {}):
            raise KeyError(f"no trajectory {traj_id!r} in {self.location}; it has {self.ids()}")
        return TrajectoryReader(self.root[TRAJECTORIES][traj_id], f"{self.location}:{traj_id}")

    def claim(self, traj_id: str, ttl_s: float = CLAIM_TTL_S) -> Claim | str:
        """Claim ``traj_id`` for writing (see :mod:`flashmd.data.claims`): the claim, or the
        name of the writer that holds a fresh one."""
        if not self.writable:
            raise StoreError(f"{self.location} was opened read-only; open it with mode='a'")
        return claim(self.root.store, self.root.path, traj_id, ttl_s)

    def writer(
        self,
        traj_id: str,
        numbers: np.ndarray,
        masses: np.ndarray,
        attrs: Mapping[str, Any],
        with_forces: bool,
        capacity: int = 0,
        commit_interval_s: float | None = COMMIT_INTERVAL_S,
        with_stress: bool = False,
    ) -> TrajectoryWriter:
        """Open the writer of one trajectory: creates it, or resumes it from its trusted frames.

        Args:
            traj_id: the trajectory's group name.
            numbers: (n_atoms,) atomic numbers.
            masses: (n_atoms,) masses in amu.
            attrs: provenance attributes (calculator, ensemble, temperature_K, ...).
            with_forces: whether a forces array is stored.
            capacity: frames to allocate up front (grows as needed).
            commit_interval_s: commit buffered frames at least this often (None: per chunk).
            with_stress: whether a stress array is stored.
        """
        if not self.writable:
            raise StoreError(f"{self.location} was opened read-only; open it with mode='a'")
        group = self._trajectories
        if traj_id in group and _committed_frames(group[traj_id]) > 0:
            writer = TrajectoryWriter.resume(group[traj_id], f"{self.location}:{traj_id}", numbers)
        else:
            # No trusted frame: whatever a process killed while creating this trajectory left
            # under its name (a group without arrays, arrays without a group) holds no data.
            sync(group.store.delete_dir(f"{group.path}/{traj_id}"))
            writer = TrajectoryWriter.create(
                group,
                traj_id,
                np.asarray(numbers),
                np.asarray(masses),
                attrs,
                with_forces,
                capacity,
                with_stress,
            )
        writer.commit_interval_s = commit_interval_s
        return writer

    def info(self) -> list[TrajectoryInfo]:
        """One :class:`TrajectoryInfo` per trajectory."""
        rows = []
        for traj_id in self.ids():
            reader = self[traj_id]
            calc = reader.attrs.get("calculator", {})
            rows.append(
                TrajectoryInfo(
                    id=traj_id,
                    n_atoms=reader.n_atoms,
                    species=reader.formula,
                    n_frames=reader.n_frames,
                    temperature_K=reader.attrs.get("temperature_K"),
                    calculator=calc.get("name", "?") if isinstance(calc, dict) else str(calc),
                    status=reader.status,
                )
            )
        return rows

    def nbytes(self) -> tuple[int, int]:
        """(logical bytes of all arrays, bytes stored after compression)."""
        logical = stored = 0
        for traj_id in self.ids():
            for _, array in self.root[TRAJECTORIES][traj_id].arrays():
                logical += array.nbytes
                stored += array.nbytes_stored()
        return logical, stored


class TrajectoryReader:
    """Lazy read access to one trajectory: only the chunks holding requested frames are read."""

    def __init__(self, group: zarr.Group, name: str):
        self.group = group
        self.name = name
        self.attrs: dict[str, Any] = dict(group.attrs)
        self._validate()

    def _validate(self) -> None:
        names = dict(self.group.arrays())
        for required in ("numbers", "masses", *REQUIRED_FRAME_ARRAYS):
            if required not in names:
                raise StoreError(f"{self.name}: array {required!r} is missing")
        n_atoms = names["numbers"].shape[0]
        if names["masses"].shape != (n_atoms,):
            raise StoreError(
                f"{self.name}: masses has shape {names['masses'].shape}, expected ({n_atoms},)"
            )
        if not np.issubdtype(names["numbers"].dtype, np.integer):
            raise StoreError(
                f"{self.name}: numbers has dtype {names['numbers'].dtype}, expected int"
            )
        n_frames = self.attrs.get("n_frames")
        if not isinstance(n_frames, int) or n_frames < 0:
            raise StoreError(
                f"{self.name}: attribute n_frames is missing or invalid ({n_frames!r})"
            )
        for key in (*REQUIRED_FRAME_ARRAYS, *OPTIONAL_FRAME_ARRAYS):
            if key not in names:
                continue
            array = names[key]
            expected = _trailing_shape(FRAME_ARRAYS[key][0], n_atoms)
            if array.shape[1:] != expected:
                raise StoreError(
                    f"{self.name}: {key} has shape {array.shape}, expected (frames, "
                    f"{', '.join(map(str, expected))}) for {n_atoms} atoms"
                )
            if array.shape[0] < n_frames:
                raise StoreError(
                    f"{self.name}: {key} is truncated: it holds {array.shape[0]} frames but the "
                    f"trajectory records {n_frames}. The store was damaged after writing; "
                    f"regenerate this trajectory (delete its group and rerun flashmd generate)."
                )
            if array.dtype != np.float64:
                raise StoreError(f"{self.name}: {key} has dtype {array.dtype}, expected float64")

    @property
    def n_frames(self) -> int:
        """Frames that are trusted (committed)."""
        return int(self.attrs["n_frames"])

    @property
    def n_atoms(self) -> int:
        return int(self.group["numbers"].shape[0])

    @property
    def status(self) -> str:
        return str(self.attrs.get("status", "partial"))

    @property
    def numbers(self) -> np.ndarray:
        """(n_atoms,) atomic numbers."""
        return np.asarray(self.group["numbers"][:])

    @property
    def masses(self) -> np.ndarray:
        """(n_atoms,) masses in amu."""
        return np.asarray(self.group["masses"][:])

    @property
    def formula(self) -> str:
        from ase.symbols import Symbols

        return str(Symbols(self.numbers).get_chemical_formula(mode="metal"))

    @property
    def has_forces(self) -> bool:
        return "forces" in self.group

    @property
    def has_stress(self) -> bool:
        return "stress" in self.group

    @property
    def chunk_frames(self) -> int:
        return int(self.group["positions"].chunks[0])

    def read(
        self,
        start: int = 0,
        stop: int | None = None,
        keys: tuple[str, ...] | None = None,
    ) -> dict[str, np.ndarray]:
        """Frames ``start:stop`` of the frame arrays (default: all stored ones), as NumPy arrays.

        Only the chunks that hold those frames are read. Indices beyond the trusted frames raise.
        """
        stop = self.n_frames if stop is None else stop
        if not 0 <= start <= stop <= self.n_frames:
            raise IndexError(f"{self.name}: frames {start}:{stop} outside 0:{self.n_frames}")
        keys = keys or tuple(k for k in FRAME_ARRAYS if k in self.group)
        return {key: np.asarray(self.group[key][start:stop]) for key in keys}

    def frame(self, index: int) -> dict[str, np.ndarray]:
        """One frame (negative indices count from the last trusted frame)."""
        index = index + self.n_frames if index < 0 else index
        return {key: value[0] for key, value in self.read(index, index + 1).items()}

    def to_atoms(self, index: int = -1):
        """Frame ``index`` as an ``ase.Atoms`` with positions, momenta and cell set."""
        from ase import Atoms

        frame = self.frame(index)
        atoms = Atoms(
            numbers=self.numbers,
            positions=frame["positions"],
            cell=frame["cell"],
            pbc=self.attrs.get("pbc", True),
            masses=self.masses,
        )
        atoms.set_momenta(frame["momenta"])
        return atoms


def _committed_frames(node: zarr.Group | zarr.Array) -> int:
    """Trusted frames of a trajectory node (0 when it has no valid ``n_frames``)."""
    value = node.attrs.get("n_frames", 0)
    return value if isinstance(value, int) and isinstance(node, zarr.Group) else 0


def _remove_partial_files(group: zarr.Group) -> None:
    """Delete temporary files a killed writer left behind in a local store (never data files)."""
    store = group.store
    if isinstance(store, zarr.storage.LocalStore):
        for stray in (Path(store.root) / group.path).rglob("*.partial"):
            stray.unlink(missing_ok=True)


class TrajectoryWriter:
    """Appends frames to one trajectory in whole chunks and commits ``n_frames`` last.

    Frames are buffered in memory and written when a chunk is full (each chunk is written once in
    the common case), when ``commit_interval_s`` seconds have passed since the last commit (so a
    killed slow run loses at most that much work; None: by chunk only), on :meth:`flush`, and on
    :meth:`close`. ``commit_attrs`` passed to :meth:`append` (e.g. the RNG state needed to
    resume) are committed together with the frames; the callables in ``before_commit`` run first
    (a caller's own per-frame arrays, written before the count that makes them trusted).
    """

    def __init__(self, group: zarr.Group, name: str):
        self.group = group
        self.name = name
        #: Seconds between commits besides full chunks (None: per chunk only); set by
        #: :meth:`TrajectoryStore.writer`.
        self.commit_interval_s: float | None = COMMIT_INTERVAL_S
        self.before_commit: list[Callable[[], None]] = []
        self._last_commit = time.monotonic()
        #: Frames appended so far (committed plus buffered): where the next frame goes.
        self.n_frames = int(group.attrs.get("n_frames", 0))
        # MD frames are never all fill value: skip zarr's per-chunk emptiness check
        self._arrays = {
            key: array.with_config({"write_empty_chunks": True})
            for key, array in group.arrays()
            if key in FRAME_ARRAYS
        }
        self.keys = tuple(k for k in FRAME_ARRAYS if k in self._arrays)
        self.chunk = int(self._arrays["positions"].chunks[0])
        self._capacity = int(self._arrays["positions"].shape[0])
        self._buffer: dict[str, list[np.ndarray]] = {k: [] for k in self.keys}
        self._pending_attrs: dict[str, Any] = {}
        self._status = str(group.attrs.get("status", "partial"))

    @classmethod
    def create(
        cls,
        parent: zarr.Group,
        traj_id: str,
        numbers: np.ndarray,
        masses: np.ndarray,
        attrs: Mapping[str, Any],
        with_forces: bool,
        capacity: int,
        with_stress: bool = False,
    ) -> TrajectoryWriter:
        n_atoms = int(numbers.shape[0])
        if masses.shape != (n_atoms,):
            raise StoreError(f"masses has shape {masses.shape}, expected ({n_atoms},)")
        path = f"{parent.path}/{traj_id}".lstrip("/")
        group_metadata = GroupMetadata(
            attributes={**dict(attrs), "n_frames": 0, "status": "partial"}
        )
        arrays = _array_metadata(n_atoms, max(int(capacity), 0), with_forces, with_stress)
        nodes = {path: group_metadata, **{f"{path}/{k}": meta for k, meta in arrays.items()}}
        # all metadata documents written concurrently (one group, eight arrays)
        for _ in zarr.create_hierarchy(store=parent.store, nodes=nodes):
            pass
        group = parent[traj_id]
        assert isinstance(group, zarr.Group)
        group["numbers"][:] = numbers.astype(np.int64)
        group["masses"][:] = masses.astype(np.float64)
        return cls(group, f"{parent.path}/{traj_id}")

    @classmethod
    def resume(cls, group: zarr.Group, name: str, numbers: np.ndarray) -> TrajectoryWriter:
        reader = TrajectoryReader(group, name)  # validates
        _remove_partial_files(group)
        if not np.array_equal(reader.numbers, np.asarray(numbers)):
            raise StoreError(
                f"{name} exists with different atoms ({reader.formula}); refusing to append. "
                "Use a new store or trajectory id."
            )
        return cls(group, name)

    @property
    def status(self) -> str:
        return self._status

    def append(
        self, frame: Mapping[str, np.ndarray | float], commit_attrs: Mapping[str, Any] | None = None
    ) -> None:
        """Buffer one frame (a mapping with every stored key); writes a chunk when one is full.

        ``commit_attrs`` are stored with the frame count when this frame is committed.
        """
        if self._status == "complete":
            raise StoreError(f"{self.name} is complete; it takes no more frames")
        for key in self.keys:
            self._buffer[key].append(np.array(frame[key], dtype=np.float64))
        if commit_attrs:
            self._pending_attrs.update(commit_attrs)
        self.n_frames += 1
        if self.n_frames % self.chunk == 0 or self._commit_due():
            self.flush()

    def _commit_due(self) -> bool:
        interval = self.commit_interval_s
        return interval is not None and time.monotonic() - self._last_commit >= interval

    def flush(self) -> None:
        """Write buffered frames, then commit their count: a crash at any point leaves only fully
        written frames trusted.

        Writes are synchronous on purpose: a writer thread competes with the MD loop for the GIL
        and slowed asap3 EMT steps by half, far more than the writes cost.
        """
        buffered = len(self._buffer[self.keys[0]])
        if buffered:
            for hook in self.before_commit:
                hook()
            block = {key: np.stack(frames) for key, frames in self._buffer.items()}
            for frames in self._buffer.values():
                frames.clear()
            start = self.n_frames - buffered
            attrs, self._pending_attrs = {**self._pending_attrs, "n_frames": self.n_frames}, {}
            self._write_block(start, block, attrs)
        self._last_commit = time.monotonic()

    def commit_attrs(
        self, make_attrs: Callable[[], Mapping[str, Any]], when_due: bool = False
    ) -> bool:
        """Store ``make_attrs()`` (state between frames, such as an equilibration's checkpoint)
        now, or with ``when_due`` only when a time-based commit is due; returns whether it did."""
        if when_due and not self._commit_due():
            return False
        for hook in self.before_commit:
            hook()
        self.group.attrs.update(dict(make_attrs()))
        self._last_commit = time.monotonic()
        return True

    def _write_block(self, start: int, block: dict[str, np.ndarray], attrs: dict) -> None:
        stop = start + len(block[self.keys[0]])
        if stop > self._capacity:
            self._capacity = max(stop, 2 * self._capacity, self.chunk)
            for array in self._arrays.values():
                array.resize((self._capacity, *array.shape[1:]))
        for key, data in block.items():
            self._arrays[key][start:stop] = data
        self.group.attrs.update(attrs)

    def close(self, complete: bool = False, attrs: Mapping[str, Any] | None = None) -> None:
        """Flush; with ``complete`` trim the arrays to the data and mark the trajectory complete."""
        self.flush()
        if complete:
            for array in self._arrays.values():
                if array.shape[0] != self.n_frames:  # trim the capacity left over
                    array.resize((self.n_frames, *array.shape[1:]))
            self._status = "complete"
            self.group.attrs.update({**dict(attrs or {}), "status": "complete"})
        elif attrs:
            self.group.attrs.update(dict(attrs))

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Frames already buffered are valid frames: keep them even when the run stops on an error.
        self.flush()


def open_trajectory(spec: str) -> TrajectoryReader:
    """The first trajectory (in id order) of a store whose id contains a substring, named as
    ``STORE:ID_SUBSTRING`` (e.g. ``runs/heldout/reference.zarr:Cu-750``), as the scripts take it.

    Raises:
        StoreError: the store cannot be opened, or no id contains the substring (the message
            lists the ids).
    """
    location, _, part = spec.rpartition(":")
    if not location:
        raise StoreError(f"{spec!r}: give STORE:ID_SUBSTRING, e.g. runs/ref.zarr:Cu-750")
    store = TrajectoryStore.open(location)
    matches = [t for t in store.ids() if part in t]
    if not matches:
        raise StoreError(
            f"no trajectory of {location} has {part!r} in its id; its ids: {', '.join(store.ids())}"
        )
    return store[matches[0]]
