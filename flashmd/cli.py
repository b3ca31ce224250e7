"""The ``flashmd`` command line: generate, inspect, train, learn, md, evaluate, demo, models and
bench. The options are defined in :mod:`flashmd.cli_parser`; this module runs the commands.

Every command turns the library's own errors (bad recipe, foreign store, ...) into one clear line
on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence

from flashmd.cli_parser import DEFAULT_TEMPERATURE_K, build_parser
from flashmd.data.recipes import RecipeError
from flashmd.data.store import StoreError
from flashmd.termination import terminate_as_interrupt
from flashmd.threads import configure_threads
from flashmd.train.errors import TrainingError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: A reader closed the output early (``flashmd inspect STORE | head``): 128 + SIGPIPE, as shell
#: tools exit.
EXIT_BROKEN_PIPE = 141


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


def md_temperature(args: argparse.Namespace) -> tuple[float, str]:
    """The temperature ``flashmd md`` runs at and a line that says why and what it sets."""
    given = args.temperature_K is not None
    temperature = args.temperature_K if given else DEFAULT_TEMPERATURE_K
    uses = [
        f"starts from the trajectories at this temperature in {args.start_from}"
        if args.start_from
        else "initial Maxwell-Boltzmann momenta"
    ]
    if args.ensemble != "nve":
        uses.append(f"{args.ensemble} bath")
    why = "--temperature-K" if given else "no --temperature-K given: the default"
    return temperature, f"flashmd md: {temperature:g} K ({why}): {', '.join(uses)}"


def _cmd_md(args: argparse.Namespace) -> int:
    from flashmd.data.generate import parse_shard
    from flashmd.md.batch import MDSettings, run_md

    temperature_K, line = md_temperature(args)
    print(line, file=sys.stderr)
    settings = MDSettings(
        model=args.model,
        structures=tuple(args.structures),
        recipe=args.recipe,
        start_from=args.start_from,
        ensemble=args.ensemble,
        temperature_K=temperature_K,
        stride_fs=args.stride_fs,
        strides=args.strides,
        every=args.every,
        replicas=args.replicas,
        seed=args.seed,
        friction_per_fs=args.friction_per_fs,
        taut_fs=args.taut_fs,
        energy_filter=not args.no_filter,
        symplectic=args.symplectic or False,
        uncertainty=args.uncertainty,
        adaptive_threshold_A=args.adaptive_threshold_A,
        persistence=args.persistence,
        check_reversibility=not args.no_reversibility_check,
        uniform_drift=args.uniform_drift,
        extra_chances=args.extra_chances,
        leapfrog_steps=args.leapfrog_steps,
        learned_kick=args.learned_kick,
        splitting=args.splitting,
        sample_calculator=args.sample,
        pressure_GPa=args.pressure_GPa,
        barostat_tau_fs=args.barostat_tau_fs,
        compressibility_per_GPa=args.compressibility_per_GPa,
        cell_mask=args.cell_mask,
        **{
            name: getattr(args, name)
            for name in (
                "max_cooling",
                "max_heating",
                "contact_fraction",
                "solver_tolerance_A",
                "solver_max_iterations",
                "corrector_iterations",
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
        compiled=args.compile,
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
        + (
            f"; {report.acceptance_rate:.1%} of strides accepted (metropolis, sampling "
            f"{settings.sample_calculator or 'the energy model'}'s V)"
            if settings.ensemble == "metropolis"
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


def _cmd_models(args: argparse.Namespace) -> int:
    from flashmd.catalog import format_models, shipped_models

    print(format_models(shipped_models()))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from flashmd.bench.generator import bench_storage, bench_workers

    if args.what == "evaluate":
        from flashmd.bench.evaluate import bench_evaluate

        print(bench_evaluate(frames=args.eval_frames, n_atoms_per_side=args.cells))
    elif args.what == "rollout":
        from flashmd.bench.rollout import bench_rollout

        print(bench_rollout(replicas=args.replicas, strides=args.strides))
    elif args.what == "speed":
        from flashmd.bench.speed import bench_speed

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
                reference=args.reference,
                lattice_a=args.lattice_a,
                corrector_iterations=args.corrector_iterations or (),
                compiled=args.compile,
            )
        )
    elif args.what == "calculators":
        from flashmd.bench.generator import bench_calculators

        sizes = tuple(args.sizes)
        print(bench_calculators(tuple(args.calculators), args.element, sizes, args.repeats))
    elif args.what == "train-memory":
        from flashmd.bench.train_memory import bench_train_memory

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


def _cmd_train_kick(args: argparse.Namespace) -> int:
    from flashmd.md.splitting import SPLITTINGS
    from flashmd.models.io import checkpoint_path, load_model, read_checkpoint, save_checkpoint
    from flashmd.train.kick import add_kick

    if args.frames_per_trajectory < 1 or args.steps < 1 or args.tune_steps < 1:
        raise ValueError("--frames-per-trajectory, --steps and --tune-steps must be >= 1")
    model, report = add_kick(
        load_model(args.model, "cpu"),
        args.store,
        args.validation_store,
        args.frames_per_trajectory,
        args.steps,
        args.seed,
        progress=not args.quiet,
        step_fs=args.step_fs,
        tune_steps=args.tune_steps,
        retune=args.retune,
        splitting=SPLITTINGS[args.splitting],
    )
    metadata = read_checkpoint(checkpoint_path(args.model))["metadata"]
    retuned_from = metadata.get("kick") if args.retune else None
    metadata["kick"] = {
        "model": str(args.model),
        "store": args.store,
        "validation_store": args.validation_store or args.store,
        "frames_per_trajectory": args.frames_per_trajectory,
        "steps": args.steps,
        "seed": args.seed,
        "step_fs": args.step_fs,
        "splitting": args.splitting,
        "tune_steps": args.tune_steps if args.step_fs else 0,
        **dataclasses.asdict(report),
        **({"retuned_from": retuned_from} if args.retune else {}),
    }
    save_checkpoint(model, args.output, metadata)
    made = "retuned" if args.retune else f"trained on {report.train_frames} frames of {args.store}"
    print(
        f"kick {made} in {report.seconds:.0f} s: "
        f"RMS of a + grad V {report.validation_error:.4f} eV/Å against RMS force "
        f"{report.validation_force:.3f} eV/Å on {report.validation_frames} validation frames; "
        f"wrote {args.output}"
    )
    for name, (error, force) in report.per_trajectory.items():
        print(f"  {name}: {error:.4f} eV/Å of {force:.3f}")
    if report.step_energy_error is not None:
        before, after = report.step_energy_error
        print(
            f"tuned for {args.step_fs:g} fs {args.splitting} steps: mean (ΔH/kT)² of one step on "
            f"the validation frames {before:.4f} -> {after:.4f}"
        )
    return 0


#: What each subcommand of :func:`~flashmd.cli_parser.build_parser` runs.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "generate": _cmd_generate,
    "inspect": _cmd_inspect,
    "train": _cmd_train,
    "train-kick": _cmd_train_kick,
    "learn": _cmd_learn,
    "md": _cmd_md,
    "demo": _cmd_demo,
    "evaluate": _cmd_evaluate,
    "models": _cmd_models,
    "bench": _cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flashmd`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    func = COMMANDS[args.command]
    try:
        if hasattr(args, "threads"):
            configure_threads(args.threads)
        with terminate_as_interrupt():  # a scheduler's time limit stops it like Ctrl-C
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
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of what the closed pipe
    did not take raises nothing (the recipe of Python's ``signal`` documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (a test's capture)
        pass


if __name__ == "__main__":
    sys.exit(main())
