"""The argument parser of the ``flashmd`` command line; :mod:`flashmd.cli` runs the commands.

Every option says its default in ``--help`` (``%(default)s``, so the text cannot drift from the
value) or what happens when it is absent, or is required; ``tests/test_cli_help.py`` holds every
subcommand to that, and the documentation's command-line reference is generated from this parser.
Defaults that belong to the library rather than to the parser (the energy filter's band, the
symplectic solver's tolerance) are written out in the text and checked against the library by the
same test.
"""

from __future__ import annotations

import argparse

from flashmd import __version__
from flashmd.data.store import COMMIT_INTERVAL_S

#: The names of :data:`flashmd.md.splitting.SPLITTINGS`, spelled out here so that ``--help`` does
#: not import torch (a test holds the two together).
SPLITTING_NAMES = ("two-stage", "verlet")

#: ``flashmd md --temperature-K`` when it is not given (the command prints that it used it).
DEFAULT_TEMPERATURE_K = 300.0
_MODEL = "shipped model name (flashmd models lists them) or checkpoint path"
_DEVICE = "auto (CUDA when available), cpu, cuda, cuda:1, ... (default: %(default)s)"
_SHARD = "I/N: run only the trajectories with index %% N == I (default: %(default)s, all)"


def _cell_mask(text: str) -> tuple[bool, bool, bool]:
    """``--cell-mask``: three digits 0/1 for the x, y, z axes."""
    if len(text) != 3 or set(text) - {"0", "1"} or "1" not in text:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give three digits 0 or 1 for the x, y, z axes, at least one 1 (e.g. 110)"
        )
    return (text[0] == "1", text[1] == "1", text[2] == "1")


def _stride(text: str) -> float | str:
    """``--stride-fs``: a number of fs or ``auto``."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a stride in fs or auto, got {text!r}") from None


#: ``--symplectic`` kinds, as :data:`flashmd.md.symplectic.GENERATING_KINDS` (a test holds them
#: equal; the parser does not import torch).
_GENERATING_KINDS = ("learned", "midpoint", "modified")


def _generating_kind(text: str) -> str:
    """``md --symplectic``: a kind; anything else (often the input file written after the flag,
    which takes an optional value) is refused with the fix."""
    if text in _GENERATING_KINDS:
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a kind of symplectic stride ({', '.join(_GENERATING_KINDS)}); the flag "
        f"takes an optional kind, so put the input file before it, or write '--symplectic "
        f"learned {text}'"
    )


def add_symplectic_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, help: str
) -> None:
    """``--symplectic [KIND]``: symplectic strides of a kind (the flag alone: 'learned'), refused
    with the fix when the word after it is not a kind; ``help`` says what the command does with
    them. Used by ``flashmd md``, ``flashmd bench speed`` and the scripts."""
    parser.add_argument(
        "--symplectic",
        nargs="?",
        const="learned",
        default=None,
        type=_generating_kind,
        choices=_GENERATING_KINDS,
        help=help,
    )


def _seconds(text: str) -> float:
    """A non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"a number of seconds >= 0, got {text!r}")
    return value


def _shared() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``--threads`` and ``--commit-every-s`` options, shared by several commands."""
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch (default: OMP_NUM_THREADS if set, else the cores not busy "
        "by the one-minute load average, at least one)",
    )
    commits = argparse.ArgumentParser(add_help=False)
    commits.add_argument(
        "--commit-every-s",
        type=_seconds,
        default=COMMIT_INTERVAL_S,
        help="commit the frames at least this often (besides every full chunk), so a killed "
        "run loses at most this much; 0: per chunk only (default: %(default)g)",
    )
    return threads, commits


def _add_generate(commands: argparse._SubParsersAction, commits: argparse.ArgumentParser) -> None:
    gen = commands.add_parser(
        "generate", parents=[commits], help="run reference MD from a YAML recipe into a store"
    )
    gen.add_argument("recipe", help="YAML recipe (e.g. data/al-emt-tiny.yaml)")
    gen.add_argument("-o", "--output", required=True, help="store path or fsspec URL (.zarr)")
    gen.add_argument(
        "--workers", type=int, default=1, help="parallel worker processes (default: %(default)s)"
    )
    gen.add_argument("--shard", default="0/1", help=_SHARD)
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.add_argument("--summary", action="store_true", help="print the store's table afterwards")


def _add_learn(commands: argparse._SubParsersAction, threads: argparse.ArgumentParser) -> None:
    learn = commands.add_parser(
        "learn",
        parents=[threads],
        help="active learning: explore with the model, label its most uncertain states with "
        "the reference, retrain; resumes where it stopped",
    )
    learn.add_argument("recipe", help="learning recipe YAML (see training/emt-metals-learn.yaml)")
    learn.add_argument("--iterations", type=int, help="iterations in all (default: the recipe's)")
    learn.add_argument(
        "--workers",
        type=int,
        help="processes for the reference continuations (default: the recipe's)",
    )
    learn.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: the recipe's)")
    learn.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_train(commands: argparse._SubParsersAction, threads: argparse.ArgumentParser) -> None:
    train = commands.add_parser(
        "train", parents=[threads], help="train a predictor and energy model (torchrun-ready)"
    )
    train.add_argument("recipe", help="training recipe YAML (e.g. training/tiny.yaml)")
    train.add_argument("--resume", action="store_true", help="continue the run in its output dir")
    train.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    train.add_argument("--output", help="run directory (default: the recipe's)")
    train.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: the recipe's)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--validate-only",
        action="store_true",
        help="evaluate the run's best.pt on its held-out trajectories",
    )
    train.add_argument(
        "--val-pairs",
        type=int,
        help="with --validate-only: held-out pairs per stride (default: the recipe's val_pairs)",
    )


def _add_train_kick(commands: argparse._SubParsersAction, threads: argparse.ArgumentParser) -> None:
    kick = commands.add_parser(
        "train-kick",
        parents=[threads],
        help="add a learned kick to a model: leapfrog proposals of the metropolis ensemble "
        "then move on it instead of the energy model's forces, at the cost of V alone",
    )
    kick.add_argument("model", help="shipped model name or checkpoint with an energy model")
    kick.add_argument(
        "-o", "--output", required=True, help="checkpoint to write (the model and its kick)"
    )
    kick.add_argument("--store", required=True, help="trajectory store whose frames train it")
    kick.add_argument(
        "--validation-store", help="store of the validation frames (default: --store, other frames)"
    )
    kick.add_argument(
        "--frames-per-trajectory",
        type=int,
        default=12,
        help="frames drawn from each trajectory (default: %(default)s)",
    )
    kick.add_argument("--steps", type=int, default=8000, help="Adam steps (default: %(default)s)")
    kick.add_argument("--seed", type=int, default=0, help="frames and weights (default: 0)")
    kick.add_argument(
        "--step-fs",
        type=float,
        help="then tune the kick on the chain's energy error of one leapfrog step of this many "
        "fs (use it with --leapfrog-steps 1 --stride-fs of the same value) (default: no tuning)",
    )
    kick.add_argument(
        "--tune-steps", type=int, default=2000, help="with --step-fs: Adam steps (default: 2000)"
    )
    kick.add_argument(
        "--splitting",
        choices=SPLITTING_NAMES,
        default="verlet",
        help="with --step-fs: tune for steps split this way (two-stage: two evaluations per step, "
        "use it with --splitting two-stage in flashmd md) (default: %(default)s)",
    )
    kick.add_argument(
        "--retune",
        action="store_true",
        help="fit nothing: tune the kick the model already carries for --step-fs (e.g. a kick "
        "tuned for 12 fs, for 14 fs; --steps unused)",
    )
    kick.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_md_filter(group: argparse._ArgumentGroup) -> None:
    """``flashmd md``: the energy filter's and the symplectic solver's options."""
    group.add_argument("--no-filter", action="store_true", help="switch the energy filter off")
    group.add_argument(
        "--max-cooling",
        type=float,
        help="filter: largest accepted momentum down-scaling 1 - α (default: 0.05)",
    )
    group.add_argument(
        "--max-heating",
        type=float,
        help="filter: largest accepted momentum up-scaling α - 1 (default: 0.05)",
    )
    group.add_argument(
        "--contact-fraction",
        type=float,
        help="reject strides leaving atoms closer than this fraction of their covalent-radius "
        "sum; 0: no check (default: 0.6)",
    )
    add_symplectic_option(
        group,
        "symplectic, time-reversible strides solved at the stride's midpoint: from the "
        "model's generating function ('learned', the default; the model must carry one), the "
        "implicit midpoint rule on its energy model ('midpoint'), or that rule with the "
        "parameter-free correction that cancels its leading error ('modified', order four, "
        "about 5x the cost per solver iteration) (default: off, the direct predictor's strides)",
    )
    group.add_argument(
        "--solver-tolerance-A",
        type=float,
        help="symplectic solver: residual tolerance in Å (default: 1e-05)",
    )
    group.add_argument(
        "--solver-max-iterations",
        type=int,
        help="symplectic solver: iterations before a stride is redone (default: 30)",
    )
    group.add_argument(
        "--corrector-iterations",
        type=int,
        help="corrector strides: the direct predictor's stride corrected by this many "
        "symplectic solver iterations, kept converged or not (3: about a quarter of a solved "
        "stride's cost with its diffusion on held-out melts; close to but not exactly "
        "symplectic, so not in the metropolis ensemble) (default: off, strides solved to the "
        "tolerance)",
    )
    group.add_argument(
        "--adaptive-threshold-A",
        type=float,
        help="--stride-fs auto: largest atom self-consistency in Å up to which a stride is "
        "taken whole (default: 0.1)",
    )


def _add_md_systems(group: argparse._ArgumentGroup) -> None:
    """``flashmd md``: systems and output."""
    group.add_argument(
        "structures",
        nargs="*",
        help="structure files, the first frame of each (default: none; then --recipe or "
        "--start-from names the systems)",
    )
    group.add_argument(
        "--recipe",
        help="use a generation recipe's systems instead of files (default: none, the files or "
        "--start-from)",
    )
    group.add_argument(
        "--start-from",
        metavar="STORE",
        help="start from the first frame (positions and momenta) of each trajectory of this "
        "reference store at --temperature-K: equilibrated starts for flashmd evaluate "
        "(default: none; momenta drawn from Maxwell-Boltzmann at --temperature-K)",
    )
    group.add_argument("--model", required=True, help=_MODEL)
    group.add_argument("-o", "--output", required=True, help="store path or fsspec URL (.zarr)")
    group.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="replicas of every system, each with its own momenta (default: %(default)s)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial momenta and the thermostat noise (default: %(default)s)",
    )
    group.add_argument(
        "--every", type=int, default=1, help="strides between stored frames (default: %(default)s)"
    )
    group.add_argument(
        "--uncertainty",
        action="store_true",
        help="store each frame's stride uncertainty per atom (the predictor's self-consistency, "
        "Å; three more predictor passes per frame), shown by flashmd evaluate and used by "
        "flashmd learn",
    )
    group.add_argument("--shard", default="0/1", help=_SHARD)
    group.add_argument(
        "--allow-close-contacts",
        action="store_true",
        help="run structures with atoms closer than 0.6 of their covalent-radius sum (refused "
        "by default: no training structure has them) with a warning",
    )
    group.add_argument("--device", default="auto", help=_DEVICE)
    group.add_argument(
        "--compile",
        action="store_true",
        help="compile the model's layers with torch.compile (1.5-2x faster strides on one CPU "
        "thread, measured; a minute or more of compiling first; needs a C++ compiler on the "
        "CPU); results agree with the eager model's to float rounding (default: eager)",
    )
    group.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_md_ensemble(group: argparse._ArgumentGroup) -> None:
    """``flashmd md``: ensemble and thermostat."""
    group.add_argument(
        "--ensemble",
        choices=["nve", "langevin", "bussi", "metropolis", "npt"],  # flashmd.md.batch.ENSEMBLES
        default="nve",
        help="nve, a thermostat at --temperature-K (bussi, a global rescaling, leaves "
        "vibrational dynamics alone; langevin holds every atom's temperature), metropolis: "
        "exact canonical sampling "
        "of the energy model at --temperature-K with symplectic strides (or --leapfrog-steps) "
        "as Metropolis proposals (equilibrium averages only; not dynamics), or npt: Langevin at "
        "--temperature-K and stochastic cell rescaling at --pressure-GPa "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--temperature-K",
        type=float,
        help="temperature of the initial Maxwell-Boltzmann momenta (or of the --start-from "
        "trajectories to start from) and of the thermostat's bath, K (default: "
        f"{DEFAULT_TEMPERATURE_K:g}, and the command says on stderr that it used it)",
    )
    group.add_argument(
        "--friction-per-fs",
        type=float,
        default=0.01,
        help="Langevin friction, 1/fs (default: %(default)g; it holds the temperature firmly but,"
        " applied in half-strides, moves vibrational frequencies a few %% at 32 fs: for dynamics"
        " use --ensemble bussi, or 0.001, and a reference run alike)",
    )
    group.add_argument(
        "--taut-fs",
        type=float,
        default=100.0,
        help="Bussi time constant, fs (default: %(default)g)",
    )


def _add_md_strides(group: argparse._ArgumentGroup) -> None:
    """``flashmd md``: strides."""
    group.add_argument(
        "--stride-fs",
        type=_stride,
        required=True,
        help="one of the model's strides, or auto: its longest, taken as half strides where "
        "the predictor is unsure of it (adaptive; frames stay on the grid of the longest)",
    )
    group.add_argument("--strides", type=int, required=True, help="strides per trajectory")


def _add_md_npt(group: argparse._ArgumentGroup) -> None:
    """``flashmd md``: constant pressure (--ensemble npt)."""
    group.add_argument(
        "--pressure-GPa",
        type=float,
        help="npt: the pressure the barostat keeps, GPa (negative: tension); required with "
        "--ensemble npt, refused with the others (default: none, constant volume)",
    )
    group.add_argument(
        "--barostat-tau-fs",
        type=float,
        default=1000.0,
        help="npt: relaxation time of the volume, fs (default: %(default)g)",
    )
    group.add_argument(
        "--compressibility-per-GPa",
        type=float,
        default=0.01,
        help="npt: a rough isothermal compressibility; it sets only how fast the volume "
        "relaxes, not its distribution (default: %(default)g, about a metal's)",
    )
    group.add_argument(
        "--cell-mask",
        type=_cell_mask,
        help="npt: scale the cell's x, y, z axes independently, those marked 1 (e.g. 111 for "
        "orthorhombic cells, 110 for a slab in the xy plane) (default: isotropic scaling)",
    )


def _add_md_metropolis(group: argparse._ArgumentGroup) -> None:
    """``flashmd md``: exact canonical sampling (--ensemble metropolis)."""
    group.add_argument(
        "--persistence",
        type=float,
        default=0.0,
        help="metropolis: fraction of the momenta kept at each refresh, 0 draws fresh "
        "Maxwell-Boltzmann momenta before every stride (default: %(default)g)",
    )
    group.add_argument(
        "--uniform-drift",
        type=float,
        default=0.0,
        metavar="DELTA",
        help="metropolis: carry the accept/reject uniform from stride to stride, moved by "
        "DELTA each time (Neal 2020; still exact), so that rejections, which reverse the "
        "kept momenta, come in runs (with emt-metals' Cu it bought nothing: "
        "docs/guide/exact-sampling.md); "
        "0: a fresh uniform every stride (default: %(default)g)",
    )
    group.add_argument(
        "--extra-chances",
        type=int,
        default=0,
        metavar="K",
        help="metropolis: continue a proposal that would be rejected by up to K more strides "
        "before reversing the momenta (Sohl-Dickstein et al. 2014, Campos and Sanz-Serna 2015; "
        "still exact; each chance taken costs a stride); 0: the plain chain "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--leapfrog-steps",
        type=int,
        default=0,
        metavar="N",
        help="metropolis: propose N velocity-Verlet steps of stride/N on the energy model "
        "(hybrid Monte Carlo; no generating function needed, exactly reversible) instead of "
        "symplectic strides; 0: symplectic strides (default: %(default)s)",
    )
    group.add_argument(
        "--learned-kick",
        action="store_true",
        help="metropolis with --leapfrog-steps: step on the model's learned kick, read with V "
        "in one forward pass, instead of the energy model's forces (still exact; the model "
        "must carry a kick: flashmd train-kick)",
    )
    group.add_argument(
        "--splitting",
        choices=SPLITTING_NAMES,
        default="verlet",
        help="metropolis with --leapfrog-steps: split each step into kick-drift-kick (verlet) "
        "or the two-stage splitting (two evaluations per step and a much smaller energy "
        "error: take steps twice as long; with --learned-kick, a kick tuned for it: "
        "flashmd train-kick --splitting two-stage) (default: %(default)s)",
    )
    group.add_argument(
        "--sample",
        metavar="CALCULATOR",
        help="metropolis: sample this reference calculator's V exactly instead of the energy "
        "model's (a recipe's calculator name: sevennet-0, chgnet, asap3-emt, emt, ...): one "
        "call per stride, while the proposals still move on the model, so an expensive "
        "reference is sampled at the model's pace (default: the energy model)",
    )
    group.add_argument(
        "--no-reversibility-check",
        action="store_true",
        help="metropolis: do not solve each proposal back to its start (half the cost; exact "
        "only up to the solver's tolerance) (default: the check is on)",
    )


def _add_md(
    commands: argparse._SubParsersAction,
    threads: argparse.ArgumentParser,
    commits: argparse.ArgumentParser,
) -> None:
    md = commands.add_parser(
        "md",
        parents=[threads, commits],
        help="batched rollouts of a model into a store (resumable)",
    )
    _add_md_systems(md.add_argument_group("systems and output"))
    _add_md_ensemble(md.add_argument_group("ensemble and thermostat"))
    _add_md_strides(md.add_argument_group("strides"))
    _add_md_filter(md.add_argument_group("energy filter and symplectic solver"))
    _add_md_npt(md.add_argument_group("constant pressure (--ensemble npt)"))
    _add_md_metropolis(md.add_argument_group("exact canonical sampling (--ensemble metropolis)"))


def _add_demo(commands: argparse._SubParsersAction, threads: argparse.ArgumentParser) -> None:
    demo = commands.add_parser(
        "demo",
        parents=[threads],
        help="reference MD, flashmd from its first frame, and the evaluation report (README)",
    )
    demo.add_argument(
        "-o", "--output", default="runs/demo", help="output directory (default: %(default)s)"
    )
    demo.add_argument("--model", default="emt-metals", help=f"{_MODEL} (default: %(default)s)")
    demo.add_argument(
        "--stride-fs",
        type=float,
        default=16.0,
        help="one of the model's strides (default: %(default)g)",
    )
    demo.add_argument(
        "--strides",
        type=int,
        default=None,
        help="strides of the flashmd run (default: as many as cover the reference's 32 ps)",
    )
    kind = demo.add_mutually_exclusive_group()
    kind.add_argument(
        "--symplectic",
        action="store_true",
        default=None,
        help="symplectic strides (default: when the model carries a generating function)",
    )
    kind.add_argument(
        "--direct",
        dest="symplectic",
        action="store_false",
        help="the direct predictor's strides even when the model has a generating function "
        "(default: see --symplectic)",
    )
    demo.add_argument("--device", default="auto", help=_DEVICE)
    demo.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_evaluate(commands: argparse._SubParsersAction, threads: argparse.ArgumentParser) -> None:
    ev = commands.add_parser(
        "evaluate",
        parents=[threads],
        help="judge a rollout store against a reference store: report, figures, exit 1 on failure",
    )
    ev.add_argument(
        "--reference",
        required=True,
        nargs="+",
        help="reference trajectory store; several stores of one calculator are pooled (more of "
        "a reference too short to judge, generated from a second recipe)",
    )
    ev.add_argument("--rollout", required=True, help="rollout trajectory store (flashmd md)")
    ev.add_argument("--out", required=True, help="report directory (report.md, figures/)")
    ev.add_argument(
        "--tolerances",
        help="YAML overriding fields of flashmd/analysis/tolerances.yaml (default: none, the "
        "shipped tolerances)",
    )
    ev.add_argument(
        "--trajectories",
        nargs="+",
        default=[],
        metavar="ID",
        help="REF_ID=RUN_ID pairs and/or ids restricting the matching by conditions (default: "
        "every trajectory, paired by composition and temperature)",
    )
    ev.add_argument(
        "--energy",
        choices=["stored", "reference"],
        default="stored",
        help="rollout potential energies: as stored (the model's V) or recomputed with the "
        "reference recipe's calculator on the rollout frames (default: %(default)s)",
    )
    ev.add_argument("--html", action="store_true", help="also write report.html")
    ev.add_argument("--no-figures", action="store_true", help="metrics and tables only")
    ev.add_argument("--quiet", action="store_true", help="no progress lines")


def _add_models(commands: argparse._SubParsersAction) -> None:
    commands.add_parser(
        "models",
        help="list the shipped models: elements, strides, reference, generating function, card",
    )


def _add_bench(commands: argparse._SubParsersAction, threads: argparse.ArgumentParser) -> None:
    bench = commands.add_parser("bench", parents=[threads], help="benchmarks that print a table")
    bench.add_argument(
        "what",
        choices=[
            "storage",
            "workers",
            "train-memory",
            "rollout",
            "evaluate",
            "speed",
            "calculators",
        ],
    )
    bench.add_argument(
        "--calculators",
        nargs="+",
        default=["asap3-emt", "emt", "sevennet-0", "chgnet"],
        help="calculators: names to time, ratios to the first (default: %(default)s); its "
        "crystal sizes are --sizes, its element --element",
    )
    bench.add_argument(
        "--cells",
        type=int,
        default=3,
        help="storage, evaluate: fcc cubic cells per side, 3: 108 atoms (default: %(default)s)",
    )
    bench.add_argument(
        "--frames",
        type=int,
        default=2000,
        help="storage, workers: frames per run (default: %(default)s)",
    )
    bench.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="storage, speed: alternating repeats of each variant (default: %(default)s)",
    )
    bench.add_argument(
        "--sample-interval-fs",
        type=float,
        default=8.0,
        help="storage, workers: fs between stored frames, timestep 2 fs (default: %(default)g)",
    )
    bench.add_argument(
        "--commit-every-s",
        type=_seconds,
        default=0.1,
        help="storage: the time-based commit interval priced (default: %(default)g s)",
    )
    bench.add_argument(
        "--workers",
        type=int,
        default=2,
        help="workers: generator processes compared with one (default: %(default)s)",
    )
    bench.add_argument(
        "--trajectories",
        type=int,
        default=8,
        help="workers: trajectories generated (default: %(default)s)",
    )
    bench.add_argument(
        "--factor",
        type=int,
        default=20,
        help="train-memory: store size ratio (default: %(default)s)",
    )
    bench.add_argument(
        "--steps", type=int, default=40, help="train-memory: training steps (default: %(default)s)"
    )
    bench.add_argument(
        "--replicas",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8, 16, 32, 64],
        help="rollout: replica counts (default: %(default)s)",
    )
    bench.add_argument(
        "--strides", type=int, default=5, help="rollout: timed strides (default: %(default)s)"
    )
    bench.add_argument(
        "--eval-frames",
        type=int,
        default=10_000,
        help="evaluate: frames of each store (default: %(default)s)",
    )
    speed = bench.add_argument_group("speed", "simulated ps per wall s: flashmd against MD")
    speed.add_argument("--model", default="emt-metals", help=f"{_MODEL} (default: %(default)s)")
    speed.add_argument(
        "--element", default="Cu", help="element of the fcc crystal (default: %(default)s)"
    )
    speed.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[3, 6],
        help="cubic cells per side, 6: 864 atoms (default: %(default)s)",
    )
    speed.add_argument(
        "--stride-fs",
        type=float,
        nargs="+",
        default=[16.0, 32.0, 64.0],
        help="flashmd strides (default: %(default)s)",
    )
    speed.add_argument(
        "--temperature-K",
        type=float,
        default=600.0,
        help="temperature of the equilibration, K (default: %(default)g)",
    )
    speed.add_argument(
        "--reference",
        default=None,
        help="reference calculator of the MD row, by its recipe name, e.g. sevennet-0 for a "
        "model trained on SevenNet-0 data (default: asap3 EMT)",
    )
    speed.add_argument(
        "--lattice-a",
        type=float,
        default=None,
        help="cubic lattice constant of the crystal, Å (default: ASE's experimental one)",
    )
    speed.add_argument(
        "--equilibration-fs",
        type=float,
        default=1000.0,
        help="reference Langevin MD before timing, fs (default: %(default)g)",
    )
    speed.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="wall seconds of each timed run of each row (default: %(default)g)",
    )
    speed.add_argument(
        "--devices",
        nargs="+",
        default=[],
        help="torch devices (default: cpu, and cuda if there is one)",
    )
    add_symplectic_option(
        speed,
        "add rows of symplectic strides: from the model's generating function ('learned', "
        "the default; the model must carry one), or the implicit midpoint rule on its energy "
        "model ('midpoint') or that rule's order-four correction ('modified') (default: direct "
        "strides only)",
    )
    speed.add_argument(
        "--corrector-iterations",
        nargs="+",
        type=int,
        default=[],
        help="add rows of corrector strides: the predictor's stride corrected by this many "
        "symplectic solver iterations, of the --symplectic kind (default: learned) (default: "
        "none)",
    )
    speed.add_argument(
        "--compile",
        action="store_true",
        help="also time every model row with the model's layers compiled by torch.compile "
        "(needs a C++ compiler on the CPU), in the same run: a second table per size (default: "
        "eager only)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``flashmd`` subcommand; ``args.command`` names the one chosen."""
    parser = argparse.ArgumentParser(
        prog="flashmd",
        description="Long-stride molecular dynamics: reference MD into Zarr stores, training, "
        "batched rollouts and their evaluation against reference MD.",
    )
    parser.add_argument("--version", action="version", version=f"flashmd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    threads, commits = _shared()
    _add_generate(commands, commits)
    _add_learn(commands, threads)
    _add_train(commands, threads)
    _add_train_kick(commands, threads)
    _add_md(commands, threads, commits)
    _add_demo(commands, threads)
    _add_evaluate(commands, threads)
    ins = commands.add_parser("inspect", help="table of a store's trajectories, size, compression")
    ins.add_argument("store", help="store path or fsspec URL (.zarr)")
    _add_models(commands)
    _add_bench(commands, threads)
    return parser
