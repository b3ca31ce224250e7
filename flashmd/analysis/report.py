"""``flashmd evaluate``: physical validation of a rollout store against a reference store.

:func:`evaluate` pairs the trajectories of the two stores by condition (see
:mod:`flashmd.analysis.pairing`), reads every trajectory once, block by block
(:mod:`flashmd.analysis.observables`), pools the replicas of each side, judges the summary
metrics against the tolerances (:mod:`flashmd.analysis.metrics`) and writes into ``out``:

- ``report.md`` (and ``report.html`` on request): verdict, summary table, per condition the
  metric table with notes and the figures;
- ``figures/<condition>_<name>.png``;
- ``summary.json``: the same metrics, machine-readable, with the configuration used.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from flashmd.analysis.metrics import Metric, compare, compare_diffusion
from flashmd.analysis.observables import TrajectoryObservables, largest_rdf_rmax, observe
from flashmd.analysis.pairing import Condition, pair_trajectories
from flashmd.analysis.pooled import Pooled
from flashmd.analysis.reference_energy import energy_function, reference_calculator_spec
from flashmd.analysis.render import (
    Block,
    Code,
    Heading,
    Image,
    Paragraph,
    Table,
    to_html,
    to_markdown,
    to_text,
)
from flashmd.analysis.tolerances import EvaluationConfig, load_config
from flashmd.data.recipes import CalculatorSpec
from flashmd.data.store import TrajectoryStore
from flashmd.data.union import ReadableStore, open_reference

HEADER = ("metric", "reference", "rollout", "difference", "tolerance", "status")


@dataclass(frozen=True)
class ConditionReport:
    """Metrics and figures of one condition; ``figures`` maps a name to its PNG path."""

    condition: Condition
    metrics: list[Metric]
    reference: Pooled
    rollout: Pooled
    figures: dict[str, Path] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(m.status != "fail" for m in self.metrics)


@dataclass(frozen=True)
class EvaluationReport:
    """Outcome of :func:`evaluate`; ``passed`` is True when no metric failed."""

    reference: str
    rollout: str
    out: Path
    config: EvaluationConfig
    conditions: list[ConditionReport]
    unmatched: list[str]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.conditions)

    @property
    def failures(self) -> list[str]:
        """``"<condition>: <metric>"`` for every failed metric."""
        return [
            f"{c.condition.label}: {m.name}"
            for c in self.conditions
            for m in c.metrics
            if m.status == "fail"
        ]

    def summary_table(self) -> str:
        """The summary as aligned plain text (one row per condition and metric)."""
        return to_text(self.summary())

    def summary(self) -> Table:
        """The summary table: one row per condition and metric."""
        rows = [(c.condition.label, *_row(m)) for c in self.conditions for m in c.metrics]
        return Table(("condition", *HEADER), rows)


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def _row(metric: Metric) -> tuple[str, ...]:
    unit = f" ({metric.unit})" if metric.unit and metric.unit != "count" else ""
    shown = metric.difference_unit not in ("relative", metric.unit, "")
    diff_unit = f" {metric.difference_unit}" if shown else ""
    return (
        f"{metric.name}{unit}",
        _fmt(metric.reference),
        _fmt(metric.rollout),
        _fmt(metric.difference)
        + ("" if metric.noise is None else f" ± {metric.noise:.2g}")
        + diff_unit,
        metric.tolerance,
        metric.status.upper(),
    )


def _observe_side(
    store: ReadableStore,
    ids: Sequence[str],
    config: EvaluationConfig,
    rmax: float | None,
    energy_spec: CalculatorSpec | None = None,
) -> Pooled:
    observed: list[TrajectoryObservables] = []
    for i in ids:
        energy = None if energy_spec is None else energy_function(energy_spec, store[i])
        observed.append(observe(store[i], config.analysis, rmax, energy))
    intervals = {t.dt_fs for t in observed}
    if len(intervals) > 1:
        raise ValueError(
            f"{store.location}: trajectories {list(ids)} of one condition have different frame "
            f"intervals {sorted(intervals)} fs; pair them separately with --trajectories"
        )
    return Pooled(tuple(observed))


def _rdf_rmax(
    condition: Condition,
    reference: ReadableStore,
    rollout: TrajectoryStore,
    config: EvaluationConfig,
) -> float | None:
    if config.analysis.rdf_rmax_A is not None:
        return config.analysis.rdf_rmax_A
    readers = [reference[i] for i in condition.reference] + [rollout[i] for i in condition.rollout]
    limits = [largest_rdf_rmax(r) for r in readers]
    return None if any(x is None for x in limits) else min(x for x in limits if x is not None)


def evaluate_condition(
    condition: Condition,
    reference: ReadableStore,
    rollout: TrajectoryStore,
    config: EvaluationConfig,
    figures_dir: Path | None,
    energy_spec: CalculatorSpec | None = None,
) -> ConditionReport:
    """Observe, pool and judge one condition; draw its figures into ``figures_dir`` if given.

    ``energy_spec``: recompute the rollout's potential energies with this calculator.
    """
    rmax = _rdf_rmax(condition, reference, rollout, config)
    ref = _observe_side(reference, condition.reference, config, rmax)
    run = _observe_side(rollout, condition.rollout, config, rmax, energy_spec)
    metrics = compare(ref, run, config)
    drawn: dict[str, Path] = {}
    if figures_dir is not None:
        from flashmd.analysis.plots import save_figures

        found = compare_diffusion(ref, run, config)
        diffusion = None if isinstance(found, str) or not found.diffusive else found
        set_K = ref.first.temperature_K
        drawn = save_figures(
            figures_dir,
            condition.slug,
            ref,
            run,
            diffusion,
            None if set_K is None else float(set_K),
        )
    return ConditionReport(condition, metrics, ref, run, drawn)


def _describe(side: str, pooled: Pooled) -> str:
    first = pooled.first
    ids = ", ".join(t.traj_id for t in pooled.trajectories)
    nan_note = (
        f"; analysed up to the first non-finite frame ({pooled.n_frames} of "
        f"{sum(t.n_stored for t in pooled.trajectories)})"
        if pooled.nan_count
        else ""
    )
    return (
        f"{side}: {ids} — {pooled.n_frames} frames every {first.dt_fs:g} fs, "
        f"{first.ensemble} ensemble, centre of mass {'fixed' if first.fixed_com else 'free'}"
        f"{nan_note}."
    )


def build_blocks(report: EvaluationReport) -> list[Block]:
    """The report as document blocks (see :mod:`flashmd.analysis.render`)."""
    verdict = (
        "PASS: every tolerance held."
        if report.passed
        else f"FAIL: {len(report.failures)} metric(s) out of tolerance: "
        + "; ".join(report.failures)
        + "."
    )
    blocks: list[Block] = [
        Heading("flashmd evaluation report", 1),
        Paragraph(f"Reference store: {report.reference}. Rollout store: {report.rollout}."),
        Paragraph(verdict),
        Heading("Summary"),
        report.summary(),
    ]
    if report.unmatched:
        blocks += [Heading("Not compared"), Paragraph("; ".join(report.unmatched) + ".")]
    for item in report.conditions:
        blocks += [
            Heading(item.condition.label),
            Paragraph(_describe("Reference", item.reference)),
            Paragraph(_describe("Rollout", item.rollout)),
            Table((*HEADER, "note"), [(*_row(m), m.note) for m in item.metrics]),
        ]
        for name, path in item.figures.items():
            relative = Path(os.path.relpath(path, report.out)).as_posix()
            blocks.append(Image(relative, f"{item.condition.label}: {name}"))
    config = yaml.safe_dump(report.config.model_dump(mode="json"), sort_keys=False)
    blocks += [Heading("Configuration"), Code(config)]
    return blocks


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def summary_dict(report: EvaluationReport) -> dict:
    """The report's metrics and configuration as JSON-ready data."""
    return _json_safe(
        {
            "passed": report.passed,
            "reference": report.reference,
            "rollout": report.rollout,
            "conditions": [
                {
                    "label": c.condition.label,
                    "reference_ids": list(c.condition.reference),
                    "rollout_ids": list(c.condition.rollout),
                    "passed": c.passed,
                    "metrics": [m.as_dict() for m in c.metrics],
                    "figures": {k: str(v) for k, v in c.figures.items()},
                }
                for c in report.conditions
            ],
            "unmatched": report.unmatched,
            "config": report.config.model_dump(mode="json"),
        }
    )  # type: ignore[return-value]


def evaluate(
    reference: str | os.PathLike | Sequence[str | os.PathLike],
    rollout: str | os.PathLike,
    out: str | os.PathLike,
    tolerances: str | os.PathLike | EvaluationConfig | None = None,
    trajectories: Sequence[str] = (),
    figures: bool = True,
    html: bool = False,
    progress: Callable[[str], None] | None = None,
    energy: str = "stored",
) -> EvaluationReport:
    """Compare the rollout store with the reference store and write the report into ``out``.

    Args:
        reference, rollout: trajectory stores (paths or fsspec URLs); ``reference`` may be
            several stores of one calculator, pooled (:mod:`flashmd.data.union`).
        out: report directory (created; files in it are overwritten).
        tolerances: a YAML file overriding the defaults, or a parsed configuration.
        trajectories: explicit selection (``REF_ID=RUN_ID`` pairs and/or plain ids).
        figures: draw the PNG figures.
        html: also write ``report.html``.
        progress: called with a line of text before each condition.
        energy: the rollout's potential energies: ``stored`` (its own, e.g. the model's energy
            model) or ``reference`` (recomputed with the reference recipe's calculator; see
            :mod:`flashmd.analysis.reference_energy`).

    Raises:
        StoreError: a store is missing or not a flashmd store.
        ToleranceError, PairingError, ValueError: bad tolerances, nothing to compare, unusable
            trajectories. Nothing is written to ``out`` before the inputs are validated.
    """
    config = tolerances if isinstance(tolerances, EvaluationConfig) else load_config(tolerances)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a directory for the report")
    if energy not in ("stored", "reference"):
        raise ValueError(f"energy must be 'stored' or 'reference', got {energy!r}")
    ref_store, run_store = open_reference(reference), TrajectoryStore.open(rollout)
    energy_spec = reference_calculator_spec(ref_store) if energy == "reference" else None
    pairing = pair_trajectories(ref_store, run_store, trajectories)
    results = []
    for condition in pairing.conditions:
        if progress is not None:
            progress(f"evaluating {condition.label}")
        figures_dir = out / "figures" if figures else None
        results.append(
            evaluate_condition(condition, ref_store, run_store, config, figures_dir, energy_spec)
        )
    report = EvaluationReport(
        ref_store.location, str(rollout), out, config, results, pairing.unmatched
    )
    out.mkdir(parents=True, exist_ok=True)
    blocks = build_blocks(report)
    (out / "report.md").write_text(to_markdown(blocks))
    if html:
        (out / "report.html").write_text(to_html(blocks, "flashmd evaluation report"))
    (out / "summary.json").write_text(json.dumps(summary_dict(report), indent=2) + "\n")
    return report
