"""The ``flashmd`` command line: generate, inspect, train, md, evaluate, demo and bench.

Every command turns the library's own errors (bad recipe, foreign store, ...) into one clear line
on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from flashmd import __version__
from flashmd.data.recipes import RecipeError
from flashmd.data.store import COMMIT_INTERVAL_S, StoreError
from flashmd.threads import configure_threads
from flashmd.train.errors import TrainingError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _cmd_generate(args: argparse.Namespace) -> int:
    from flashmd.data.generate import generate, parse_shard
    from flashmd.data.recipes import load_recipe

    recipe = load_recipe(args.recipe)
    report = generate(
        recipe,
        args.output,
        workers=args.workers,
        shard=parse_shard(args.shard),
        progress=not args.quiet,
        commit_interval_s=args.commit_every_s or None,
    )
    print(
        f"{recipe.name}: {report.trajectories} trajectories in shard {args.shard} "
        f"({report.skipped} already complete), {report.frames_written} frames written to "
        f"{args.output} in {report.wall_time_s:.1f} s"
        + (
            f"; {report.claimed_elsewhere} left to another writer that is on them (run the "
            "command again once it has finished, or after a crash, to complete them)"
            if report.claimed_elsewhere
            else ""
        )
    )
    if args.summary:
        _print_inspect(args.output)
    return 0


def _print_inspect(location: str) -> None:
    from flashmd.data.inspect import format_store

    print(format_store(location))


def _cmd_inspect(args: argparse.Namespace) -> int:
    _print_inspect(args.store)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from flashmd.train.config import load_train_config
    from flashmd.train.validation import format_metrics, validate_run

    config = load_train_config(
        args.recipe, steps=args.steps, output=args.output, device=args.device
    )
    if args.validate_only:
        metrics = validate_run(config, args.val_pairs or config.val_pairs)
        print(
            f"{config.name}: best.pt on {args.val_pairs or config.val_pairs} held-out pairs "
            "per stride"
        )
        print(format_metrics(metrics, config.strides_fs))
        return 0
    from flashmd.train.trainer import Trainer

    trainer = Trainer(config, resume=args.resume, progress=not args.quiet)
    try:
        metrics = trainer.run()
    except BaseException:
        trainer.close(failed=True)
        raise
    trainer.close()
    if trainer.dist.is_main:  # once, not once per torchrun rank
        if metrics:
            print(format_metrics(metrics, config.strides_fs))
        print(f"{config.name}: step {trainer.step}; best model {config.output}/best.pt")
    return 0


def _cmd_md(args: argparse.Namespace) -> int:
    from flashmd.data.generate import parse_shard
    from flashmd.md.batch import MDSettings, run_md

    settings = MDSettings(
        model=args.model,
        structures=tuple(args.structures),
        recipe=args.recipe,
        start_from=args.start_from,
        ensemble=args.ensemble,
        temperature_K=args.temperature_K,
        stride_fs=args.stride_fs,
        strides=args.strides,
        every=args.every,
        replicas=args.replicas,
        seed=args.seed,
        friction_per_fs=args.friction_per_fs,
        taut_fs=args.taut_fs,
        energy_filter=not args.no_filter,
        symplectic=args.symplectic,
        uncertainty=args.uncertainty,
        adaptive_threshold_A=args.adaptive_threshold_A,
        **{
            name: getattr(args, name)
            for name in (
                "max_cooling",
                "max_heating",
                "contact_fraction",
                "solver_tolerance_A",
                "solver_max_iterations",
            )
            if getattr(args, name) is not None
        },
    )
    report = run_md(
        settings,
        args.output,
        parse_shard(args.shard),
        args.device,
        progress=not args.quiet,
        commit_interval_s=args.commit_every_s or None,
        allow_close_contacts=args.allow_close_contacts,
    )
    print(
        f"md: {report.frames} frames of {report.strides} strides written to {args.output} in "
        f"{report.wall_time_s:.1f} s; {report.fallbacks} filter fallbacks "
        f"({report.verlet_fallbacks} by velocity Verlet), {report.rebuilds} neighbour-list builds"
        + (f"; {report.solver_iterations} solver iterations" if settings.symplectic else "")
        + (
            f"; {report.declined} strides declined as unsure (taken as half strides), "
            f"effective stride {report.effective_stride_fs:.1f} fs"
            if settings.stride_fs == "auto"
            else ""
        )
    )
    return 0


def _cmd_learn(args: argparse.Namespace) -> int:
    from flashmd.learn.loop import LearnLoop
    from flashmd.learn.recipe import load_learn_recipe

    recipe = load_learn_recipe(
        args.recipe, iterations=args.iterations, workers=args.workers, device=args.device
    )
    loop = LearnLoop(recipe, progress=not args.quiet)
    rows = loop.run()
    last = rows[-1]
    print(
        f"learn {recipe.name}: {len(rows) - 1} iterations, {last['reference_calls']} reference "
        f"calls on {last['labelled_states']} states; model {loop.state.checkpoint}; "
        f"{loop.output / 'learning.csv'} and learning.png"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from flashmd.demo import run_demo

    result = run_demo(
        args.output,
        model=args.model,
        stride_fs=args.stride_fs,
        strides=args.strides,
        device=args.device,
        progress=not args.quiet,
        symplectic=args.symplectic,
    )
    report = result.report
    print(report.summary_table())
    times = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in result.seconds.items())
    verdict = "PASS" if report.passed else f"FAIL ({len(report.failures)} out of tolerance)"
    print(f"demo: {verdict} ({times})")
    print(f"demo: trajectory {result.rollout}; report {report.out / 'report.md'}")
    return 0 if report.passed else EXIT_FAILED


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from flashmd.analysis.report import evaluate

    report = evaluate(
        args.reference,
        args.rollout,
        args.out,
        tolerances=args.tolerances,
        trajectories=args.trajectories,
        figures=not args.no_figures,
        html=args.html,
        progress=None if args.quiet else lambda line: print(line, file=sys.stderr),
        energy=args.energy,
    )
    print(report.summary_table())
    for line in report.unmatched:
        print(f"not compared: {line}")
    verdict = "PASS" if report.passed else f"FAIL ({len(report.failures)} out of tolerance)"
    print(f"evaluate: {verdict}; report in {report.out / 'report.md'}")
    return 0 if report.passed else EXIT_FAILED


def _cmd_bench(args: argparse.Namespace) -> int:
    from flashmd.data.bench import bench_storage, bench_workers

    if args.what == "evaluate":
        from flashmd.analysis.bench import bench_evaluate

        print(bench_evaluate(frames=args.eval_frames, n_atoms_per_side=args.cells))
    elif args.what == "rollout":
        from flashmd.md.bench import bench_rollout

        print(bench_rollout(replicas=args.replicas, strides=args.strides))
    elif args.what == "speed":
        from flashmd.md.speed import bench_speed

        print(
            bench_speed(
                model=args.model,
                element=args.element,
                cells=args.sizes,
                strides_fs=args.stride_fs,
                temperature_K=args.temperature_K,
                seconds=args.seconds,
                repeats=args.repeats,
                devices=args.devices,
                equilibration_fs=args.equilibration_fs,
                symplectic=args.symplectic,
            )
        )
    elif args.what == "train-memory":
        from flashmd.train.bench import bench_train_memory

        print(bench_train_memory(factor=args.factor, steps=args.steps))
    elif args.what == "storage":
        print(
            bench_storage(
                n_atoms_per_side=args.cells,
                frames=args.frames,
                repeats=args.repeats,
                sample_interval_fs=args.sample_interval_fs,
                commit_every_s=args.commit_every_s,
            )
        )
    else:
        print(
            bench_workers(
                workers=args.workers,
                trajectories=args.trajectories,
                frames=args.frames,
                sample_interval_fs=args.sample_interval_fs,
            )
        )
    return 0


def _stride(text: str) -> float | str:
    """``--stride-fs``: a number of fs or ``auto``."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a stride in fs or auto, got {text!r}") from None


def _seconds(text: str) -> float:
    """A non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"a number of seconds >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flashmd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"flashmd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
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
        "run loses at most this much; 0: per chunk only (default %(default)g)",
    )

    gen = commands.add_parser(
        "generate", parents=[commits], help="run reference MD from a YAML recipe into a store"
    )
    gen.add_argument("recipe", help="YAML recipe (see data/*.yaml)")
    gen.add_argument("-o", "--output", required=True, help="store path or fsspec URL (.zarr)")
    gen.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    gen.add_argument(
        "--shard", default="0/1", help="I/N: run only trajectories with index %% N == I"
    )
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.add_argument("--summary", action="store_true", help="print the store's table afterwards")
    gen.set_defaults(func=_cmd_generate)

    learn = commands.add_parser(
        "learn",
        parents=[threads],
        help="active learning: explore with the model, label its most uncertain states with "
        "the reference, retrain; resumes where it stopped",
    )
    learn.add_argument("recipe", help="learning recipe YAML (see training/emt-metals-learn.yaml)")
    learn.add_argument("--iterations", type=int, help="iterations in all (default: the recipe's)")
    learn.add_argument("--workers", type=int, help="processes for the reference continuations")
    learn.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: the recipe's)")
    learn.add_argument("--quiet", action="store_true", help="no progress bars")
    learn.set_defaults(func=_cmd_learn)

    train = commands.add_parser(
        "train", parents=[threads], help="train a predictor and energy model (torchrun-ready)"
    )
    train.add_argument("recipe", help="training recipe YAML (see training/*.yaml)")
    train.add_argument("--resume", action="store_true", help="continue the run in its output dir")
    train.add_argument("--steps", type=int, help="override the recipe's number of steps")
    train.add_argument("--output", help="override the recipe's run directory")
    train.add_argument("--device", help="override the device (auto, cpu, cuda)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--validate-only",
        action="store_true",
        help="evaluate the run's best.pt on its held-out trajectories",
    )
    train.add_argument("--val-pairs", type=int, help="with --validate-only: pairs per stride")
    train.set_defaults(func=_cmd_train)

    md = commands.add_parser(
        "md",
        parents=[threads, commits],
        help="batched rollouts of a model into a store (resumable)",
    )
    md.add_argument("structures", nargs="*", help="structure files (first frame of each)")
    md.add_argument("--recipe", help="use a generation recipe's systems instead of files")
    md.add_argument(
        "--start-from",
        metavar="STORE",
        help="start from the first frame (positions and momenta) of each trajectory of this "
        "reference store at --temperature-K: equilibrated starts for flashmd evaluate",
    )
    md.add_argument("--model", required=True, help="checkpoint path or shipped model name")
    md.add_argument("-o", "--output", required=True, help="store path or fsspec URL (.zarr)")
    md.add_argument("--ensemble", choices=["nve", "langevin", "bussi"], default="nve")
    md.add_argument("--temperature-K", type=float, default=300.0, help="initial and bath K")
    md.add_argument(
        "--stride-fs",
        type=_stride,
        required=True,
        help="one of the model's strides, or auto: its longest, taken as half strides where "
        "the predictor is unsure of it (adaptive; frames stay on the grid of the longest)",
    )
    md.add_argument("--strides", type=int, required=True, help="strides per trajectory")
    md.add_argument("--every", type=int, default=1, help="strides between stored frames")
    md.add_argument("--replicas", type=int, default=1, help="replicas of every system")
    md.add_argument("--seed", type=int, default=0)
    md.add_argument("--friction-per-fs", type=float, default=0.01, help="Langevin friction")
    md.add_argument("--taut-fs", type=float, default=100.0, help="Bussi time constant")
    md.add_argument("--no-filter", action="store_true", help="switch the energy filter off")
    md.add_argument(
        "--max-cooling",
        type=float,
        help="filter: largest accepted momentum down-scaling 1 - α (default 0.05)",
    )
    md.add_argument(
        "--max-heating",
        type=float,
        help="filter: largest accepted momentum up-scaling α - 1 (default 0.05)",
    )
    md.add_argument(
        "--contact-fraction",
        type=float,
        help="reject strides leaving atoms closer than this fraction of their covalent-radius "
        "sum; 0: no check (default 0.6)",
    )
    md.add_argument(
        "--symplectic",
        action="store_true",
        help="symplectic, time-reversible strides from the model's generating function, solved "
        "at the stride's midpoint (the model must carry one)",
    )
    md.add_argument(
        "--solver-tolerance-A",
        type=float,
        help="symplectic solver: residual tolerance in Å (default 1e-05)",
    )
    md.add_argument(
        "--solver-max-iterations",
        type=int,
        help="symplectic solver: iterations before a stride is redone (default 30)",
    )
    md.add_argument(
        "--adaptive-threshold-A",
        type=float,
        help="--stride-fs auto: largest atom self-consistency in Å up to which a stride is "
        "taken whole (default 0.1)",
    )
    md.add_argument(
        "--uncertainty",
        action="store_true",
        help="store each frame's stride uncertainty per atom (the predictor's self-consistency, "
        "Å; three more predictor passes per frame), shown by flashmd evaluate and used by "
        "flashmd learn",
    )
    md.add_argument(
        "--shard", default="0/1", help="I/N: run only trajectories with index %% N == I"
    )
    md.add_argument(
        "--allow-close-contacts",
        action="store_true",
        help="run structures with atoms closer than 0.6 of their covalent-radius sum (refused "
        "by default: no training structure has them) with a warning",
    )
    md.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    md.add_argument("--quiet", action="store_true", help="no progress bar")
    md.set_defaults(func=_cmd_md)

    demo = commands.add_parser(
        "demo",
        parents=[threads],
        help="reference MD, flashmd from its first frame, and the evaluation report (README)",
    )
    demo.add_argument("-o", "--output", default="runs/demo", help="output directory")
    demo.add_argument("--model", default="emt-metals", help="shipped model name or checkpoint")
    demo.add_argument("--stride-fs", type=float, default=32.0, help="one of the model's strides")
    demo.add_argument("--strides", type=int, default=1000, help="strides of the flashmd run")
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
        help="the direct predictor's strides even when the model has a generating function",
    )
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_cmd_demo)

    ev = commands.add_parser(
        "evaluate",
        parents=[threads],
        help="judge a rollout store against a reference store: report, figures, exit 1 on failure",
    )
    ev.add_argument("--reference", required=True, help="reference trajectory store")
    ev.add_argument("--rollout", required=True, help="rollout trajectory store (flashmd md)")
    ev.add_argument("--out", required=True, help="report directory (report.md, figures/)")
    ev.add_argument("--tolerances", help="YAML overriding flashmd/analysis/tolerances.yaml")
    ev.add_argument(
        "--trajectories",
        nargs="+",
        default=[],
        metavar="ID",
        help="REF_ID=RUN_ID pairs and/or ids restricting the matching by conditions",
    )
    ev.add_argument(
        "--energy",
        choices=["stored", "reference"],
        default="stored",
        help="rollout potential energies: as stored (the model's V) or recomputed with the "
        "reference recipe's calculator on the rollout frames",
    )
    ev.add_argument("--html", action="store_true", help="also write report.html")
    ev.add_argument("--no-figures", action="store_true", help="metrics and tables only")
    ev.add_argument("--quiet", action="store_true", help="no progress lines")
    ev.set_defaults(func=_cmd_evaluate)

    ins = commands.add_parser("inspect", help="table of a store's trajectories, size, compression")
    ins.add_argument("store")
    ins.set_defaults(func=_cmd_inspect)

    bench = commands.add_parser("bench", parents=[threads], help="benchmarks that print a table")
    bench.add_argument(
        "what", choices=["storage", "workers", "train-memory", "rollout", "evaluate", "speed"]
    )
    bench.add_argument(
        "--cells", type=int, default=3, help="fcc cubic cells per side (3: 108 atoms)"
    )
    bench.add_argument("--frames", type=int, default=2000, help="frames per run")
    bench.add_argument("--repeats", type=int, default=3, help="alternating repeats of each variant")
    bench.add_argument(
        "--sample-interval-fs",
        type=float,
        default=8.0,
        help="storage: fs between stored frames (timestep 2 fs)",
    )
    bench.add_argument(
        "--commit-every-s",
        type=_seconds,
        default=0.1,
        help="storage: the time-based commit interval priced (default %(default)g s)",
    )
    bench.add_argument("--workers", type=int, default=2)
    bench.add_argument("--trajectories", type=int, default=8)
    bench.add_argument("--factor", type=int, default=20, help="train-memory: store size ratio")
    bench.add_argument("--steps", type=int, default=40, help="train-memory: training steps")
    bench.add_argument(
        "--replicas",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8, 16, 32, 64],
        help="rollout: replica counts",
    )
    bench.add_argument("--strides", type=int, default=5, help="rollout: timed strides")
    bench.add_argument(
        "--eval-frames", type=int, default=10_000, help="evaluate: frames of each store"
    )
    speed = bench.add_argument_group("speed", "simulated ps per wall s: flashmd against MD")
    speed.add_argument("--model", default="emt-metals", help="shipped model name or checkpoint")
    speed.add_argument("--element", default="Cu", help="element of the fcc crystal")
    speed.add_argument(
        "--sizes", type=int, nargs="+", default=[3, 6], help="cubic cells per side (6: 864 atoms)"
    )
    speed.add_argument(
        "--stride-fs", type=float, nargs="+", default=[16.0, 32.0, 64.0], help="flashmd strides"
    )
    speed.add_argument("--temperature-K", type=float, default=600.0, help="equilibration, K")
    speed.add_argument(
        "--equilibration-fs", type=float, default=1000.0, help="reference Langevin before timing"
    )
    speed.add_argument(
        "--seconds", type=float, default=3.0, help="wall seconds of each timed run of each row"
    )
    speed.add_argument(
        "--devices", nargs="+", default=[], help="torch devices (default: cpu, and cuda if any)"
    )
    speed.add_argument(
        "--symplectic",
        action="store_true",
        help="add rows of symplectic strides (the model needs a generating function)",
    )
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flashmd`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        if hasattr(args, "threads"):
            configure_threads(args.threads)
        return func(args)
    except (RecipeError, StoreError, TrainingError, ValueError, FileNotFoundError) as error:
        print(f"flashmd {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            f"\nflashmd {args.command}: interrupted. Committed frames are kept; run the same "
            "command again to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
