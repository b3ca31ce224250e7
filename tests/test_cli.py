"""The command line end to end on tiny inputs, and its errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from flashmd.cli import EXIT_BROKEN_PIPE, EXIT_USAGE, main

REPO = Path(__file__).resolve().parents[1]


def tiny_recipe_file(tmp_path: Path) -> Path:
    data = yaml.safe_load((REPO / "data" / "al-emt-tiny.yaml").read_text())
    data.update(production_fs=40, equilibration_fs=20)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_generate_then_inspect(tmp_path, capsys):
    store = tmp_path / "s.zarr"
    assert (
        main(
            [
                "generate",
                str(tiny_recipe_file(tmp_path)),
                "-o",
                str(store),
                "--quiet",
                "--workers",
                "2",
            ]
        )
        == 0
    )
    assert "44 frames written" in capsys.readouterr().out
    assert main(["inspect", str(store)]) == 0
    out = capsys.readouterr().out
    assert "00000_al-fcc_600K_r0" in out and "asap3-emt" in out and "complete" in out
    assert "compression" in out and "4 (4 complete), 44 frames" in out
    assert "MSD (Å²)" in out and "a liquid's grows with time" in out
    # the crystal at 600 K stays crystalline from its first frame to its last
    first, last = map(int, re.search(r"00000_al-fcc_600K_r0 .* (\d+) → (\d+) %", out).groups())
    assert "crystalline" in out and first >= 90 and last >= 90


def test_errors_are_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntimestep_fs: 0\n")
    assert main(["generate", str(bad), "-o", str(tmp_path / "s.zarr")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "timestep_fs: Input should be greater than 0" in err and "Traceback" not in err
    assert main(["inspect", str(tmp_path / "nothing.zarr")]) == EXIT_USAGE
    assert "no Zarr store" in capsys.readouterr().err
    assert (
        main(
            [
                "generate",
                str(tiny_recipe_file(tmp_path)),
                "-o",
                str(tmp_path / "o.zarr"),
                "--shard",
                "5/2",
            ]
        )
        == EXIT_USAGE
    )
    assert "0 <= I < N" in capsys.readouterr().err


def test_output_into_a_closed_pipe_ends_quietly():
    """`flashmd models | head -0`: the reader is gone before the table is written; the command
    exits 141 like shell tools, with no traceback and no "Exception ignored" on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE, deterministically
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from flashmd.cli import main; sys.exit(main(['models']))",
            ],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == EXIT_BROKEN_PIPE
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
