"""The command line explains itself: defaults in ``--help``, shipped models, the md temperature.

Rule held for every option of every subcommand of the real parser: it is ``required``, or its
expanded help says ``default``; a default other than None must appear in the help as the value
itself (``%(default)s`` or ``%(default)g``), so the text cannot drift from the parser; a default
of None must say what happens instead ("default: the recipe's"), never "default: None".
Optional positionals (``nargs="?"`` or ``"*"``) are held to the same rule.

Two kinds of option are excepted, on purpose: ``-h/--help`` and ``--version`` (they take no value
and do no work), and plain on/off flags (``store_true`` with default False, ``store_false`` with
default True), whose absence means "off" by construction and whose help says what "on" does;
writing "(default: off)" after each would add nothing. A flag with any other default (``demo
--symplectic``, default None: decided by the model) is not excepted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from flashmd.catalog import PRETRAINED_DIR, format_models, shipped_models
from flashmd.cli import main, md_temperature
from flashmd.cli_parser import DEFAULT_TEMPERATURE_K, build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _plain_flag(action: argparse.Action) -> bool:
    return (isinstance(action, argparse._StoreTrueAction) and action.default is False) or (
        isinstance(action, argparse._StoreFalseAction) and action.default is True
    )


def _shown(value: object) -> list[str]:
    """Ways ``%(default)s`` or ``%(default)g`` print ``value``."""
    shown = [str(value)]
    if isinstance(value, float):
        shown.append(f"{value:g}")
    return shown


def _problems(name: str, parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        optional_positional = not action.option_strings and action.nargs in ("?", "*")
        if action.required or _plain_flag(action):
            continue
        if not action.option_strings and not optional_positional:
            continue
        label = f"flashmd {name} {'/'.join(action.option_strings) or action.dest}"
        text = formatter._expand_help(action) if action.help else ""
        if "default" not in text.lower():
            problems.append(f"{label}: help says no default: {text!r}")
        elif action.default is None and "default: none)" in text.lower():
            problems.append(f"{label}: says 'default: None' instead of what happens")
        elif action.default not in (None, []) and not any(
            shown in text for shown in _shown(action.default)
        ):
            problems.append(f"{label}: default {action.default!r} not in its help {text!r}")
    return problems


def test_every_option_shows_its_default_or_is_required():
    commands = _subparsers(build_parser())
    assert {"generate", "md", "train", "evaluate", "demo", "bench", "models"} <= set(commands)
    problems = [p for name, sub in commands.items() for p in _problems(name, sub)]
    assert not problems, "\n".join(problems)


def test_the_rule_catches_a_hidden_default():
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--every", type=int, default=1, help="strides between frames")
    parser.add_argument("--device", help="a device")
    parser.add_argument("--seed", type=int, default=3, help="seed (default: 0)")
    assert len(_problems("x", parser)) == 3


def test_library_defaults_written_in_the_help_are_the_library_s():
    from flashmd.md.filters import FilterConfig
    from flashmd.md.stepper import DEFAULT_THRESHOLD_A
    from flashmd.md.symplectic import SolverConfig

    md = _subparsers(build_parser())["md"]
    helps = {a.option_strings[0]: a.help for a in md._actions if a.option_strings}
    expected = {
        "--max-cooling": FilterConfig.max_cooling,
        "--max-heating": FilterConfig.max_heating,
        "--contact-fraction": FilterConfig.contact_fraction,
        "--solver-tolerance-A": SolverConfig.tolerance_A,
        "--solver-max-iterations": SolverConfig.max_iterations,
        "--adaptive-threshold-A": DEFAULT_THRESHOLD_A,
        "--temperature-K": DEFAULT_TEMPERATURE_K,
    }
    for option, value in expected.items():
        assert f"(default: {value:g}" in helps[option], (option, value, helps[option])


def test_choices_written_in_the_parser_are_the_library_s():
    from flashmd.md.batch import ENSEMBLES
    from flashmd.md.symplectic import GENERATING_KINDS

    md = _subparsers(build_parser())["md"]
    choices = {a.option_strings[0]: a.choices for a in md._actions if a.option_strings}
    assert tuple(choices["--symplectic"]) == GENERATING_KINDS
    assert tuple(choices["--ensemble"]) == tuple(ENSEMBLES)
    bench = _subparsers(build_parser())["bench"]
    choices = {a.option_strings[0]: a.choices for a in bench._actions if a.option_strings}
    assert tuple(choices["--symplectic"]) == GENERATING_KINDS


def test_md_says_which_temperature_it_used_and_why():
    md = _subparsers(build_parser())["md"]
    base = ["a.xyz", "--model", "m", "-o", "o.zarr", "--stride-fs", "32", "--strides", "1"]
    temperature, line = md_temperature(md.parse_args(base))
    assert temperature == DEFAULT_TEMPERATURE_K
    assert "no --temperature-K given" in line and "Maxwell-Boltzmann" in line
    args = md.parse_args([*base, "--temperature-K", "750", "--ensemble", "langevin"])
    temperature, line = md_temperature(args)
    assert temperature == 750.0
    assert "750 K (--temperature-K)" in line and "langevin bath" in line
    args = md.parse_args([*base, "--start-from", "ref.zarr"])
    assert "trajectories at this temperature in ref.zarr" in md_temperature(args)[1]


def test_md_with_a_wrong_model_prints_its_temperature_and_the_valid_names(tmp_path, capsys):
    from ase.build import bulk

    structure = tmp_path / "al.xyz"
    bulk("Al", "fcc", a=4.05, cubic=True).write(structure)
    args = ["md", str(structure), "--model", "no-such-model", "-o", str(tmp_path / "r.zarr")]
    status = main([*args, "--stride-fs", "32", "--strides", "1", "--threads", "1"])
    err = capsys.readouterr().err
    assert status != 0
    assert "300 K (no --temperature-K given" in err
    for model in shipped_models():
        assert model.name in err


def test_demo_with_a_wrong_model_lists_the_valid_names_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--model", "no-such-model", "-o", str(out), "--threads", "1"]) != 0
    err = capsys.readouterr().err
    assert all(model.name in err for model in shipped_models())
    assert not out.exists()


def test_models_lists_the_shipped_checkpoints(capsys):
    models = {m.name: m for m in shipped_models()}
    assert {"al-emt", "emt-metals"} <= set(models)
    assert models["al-emt"].elements == ("Al",)
    assert models["emt-metals"].strides_fs == (16.0, 32.0, 64.0)
    assert models["emt-metals"].generating and not models["al-emt"].generating
    assert models["emt-metals"].kick and not models["al-emt"].kick
    assert "EMT" in models["al-emt"].reference
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, model in models.items():
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert " ".join(model.elements) in row and "16 32 64" in row
        assert Path(model.card or "").name in row
    assert format_models([]).startswith("name")


def test_models_names_a_distilled_model_s_reference_and_its_symplectic_strides(tmp_path):
    """A model trained on a shipped model's own trajectories (calculator ``flashmd``) is listed
    with that model's reference, and its generating function with the strides it serves."""
    data = torch.load(PRETRAINED_DIR / "sevennet-cuau.pt", map_location="cpu", weights_only=True)
    data["metadata"] = {"calculator": {"name": "flashmd", "params": {"model": "sevennet-cuau"}}}
    data["models"]["generating"]["config"]["strides_fs"] = [32.0]
    torch.save(data, tmp_path / "fast.pt")
    (model,) = shipped_models(tmp_path)
    assert model.reference == "sevennet-0 via sevennet-cuau"
    assert model.symplectic_strides_fs == (32.0,) and model.strides_fs == (16.0, 32.0, 64.0)
    row = format_models([model]).splitlines()[1]
    assert "sevennet-0 via sevennet-cuau" in row and " 32 fs " in row


def test_models_agrees_with_load_model_names():
    from flashmd.catalog import PRETRAINED_DIR as listed_dir
    from flashmd.models.io import PRETRAINED_DIR, available_models

    assert listed_dir == PRETRAINED_DIR
    assert [m.name for m in shipped_models()] == available_models()


def test_models_refuses_a_file_that_is_no_checkpoint(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a flashmd checkpoint"):
        shipped_models(tmp_path)


def test_an_input_file_after_the_symplectic_flag_is_refused_with_the_fix(capsys):
    md = _subparsers(build_parser())["md"]
    base = ["--model", "m", "-o", "o.zarr", "--stride-fs", "32", "--strides", "1"]
    assert md.parse_args(["in.xyz", "--symplectic", *base]).symplectic == "learned"
    assert md.parse_args(["in.xyz", "--symplectic", "modified", *base]).symplectic == "modified"
    with pytest.raises(SystemExit):
        md.parse_args(["--symplectic", "in.xyz", *base])
    error = capsys.readouterr().err
    assert "'in.xyz' is not a kind of symplectic stride" in error
    assert "put the input file before it" in error
