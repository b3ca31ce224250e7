"""``flashmd bench rollout`` prints a complete table on a minimal setting."""

from __future__ import annotations

import re

from flashmd.cli import main


def test_bench_rollout_table(capsys):
    assert main(["bench", "rollout", "--replicas", "1", "2", "--strides", "1"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\s+cpu\s+(\d+)\s+(\d+)\s+(-?[\d.]+)%\s+(\d+)$", out, flags=re.M)
    assert [int(r[0]) for r in rows] == [1, 2]
    assert all(float(r[1]) > 0 and 0 <= float(r[2]) <= 100 and r[3] == "0" for r in rows)
    assert re.search(r"ASE drop-in [\d.]+ ms/stride vs batched engine", out)
