"""Claims: which process is writing which trajectory of a shared store.

Two ``flashmd generate`` processes on one store (a job array whose shards overlap, a command
started twice) used to compute every trajectory twice. A writer now claims a trajectory before
it starts: a small JSON file ``claims/<trajectory id>.json`` at the store's root (outside the
Zarr hierarchy, so readers never see it) holding the writer's name and a heartbeat time. Others
skip a trajectory with a fresh claim. The writer refreshes its heartbeat at every commit and
deletes the claim when it stops; a writer killed with ``kill -9`` leaves its claim behind. Such
a claim counts as expired at once on the machine that wrote it (its process is gone), and
elsewhere ``ttl_s`` seconds after its last heartbeat; then anyone may take the trajectory over.

Creating the file is atomic on local stores (exclusive create); on object stores it is best
effort (the claim is read back to see who won). A lost race costs duplicated work, never data:
both writers write the same deterministic frames.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

#: Folder of the claim files, at the store's root.
CLAIMS = "claims"
#: Seconds after its last heartbeat when a claim counts as left by a dead writer: ten commit
#: intervals (a live writer commits at least every minute, see ``store.COMMIT_INTERVAL_S``).
CLAIM_TTL_S = 600.0


def writer_name() -> str:
    """This process, as a claim names it: host, process id and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Claim:
    """A held claim on one trajectory; :meth:`refresh` it while writing, :meth:`release` it
    when done (a ``with`` block does)."""

    store: Store
    key: str
    owner: str

    def refresh(self) -> None:
        """Renew the heartbeat."""
        sync(self.store.set(self.key, _encode(self.owner)))

    def release(self) -> None:
        """Delete the claim if it is still this writer's."""
        held = _read(self.store, self.key)
        if held is not None and held.get("owner") == self.owner:
            sync(self.store.delete(self.key))

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def claim(store: Store, prefix: str, traj_id: str, ttl_s: float = CLAIM_TTL_S) -> Claim | str:
    """Claim ``traj_id`` in the store under ``prefix`` (the root group's path).

    Returns:
        The :class:`Claim`, or, when another writer holds a fresh claim, its name.
    """
    key = "/".join(part for part in (prefix, CLAIMS, f"{traj_id}.json") if part)
    owner = writer_name()
    held = _read(store, key)
    if held is not None:
        fresh = time.time() - float(held.get("heartbeat", 0.0)) < ttl_s
        if fresh and _may_be_alive(str(held.get("owner", ""))):
            return str(held.get("owner", "another writer"))
        sync(store.delete(key))  # left by a writer that died
    sync(store.set_if_not_exists(key, _encode(owner)))
    held = _read(store, key)
    if held is None or held.get("owner") != owner:
        return str((held or {}).get("owner", "another writer"))
    return Claim(store, key, owner)


def _may_be_alive(owner: str) -> bool:
    """False when ``owner`` ran on this machine and its process is gone; True otherwise (a
    writer on another machine cannot be asked: its heartbeat decides)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _encode(owner: str):
    text = json.dumps({"owner": owner, "heartbeat": time.time()})
    return default_buffer_prototype().buffer.from_bytes(text.encode())


def _read(store: Store, key: str) -> dict | None:
    found = sync(store.get(key, prototype=default_buffer_prototype()))
    if found is None:
        return None
    try:
        return json.loads(found.to_bytes())
    except ValueError:  # half written by a killed writer
        return {"owner": "unknown", "heartbeat": 0.0}
