"""Stop a long command cleanly when it is told to terminate, not only on Ctrl-C.

Generation, training and rollouts commit their work when a ``KeyboardInterrupt`` reaches them
(writers flush their buffered frames, the command says how to resume). A batch scheduler that
reaches a job's time limit (SLURM, PBS), ``kill PID`` and ``timeout`` send ``SIGTERM`` instead,
whose default action ends the process on the spot, losing the frames not yet committed. And a
command started in the background from a script (``nohup flashmd generate ... &``) ignores
``SIGINT`` altogether, so ``SIGTERM`` is the only signal that reaches it.
:func:`terminate_as_interrupt` turns ``SIGTERM`` into the same ``KeyboardInterrupt``; worker
processes (:mod:`flashmd.data.generate`) note it with :func:`note_termination` and stop at their
next progress report, as they do when the parent asks.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_terminated = False


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, ``SIGTERM`` raises ``KeyboardInterrupt`` in the main thread; the
    previous handler comes back afterwards. Does nothing outside the main thread (where Python
    cannot install signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _note(signum: int, frame: object) -> None:
    global _terminated
    _terminated = True


def note_termination() -> None:
    """In a worker process: from now on ``SIGTERM`` only sets a flag (:func:`terminated`), for
    the worker to stop at a point where its writes are whole."""
    signal.signal(signal.SIGTERM, _note)


def terminated() -> bool:
    """Whether this process received ``SIGTERM`` since :func:`note_termination`."""
    return _terminated
