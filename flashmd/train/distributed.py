"""Process-group setup for single-process and ``torchrun`` training.

Under ``torchrun`` the environment holds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; each process
then uses ``cuda:LOCAL_RANK`` with NCCL when CUDA is available, else the CPU with gloo.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process runs and its place in the process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def choose_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA (this process's local GPU) when available, else CPU."""
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available here")
    return device


def setup(preference: str = "auto") -> DistInfo:
    """Join the ``torchrun`` process group when there is one; otherwise a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        else:
            _pin_gloo_to_loopback(os.environ.get("MASTER_ADDR", ""))
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, device)


def loopback_interface() -> str | None:
    """Name of this machine's loopback network interface (``lo`` on Linux, ``lo0`` on macOS)."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    return next((name for name in ("lo", "lo0") if name in names), None)


def _pin_gloo_to_loopback(master_addr: str) -> None:
    """Make gloo talk over loopback when every rank is on this machine.

    gloo binds to the address the host name resolves to; on containers and sandboxes that address
    can be unreachable, and the ranks then wait for each other until the 30-minute timeout. A
    ``GLOO_SOCKET_IFNAME`` the user set is kept.
    """
    if "GLOO_SOCKET_IFNAME" in os.environ or not _is_loopback(master_addr):
        return
    interface = loopback_interface()
    if interface is not None:
        os.environ["GLOO_SOCKET_IFNAME"] = interface


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def teardown(info: DistInfo, wait_for_peers: bool = True) -> None:
    """Leave the process group, by default once every rank has arrived here.

    Without the wait, a rank that finished first could destroy the group while a peer still held
    its DistributedDataParallel wrapper, and the peer then hung at exit in that wrapper's
    destructor (2 of 4 two-rank CPU test runs; none in 10 with the wait alone). A rank
    leaving on an error passes ``wait_for_peers=False``: its peers may be blocked in a collective
    that it will never join, and waiting for them would turn the error into a hang.
    """
    if info.distributed and dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        dist.destroy_process_group()
