"""Validation metrics: per-stride RMSE of positions and momenta against the free-flight baseline,
and energy and force errors of the energy model, on a fixed set of held-out pairs."""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable

import torch

from flashmd import keys
from flashmd.data.dataset import StridePairs, collate_pairs
from flashmd.data.graph import batch_to
from flashmd.data.store import TrajectoryStore
from flashmd.models.model import FlashMDModel
from flashmd.train.errors import TrainingError
from flashmd.train.losses import (
    has_known_stress,
    known_stress_errors,
    midpoint_prediction,
    potential_differences,
)
from flashmd.units import FS


def held_out_batches(
    store: str,
    traj_ids: list[str],
    strides_fs: tuple[float, ...],
    pairs_per_stride: int,
    batch_size: int,
    cutoff: float,
    device: torch.device,
    dtype: torch.dtype,
    seed: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """A fixed, seeded set of ``pairs_per_stride`` pairs per stride from ``traj_ids``, batched on
    ``device``; the same arguments always give the same pairs. The pairs are spread over every
    block (chunk) of every trajectory, not drawn from the first few."""
    if not traj_ids:
        return []
    items: dict[float, list] = {float(s): [] for s in strides_fs}
    data = StridePairs(store, traj_ids, strides_fs, shuffle=True, seed=seed)
    wanted = 2 * pairs_per_stride * len(strides_fs)  # twice: strides are drawn at random
    data.pairs_per_block = max(1, math.ceil(wanted / len(data.blocks)))
    for item in data:
        bucket = items[float(item[keys.STRIDE][0])]
        if len(bucket) < pairs_per_stride:
            bucket.append(item)
        if all(len(b) >= pairs_per_stride for b in items.values()):
            break
    flat = [item for bucket in items.values() for item in bucket]
    return [
        batch_to(collate_pairs(flat[i : i + batch_size], cutoff), device, dtype)
        for i in range(0, len(flat), batch_size)
    ]


def free_flight(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline ``(q + S p / m, p)``: (A, 3) positions in Å and momenta, unchanged."""
    stride = (batch[keys.STRIDE] * FS)[batch[keys.SYSTEM]][:, None]
    velocities = batch[keys.MOMENTA] / batch[keys.MASSES][:, None]
    return batch[keys.POSITIONS] + stride * velocities, batch[keys.MOMENTA]


def _add_stress_errors(
    sums: dict[str, float], counts: dict[str, int], stress: torch.Tensor, true: torch.Tensor
) -> None:
    """Stress (S, 3, 3) eV/Å³ against the true one: squared errors for ``stress_rmse_GPa`` and
    the pressure's error (``-trace / 3``) for ``pressure_bias_GPa``, the mean a barostat feels.
    Systems of unknown stress (NaN) are left out."""
    from ase.units import GPa

    error = known_stress_errors(stress, true) / GPa
    sums["stress_rmse_GPa"] += float((error**2).sum())
    counts["stress_rmse_GPa"] += error.numel()
    sums["pressure_bias_GPa"] += float(-torch.diagonal(error, dim1=1, dim2=2).sum() / 3)
    counts["stress_systems"] += len(error)


def evaluate(model: FlashMDModel, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Metrics over ``batches`` (on the model's device and dtype, with neighbours).

    Keys: ``pos_rmse_{S}`` (Å), ``pos_ff_rmse_{S}``, ``pos_ratio_{S}`` (model / free flight),
    ``mom_rmse_{S}`` (amu·Å/ASE-time), ``mom_ff_rmse_{S}``, ``mom_ratio_{S}`` for every stride S in
    fs, and ``kinetic_ratio_{S}``, the predicted over the true kinetic energy after the stride
    (below 1: strides lose energy, which the energy filter must restore); ``energy_rmse_meV_atom``
    and ``forces_rmse_meV_A`` with an energy model (and ``stress_rmse_GPa`` and
    ``pressure_bias_GPa``, model minus reference, when the pairs carry stress), and with both
    models ``potential_shift_{S}``, the mean of ``(V(q'_pred) - V(q'_true)) / N`` in meV/atom by
    the energy model (above 0: the stride turns kinetic into potential energy, which a
    thermostatted rollout keeps as too high a potential energy at the right kinetic temperature;
    :func:`~flashmd.train.losses.potential_loss` trains it away); with a generating function,
    the same position and momentum keys prefixed ``mid_`` for its midpoint condition on the true
    pairs
    (:func:`~flashmd.train.losses.midpoint_prediction`; free flight is the baseline there too).
    """
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    was_training = model.training
    model.eval()
    for batch in batches:
        if model.predictor is not None:
            with torch.no_grad():
                positions, momenta = model.predictor(batch)
            _add_stride_errors(sums, counts, "", batch, positions, momenta)
            if model.energy_model is not None:
                _add_potential_shift(sums, model.energy_model, batch, positions)
        if model.generating is not None:
            positions, momenta = midpoint_prediction(model, batch)
            _add_stride_errors(sums, counts, "mid_", batch, positions, momenta)
        if model.energy_model is not None:
            with_stress = has_known_stress(batch)
            out = model.energy_model.compute(
                batch, forces=keys.FORCES in batch, stress=with_stress, nonperiodic_stress="nan"
            )
            per_atom = (out[keys.ENERGY] - batch[keys.ENERGY]) / batch[keys.N_ATOMS]
            sums["energy_rmse_meV_atom"] += float((per_atom**2).sum()) * 1e6
            counts["energy_rmse_meV_atom"] += len(per_atom)
            if keys.FORCES in batch:
                sums["forces_rmse_meV_A"] += (
                    float(((out[keys.FORCES] - batch[keys.FORCES]) ** 2).sum()) * 1e6
                )
                counts["forces_rmse_meV_A"] += batch[keys.FORCES].numel()
            if with_stress:
                _add_stress_errors(sums, counts, out[keys.STRESS].detach(), batch[keys.STRESS])
    model.train(was_training)
    metrics = {name: (sums[name] / counts[name]) ** 0.5 for name in sums if name in counts}
    if "pressure_bias_GPa" in sums:
        metrics["pressure_bias_GPa"] = sums["pressure_bias_GPa"] / counts["stress_systems"]
    for name in [n for n in sums if n.startswith("potential_shift_")]:
        metrics[name] = sums[name] / counts[name.replace("potential_shift_", "kinetic_systems_")]
    for name in [n for n in sums if n.startswith("kinetic_") and "_true_" not in n]:
        stride = name.removeprefix("kinetic_")
        metrics[f"kinetic_ratio_{stride}"] = sums[name] / sums[f"kinetic_true_{stride}"]
    for name in list(metrics):
        if name.startswith(("pos_rmse_", "mom_rmse_", "mid_pos_rmse_", "mid_mom_rmse_")):
            label, stride = name.split("_rmse_")
            metrics[f"{label}_ratio_{stride}"] = (
                metrics[name] / metrics[f"{label}_ff_rmse_{stride}"]
            )
    return metrics


def _add_stride_errors(
    sums: dict[str, float],
    counts: dict[str, int],
    prefix: str,
    batch: dict[str, torch.Tensor],
    positions: torch.Tensor,
    momenta: torch.Tensor,
) -> None:
    """Add one batch's squared errors per stride of ``positions`` and ``momenta`` (A, 3), and of
    free flight, to ``sums`` and ``counts`` under keys starting with ``prefix``; the unprefixed
    (direct predictor's) keys also add the kinetic energies before and after."""
    positions, momenta = positions.detach(), momenta.detach()
    baseline = free_flight(batch)
    atom_stride = batch[keys.STRIDE][batch[keys.SYSTEM]]
    for stride in batch[keys.STRIDE].unique().tolist():
        mask = atom_stride == stride
        name = f"{stride:g}"
        for label, pred, ff, target in (
            ("pos", positions, baseline[0], batch[keys.TARGET_POSITIONS]),
            ("mom", momenta, baseline[1], batch[keys.TARGET_MOMENTA]),
        ):
            sums[f"{prefix}{label}_rmse_{name}"] += float(((pred - target)[mask] ** 2).sum())
            sums[f"{prefix}{label}_ff_rmse_{name}"] += float(((ff - target)[mask] ** 2).sum())
            counts[f"{prefix}{label}_rmse_{name}"] += int(mask.sum()) * 3
            counts[f"{prefix}{label}_ff_rmse_{name}"] += int(mask.sum()) * 3
        if prefix:
            continue
        inverse_mass = 1.0 / batch[keys.MASSES][mask][:, None]
        sums[f"kinetic_{name}"] += float((momenta[mask] ** 2 * inverse_mass).sum())
        sums[f"kinetic_true_{name}"] += float(
            (batch[keys.TARGET_MOMENTA][mask] ** 2 * inverse_mass).sum()
        )
        counts[f"kinetic_systems_{name}"] += int((batch[keys.STRIDE] == stride).sum())


def _add_potential_shift(
    sums: dict[str, float],
    energy_model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    positions: torch.Tensor,
) -> None:
    """Add one batch's sum over systems of ``(V(q'_pred) - V(q'_true)) / N`` (meV/atom) per
    stride to ``sums`` (counted by ``_add_stride_errors``' ``kinetic_systems_`` keys)."""
    with torch.no_grad():
        differences = potential_differences(energy_model, batch, positions.detach())
    per_atom = 1e3 * differences / batch[keys.N_ATOMS]
    for stride in batch[keys.STRIDE].unique().tolist():
        sums[f"potential_shift_{stride:g}"] += float(per_atom[batch[keys.STRIDE] == stride].sum())


def validation_store_ids(location: str) -> list[str]:
    """The complete trajectories of a held-out store (``validation_store``)."""
    store = TrajectoryStore.open(location)
    ids = [t for t in store.ids() if store[t].status == "complete"]
    if not ids:
        raise TrainingError(
            f"validation_store {location} holds no complete trajectory; finish its generation "
            "(flashmd generate RECIPE -o STORE resumes it) or validate on a split of the store"
        )
    return ids


def validation_set(config) -> tuple[str, list[str]]:
    """Where a training recipe's held-out trajectories lie: ``(location, trajectory ids)``, the
    complete trajectories of its ``validation_store``, else its store's held-out split. Warns
    when some of them ran under a thermostat (:func:`warn_thermostatted`)."""
    from flashmd.data.dataset import split_trajectories

    if config.validation_store is not None:
        location, ids = config.validation_store, validation_store_ids(config.validation_store)
    else:
        store = TrajectoryStore.open(config.store)
        location, ids = config.store, split_trajectories(store, config.validation, config.seed)[1]
    warn_thermostatted(location, ids)
    return location, ids


def warn_thermostatted(location: str, ids: list[str]) -> None:
    """Warn when validation trajectories were stored under a thermostat: their stride pairs
    carry its random kicks (Langevin at 0.01/fs: about sqrt(2 γ S) = 0.57 of a thermal momentum
    over S = 16 fs), which no deterministic stride predicts, so their stride errors measure the
    noise (energies and forces stay valid)."""
    store = TrajectoryStore.open(location)
    thermostatted = sorted(
        {str((store[t].attrs.get("ensemble") or {}).get("production", "nve")) for t in ids}
        - {"nve"}
    )
    if thermostatted:
        warnings.warn(
            f"validation trajectories of {location} ran under {', '.join(thermostatted)}: their "
            "stride errors include the thermostat's random kicks. Validate strides on NVE "
            "trajectories, e.g. NVE continuations of its frames (scripts/nve_continuations.py)",
            stacklevel=3,
        )


def validate_run(config, pairs_per_stride: int, checkpoint: str = "best.pt") -> dict[str, float]:
    """Metrics of a finished run's exported model on its held-out trajectories.

    Args:
        config: the run's :class:`~flashmd.train.config.TrainConfig` (same store, split, seed).
        pairs_per_stride: held-out pairs per stride to evaluate.
        checkpoint: the file in the run directory to evaluate.
    """
    from pathlib import Path

    from flashmd.models.io import load_checkpoint

    model = load_checkpoint(Path(config.output) / checkpoint, device=config.device)
    location, val_ids = validation_set(config)
    batches = held_out_batches(
        location,
        val_ids,
        tuple(model.strides_fs or config.strides_fs),
        pairs_per_stride,
        config.batch_size,
        model.cutoff,
        model.device,
        model.dtype,
        seed=config.seed + 2,
    )
    return evaluate(model, batches)


def format_metrics(metrics: dict[str, float], strides_fs: Iterable[float]) -> str:
    """A table of the per-stride metrics and the energy-model errors."""
    lines = []
    strides = [f"{s:g}" for s in strides_fs if f"pos_rmse_{s:g}" in metrics]
    if strides:
        lines.append(
            "stride fs  pos RMSE Å  free flight Å  ratio   mom RMSE   free flight  ratio  K'/K'true"
            "  dV meV/atom"
        )
        for s in strides:
            lines.append(
                f"{s:>9}  {metrics[f'pos_rmse_{s}']:10.4f}  {metrics[f'pos_ff_rmse_{s}']:13.4f}  "
                f"{metrics[f'pos_ratio_{s}']:5.3f}  {metrics[f'mom_rmse_{s}']:9.4f}  "
                f"{metrics[f'mom_ff_rmse_{s}']:11.4f}  {metrics[f'mom_ratio_{s}']:5.3f}  "
                f"{metrics.get(f'kinetic_ratio_{s}', float('nan')):9.3f}  "
                f"{metrics.get(f'potential_shift_{s}', float('nan')):+11.2f}"
            )
    mid = [f"{s:g}" for s in strides_fs if f"mid_pos_rmse_{s:g}" in metrics]
    if mid:
        lines.append("generating function, midpoint condition on the true pairs (no solve):")
        lines.append("stride fs  pos RMSE Å  ratio   mom RMSE   ratio")
        for s in mid:
            pos, mom = metrics[f"mid_pos_rmse_{s}"], metrics[f"mid_mom_rmse_{s}"]
            lines.append(
                f"{s:>9}  {pos:10.4f}  {metrics[f'mid_pos_ratio_{s}']:5.3f}  {mom:9.4f}  "
                f"{metrics[f'mid_mom_ratio_{s}']:5.3f}"
            )
    if "energy_rmse_meV_atom" in metrics:
        lines.append(
            f"energy RMSE {metrics['energy_rmse_meV_atom']:.3f} meV/atom, forces RMSE "
            f"{metrics.get('forces_rmse_meV_A', float('nan')):.2f} meV/Å"
        )
    if "stress_rmse_GPa" in metrics:
        lines.append(
            f"stress RMSE {metrics['stress_rmse_GPa']:.3f} GPa, pressure bias "
            f"{metrics['pressure_bias_GPa']:+.3f} GPa"
        )
    return "\n".join(lines)
