"""``flashmd bench speed``: the table's structure on a tiny run (behaviour, not timing)."""

from __future__ import annotations

import re

import pytest

from flashmd.bench.speed import (
    bench_speed,
    check_element,
    equilibrated_crystal,
    reference_calculator,
)
from flashmd.cli import EXIT_USAGE, main
from flashmd.models.io import load_model

REFERENCE = f"{reference_calculator().name} (reference)"
TINY = {"seconds": 0.01, "repeats": 1, "equilibration_fs": 20.0, "devices": ["cpu"]}
ROW = re.compile(
    r"^\| (?P<label>.+?) +\| +(?P<step>[\d.]+) \| +(?P<rate>[\d.e+-]+) \| +(?P<ratio>[\d.]+)x \| "
    r"+(?P<vs_reference>[\d.e+-]+)x \| "
    r"+(?P<fallback>[\d.]+ %|-) \| +(?P<iterations>[\d.]+|-) \| +(?P<ps>[\d.e+-]+) \|$",
    flags=re.M,
)


def _blocks(out: str) -> dict[int, list[dict[str, str]]]:
    """Rows of each block, keyed by the atom count of its header."""
    blocks: dict[int, list[dict[str, str]]] = {}
    for part in re.split(r"^## ", out, flags=re.M)[1:]:
        atoms = int(part.split(" atoms", 1)[0])
        blocks[atoms] = [m.groupdict() for m in ROW.finditer(part)]
    return blocks


def test_table_has_every_row_for_every_size():
    out = bench_speed("al-emt", "Al", cells=(1, 2), **TINY)
    assert "model al-emt" in out and "torch threads" in out and "device cpu" in out
    blocks = _blocks(out)
    assert sorted(blocks) == [4, 32]
    for rows in blocks.values():
        labels = [(r["label"], float(r["step"])) for r in rows]
        assert labels == [
            ("flashmd (energy filter)", 16.0),
            ("flashmd (energy filter)", 32.0),
            ("flashmd (energy filter)", 64.0),
            ("VV on energy model", 2.0),
            (REFERENCE, 2.0),
        ]
        assert all(float(r["rate"]) > 0 and float(r["ps"]) > 0 for r in rows)
        assert rows[3]["ratio"] == "1.0" and rows[4]["vs_reference"] == "1"
        rate = {r["label"]: float(r["rate"]) for r in rows}
        assert float(rows[3]["vs_reference"]) == pytest.approx(
            rate["VV on energy model"] / rate[REFERENCE], rel=0.01
        )
        assert [r["fallback"] == "-" for r in rows] == [False, False, False, True, True]
        assert all(0 <= float(r["fallback"][:-2]) <= 100 for r in rows[:3])
    assert out.count("targets vs VV on energy model: 32 fs >= 10x") == 2
    assert "targets vs asap3" not in out  # the 300x target is against an MLIP reference only
    assert all(r["iterations"] == "-" for rows in blocks.values() for r in rows)


def test_equilibrated_crystal_is_thermal_and_seeded():
    reference = reference_calculator()
    first = equilibrated_crystal("Al", 2, 600.0, 40.0, reference, seed=3)
    again = equilibrated_crystal("Al", 2, 600.0, 40.0, reference, seed=3)
    assert len(first) == 32 and first.calc is None and not first.constraints
    assert (first.get_momenta() == again.get_momenta()).all()
    assert abs(first.get_momenta().sum(axis=0)).max() < 1e-10
    assert first.get_temperature() > 100


def test_unsupported_element_is_a_clear_error():
    model = load_model("al-emt", device="cpu")
    with pytest.raises(ValueError, match=r"does not support Cu: its species are Al"):
        check_element(model, "Cu", reference_calculator())
    with pytest.raises(ValueError, match="unknown element 'Xx'"):
        check_element(model, "Xx", reference_calculator())
    with pytest.raises(ValueError, match="stride 48 fs is not supported"):
        bench_speed("al-emt", "Al", cells=(1,), strides_fs=(48,), **TINY)


def test_cli_prints_the_table(capsys):
    tiny = ["--seconds", "0.01", "--repeats", "1", "--equilibration-fs", "10", "--devices", "cpu"]
    args = ["bench", "speed", "--model", "al-emt", "--element", "Al", "--sizes", "2"]
    assert main([*args, "--stride-fs", "32", *tiny]) == 0
    rows = _blocks(capsys.readouterr().out)[32]
    assert [r["label"] for r in rows] == [
        "flashmd (energy filter)",
        "VV on energy model",
        REFERENCE,
    ]
    assert main(["bench", "speed", "--model", "al-emt", *tiny]) == EXIT_USAGE
    assert "does not support Cu" in capsys.readouterr().err


def test_a_named_reference_is_timed_and_its_elements_checked(capsys):
    out = bench_speed("al-emt", "Al", cells=(1,), strides_fs=(32,), reference="emt", **TINY)
    rows = _blocks(out)[4]
    assert rows[-1]["label"] == "emt (reference)" and rows[-1]["vs_reference"] == "1"
    assert "Langevin equilibration (20 fs, emt)" in out
    assert main(["bench", "speed", "--reference", "nosuch", "--devices", "cpu"]) == EXIT_USAGE
    assert "unknown calculator 'nosuch'" in capsys.readouterr().err


def test_an_mlip_reference_takes_single_steps_and_the_300x_target():
    pytest.importorskip("sevenn")
    reference = reference_calculator("sevennet-0")
    assert reference.is_mlip and reference.chunk_steps == 1
    tiny = {**TINY, "equilibration_fs": 2.0}
    out = bench_speed(
        "emt-metals",
        "Cu",
        cells=(1,),
        strides_fs=(32,),
        reference="sevennet-0",
        lattice_a=3.6125,
        **tiny,
    )
    rows = _blocks(out)[4]
    assert rows[-1]["label"] == "sevennet-0 (reference)"
    assert float(rows[-1]["ps"]) == pytest.approx(0.002)  # one 2 fs step per timed run
    assert "targets vs sevennet-0 (reference): 32 fs >= 300x" in out


def test_compiled_rows_come_in_a_second_table_of_the_same_run(monkeypatch):
    compiled = []

    def fake_compile(model):  # the table's structure, not torch.compile (tests/models)
        compiled.append(model)
        return model

    monkeypatch.setattr("flashmd.bench.speed.compile_model", fake_compile)
    out = bench_speed("al-emt", "Al", cells=(1,), strides_fs=(32,), compiled=True, **TINY)
    titles = re.findall(r"^## .+$", out, flags=re.M)
    assert titles == [
        "## 4 atoms (Al fcc 1x1x1), device cpu",
        "## 4 atoms (Al fcc 1x1x1), device cpu, model compiled (torch.compile)",
    ]
    assert len(compiled) == 1
    eager, compiled_rows = (
        [m.groupdict() for m in ROW.finditer(part)]
        for part in re.split(r"^## ", out, flags=re.M)[1:]
    )
    labels = ["flashmd (energy filter)", "VV on energy model", REFERENCE]
    assert [r["label"] for r in eager] == [r["label"] for r in compiled_rows] == labels
    same = ("rate", "vs_reference", "ps")  # one reference row, timed once, in both tables
    assert [eager[-1][k] for k in same] == [compiled_rows[-1][k] for k in same]
    assert compiled_rows[1]["ratio"] == "1.0"  # its own baseline
