"""torch's thread count: the free cores by default, OMP_NUM_THREADS or --threads when given."""

from __future__ import annotations

import pytest
import torch

from flashmd import threads


@pytest.fixture
def fresh(monkeypatch):
    """A process that has not chosen yet, on a 4-core machine; torch's threads restored after."""
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield monkeypatch
    torch.set_num_threads(before)


@pytest.mark.parametrize("load, expected", [(0.2, 4), (1.6, 2), (2.4, 2), (3.6, 1), (9.0, 1)])
def test_the_default_leaves_the_busy_cores_alone(fresh, load, expected):
    fresh.setattr(threads.os, "getloadavg", lambda: (load, load, load))
    assert threads.configure_threads() == (expected, "free cores")
    assert torch.get_num_threads() == expected


def test_the_environment_and_the_option_override_and_the_choice_holds(fresh):
    fresh.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    fresh.setenv("OMP_NUM_THREADS", "1")
    assert threads.configure_threads() == (1, "OMP_NUM_THREADS")
    fresh.delenv("OMP_NUM_THREADS")
    assert threads.configure_threads() == (1, "OMP_NUM_THREADS")  # chosen once per process
    assert threads.configure_threads(3) == (3, "--threads") and torch.get_num_threads() == 3
    with pytest.raises(ValueError, match="at least 1"):
        threads.configure_threads(0)
