"""How many CPU threads torch uses: the cores that are free, unless the user says.

torch starts one thread per core. On a machine whose cores other processes already keep busy
(a laptop running a notebook, a shared node, two flashmd jobs side by side) those threads wait
on each other: on a loaded 2-core machine, ``flashmd md`` ran 12x slower and a tiny training
6-13x slower with torch's default than with one thread. So the default is the cores this
process may use minus those the one-minute load average shows busy, at least one. ``--threads``
or ``OMP_NUM_THREADS`` override it; the choice is made once per process.
"""

from __future__ import annotations

import os

import torch

_chosen: tuple[int, str] | None = None


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def free_cores() -> int:
    """Usable cores minus the busy ones (one-minute load average, rounded), at least one."""
    cores = usable_cores()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this OS
        busy = 0.0
    return max(1, min(cores, cores - int(busy + 0.5)))


def configure_threads(requested: int | None = None) -> tuple[int, str]:
    """Set torch's CPU threads and return ``(threads, why)``: ``requested`` (``--threads``) when
    given, else ``OMP_NUM_THREADS`` when set, else :func:`free_cores`. Without ``requested``, a
    process that already chose keeps its choice (runs compared bit for bit within one process
    must not change their float order between them)."""
    global _chosen
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be at least 1, got {requested}")
        _chosen = (int(requested), "--threads")
    elif _chosen is None:
        from_environment = os.environ.get("OMP_NUM_THREADS", "").strip()
        if from_environment.isdigit() and int(from_environment) > 0:
            _chosen = (int(from_environment), "OMP_NUM_THREADS")
        else:
            _chosen = (free_cores(), "free cores")
    torch.set_num_threads(_chosen[0])
    return _chosen
