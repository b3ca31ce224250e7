"""``scripts/stress_test.py``: rollouts of a recipe's systems per model and temperature, one
row per system with its closest approach, overlaps, Lindemann index and redone strides."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[2]
stress_test = load_script("stress_test")


def test_one_row_per_system_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    argv = [
        "stress_test",
        "emt=emt-metals",
        "--recipe",
        str(REPO / "data" / "sevennet-cuau-stress.yaml"),
        "--temperatures",
        "1500",
        "--strides",
        "4",
        "--out",
        str(tmp_path),
        "--overlap-A",
        "2.2",  # above Cu's closest approach at 1500 K: some frames must overlap
    ]
    monkeypatch.setattr(sys, "argv", argv)
    stress_test.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| emt")]
    names = [row.split(" | ")[2] for row in rows]
    assert names == [
        "Cu-compressed-86",
        "Au-compressed-86",
        "Cu3Au-compressed-91",
        "Cu-108",
        "Au111-slab",
    ]
    assert all(row.endswith("| yes |") for row in rows)
    overlapping = [int(row.split(" | ")[4].split("/")[0]) for row in rows]
    assert overlapping[0] > 0 and all(row.split(" | ")[4].endswith("/5") for row in rows)
    stress_test.main()  # the finished rollouts are read again, not rerun
    assert capsys.readouterr().out.count("| emt |") == 5
