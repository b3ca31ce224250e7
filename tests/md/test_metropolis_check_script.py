"""``scripts/metropolis_check.py``: its phase trace shows a melt that froze as a step."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from tests.conftest import load_script

pytest.importorskip("asap3")
metropolis_check = load_script("metropolis_check")


def test_phase_trace_shows_the_block_where_a_melt_froze():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    rng = np.random.default_rng(0)
    melt = rng.uniform(0, 7.22, (8, len(atoms), 3))
    crystal = atoms.positions + rng.normal(0, 0.05, (8, len(atoms), 3))
    positions = np.concatenate([melt, crystal])
    energy = np.concatenate([np.full(8, -3.76), np.full(8, -3.88)]) * len(atoms)
    series = metropolis_check.Series("chain", energy, positions, seconds=1.0)
    row = metropolis_check.phase_trace(series, atoms, blocks=4).split(" | ")
    assert row[0] == "chain"
    values = [cell.split() for cell in row[1:]]
    assert [float(v) for v, _ in values] == [-3760.0, -3760.0, -3880.0, -3880.0]
    crystalline = [float(f.strip("()")) for _, f in values]
    assert max(crystalline[:2]) < 0.2 and min(crystalline[2:]) == 1.0
