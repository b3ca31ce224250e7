"""``scripts/symplectic_precision.py``: NVE blocks of symplectic strides in a chosen precision."""

from __future__ import annotations

import math

from tests.conftest import load_script
from tests.md.md_testkit import crystal, thermal, tiny_model

symplectic_precision = load_script("symplectic_precision")


def test_midpoint_rule_in_float64_keeps_the_energy_models_total_energy():
    """The implicit midpoint rule on the energy model, solved to 1e-9 Å in float64, holds K + V
    (a symplectic map's energy error stays bounded), while the atoms do move energy between K
    and V; one row per block."""
    atoms = thermal(crystal((2, 1, 1)), seed=3, temperature_K=600.0)
    rows = symplectic_precision.nve_blocks(
        tiny_model(), atoms, "midpoint", tolerance_A=1e-9, stride_fs=16.0, strides=12, block=4
    )
    assert [done for done, _, _ in rows] == [4, 8, 12]
    temperatures = [t for _, t, _ in rows]
    assert all(math.isfinite(t) and t > 0 for t in temperatures)
    assert max(temperatures) - min(temperatures) > 1.0  # not frozen: K and V exchange
    assert all(abs(shift) < 0.5 for _, _, shift in rows)  # meV/atom
