"""Losses and metrics of the predictor and the energy model, with their normalisation.

Predictor targets are mass-scaled: the displacement ``(q' - q) √m`` (Å·√amu) and the momentum
``p' / √m`` (√amu·Å/ASE-time, i.e. √eV). Their squared errors are divided by the mean square of
the target for the atom's species at the pair's stride (:class:`Normalisation`), so every species
and stride weighs the same whatever its mass or the stride's length.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from flashmd import keys
from flashmd.models.generating import modified_stride_gradients, stride_gradients
from flashmd.models.model import FlashMDModel
from flashmd.nn.scatter import scatter_sum


@dataclass
class Normalisation:
    """Scales of the loss terms, computed once from training pairs.

    Attributes:
        species: atomic numbers, in the order of the tables' first axis.
        strides_fs: strides, in the order of the tables' second axis.
        displacement_ms: (n_species, n_strides) mean square of ``(q' - q) √m``, Å²·amu.
        momentum_ms: (n_species, n_strides) mean square of ``p' / √m``, eV.
        energy_per_atom_shift: (n_species,) least-squares reference energy per atom, eV.
        energy_per_atom_var: variance of the residual energy per atom, eV².
        forces_ms: mean square force component, (eV/Å)².
        stress_ms: mean square stress component, (eV/Å³)² (1.0 when no pair has stress).
    """

    species: tuple[int, ...]
    strides_fs: tuple[float, ...]
    displacement_ms: torch.Tensor
    momentum_ms: torch.Tensor
    energy_per_atom_shift: torch.Tensor
    energy_per_atom_var: float
    forces_ms: float
    stress_ms: float = 1.0

    def state_dict(self) -> dict:
        return {
            k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()
        }

    @classmethod
    def from_state_dict(cls, data: dict) -> Normalisation:
        tensors = ("displacement_ms", "momentum_ms", "energy_per_atom_shift")
        return cls(
            **{
                k: torch.tensor(v, dtype=torch.float64)
                if k in tensors
                else (tuple(v) if isinstance(v, list) else v)
                for k, v in data.items()
            }
        )

    def _index(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        numbers = batch[keys.NUMBERS]
        table = torch.full(
            (int(max(self.species)) + 1,), -1, dtype=torch.long, device=numbers.device
        )
        table[list(self.species)] = torch.arange(len(self.species), device=numbers.device)
        strides = torch.tensor(self.strides_fs, dtype=torch.float64, device=numbers.device)
        stride_of_system = batch[keys.STRIDE].to(torch.float64)
        stride_index = torch.argmin(torch.abs(stride_of_system[:, None] - strides), dim=1)
        return table[numbers], stride_index[batch[keys.SYSTEM]]

    def atom_scales(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(A,) mean squares of displacement and momentum targets for each atom's species/stride."""
        s, k = self._index(batch)
        device = batch[keys.POSITIONS].device
        return self.displacement_ms.to(device)[s, k], self.momentum_ms.to(device)[s, k]


def mass_scaled_targets(
    batch: dict[str, torch.Tensor], positions: torch.Tensor, momenta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``((q' - q) √m, p' / √m)`` of predicted or target ``positions``, ``momenta`` (A, 3)."""
    sqrt_m = batch[keys.MASSES].sqrt()[:, None]
    return (positions - batch[keys.POSITIONS]) * sqrt_m, momenta / sqrt_m


def compute_normalisation(
    pairs: Iterable[dict[str, torch.Tensor]],
    species: tuple[int, ...],
    strides_fs: tuple[float, ...],
) -> Normalisation:
    """Normalisation statistics from an iterable of single-system pair items (float64, CPU)."""
    n_s, n_k = len(species), len(strides_fs)
    sums = torch.zeros(2, n_s, n_k, dtype=torch.float64)
    counts = torch.zeros(n_s, n_k, dtype=torch.float64)
    compositions, energies, force_sq, force_n, stress_sq, stress_n = [], [], 0.0, 0, 0.0, 0
    index = {z: i for i, z in enumerate(species)}
    for item in pairs:
        d, p = mass_scaled_targets(item, item[keys.TARGET_POSITIONS], item[keys.TARGET_MOMENTA])
        k = strides_fs.index(float(item[keys.STRIDE][0]))
        s = torch.tensor([index[int(z)] for z in item[keys.NUMBERS]])
        sums[0, :, k].index_add_(0, s, (d**2).sum(1) / 3)
        sums[1, :, k].index_add_(0, s, (p**2).sum(1) / 3)
        counts[:, k].index_add_(0, s, torch.ones(len(s), dtype=torch.float64))
        compositions.append(torch.bincount(s, minlength=n_s).to(torch.float64))
        energies.append(float(item[keys.ENERGY][0]))
        if keys.FORCES in item:
            force_sq += float((item[keys.FORCES] ** 2).sum())
            force_n += item[keys.FORCES].numel()
        if keys.STRESS in item and bool(torch.isfinite(item[keys.STRESS]).all()):
            stress_sq += float((item[keys.STRESS] ** 2).sum())
            stress_n += item[keys.STRESS].numel()
    if not energies:
        raise ValueError("no training pairs to compute normalisation statistics from")
    counts = counts.clamp(min=1)
    composition = torch.stack(compositions)
    energy = torch.tensor(energies, dtype=torch.float64)
    shift = torch.linalg.lstsq(composition, energy[:, None]).solution[:, 0]
    residual = (energy - composition @ shift) / composition.sum(1)
    ms = sums / counts
    for table in ms:  # a species never seen at a stride borrows its mean over seen strides
        for row in table:
            seen = row > 0
            row[~seen] = row[seen].mean() if bool(seen.any()) else 1.0
    return Normalisation(
        species,
        strides_fs,
        ms[0],
        ms[1],
        shift,
        max(float(residual.var()) if len(residual) > 1 else 0.0, 1e-6),
        force_sq / force_n if force_n else 1.0,
        max(stress_sq / stress_n, 1e-12) if stress_n else 1.0,
    )


def input_noise(
    batch: dict[str, torch.Tensor],
    norm: Normalisation,
    positions_A: float,
    momenta: float,
    generator: torch.Generator,
    keep_kinetic_energy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, 3) position noise in Å and (A, 3) momentum noise for ``batch``'s atoms.

    Positions get ``positions_A`` Å per component; momenta get ``momenta`` times the RMS
    component of ``p`` for each atom's species and stride (``√(m · momentum_ms)``). Drawn on the
    CPU from ``generator`` so a run's noise depends on its seed alone, on any device. With
    ``keep_kinetic_energy`` each system's noisy momenta are scaled back to its clean kinetic
    energy ``Σ p² / 2m`` (the returned noise is then ``scaled noisy - clean``).
    """
    q = batch[keys.POSITIONS]
    _, p_ms = norm.atom_scales(batch)
    shape = tuple(q.shape)
    dq = torch.randn(shape, generator=generator, dtype=torch.float64) * positions_A
    dp = torch.randn(shape, generator=generator, dtype=torch.float64) * momenta
    p_rms = (p_ms.to(torch.float64).cpu() * batch[keys.MASSES].to(torch.float64).cpu()).sqrt()
    dp = dp * p_rms[:, None]
    if keep_kinetic_energy:
        p = batch[keys.MOMENTA].detach().to(torch.float64).cpu()
        inv_m = 1.0 / batch[keys.MASSES].to(torch.float64).cpu()[:, None]
        system = batch[keys.SYSTEM].cpu()
        n_systems = int(batch[keys.N_ATOMS].shape[0])
        clean = scatter_sum((p**2 * inv_m).sum(1), system, n_systems)
        noisy = scatter_sum(((p + dp) ** 2 * inv_m).sum(1), system, n_systems)
        scale = torch.sqrt(clean / noisy.clamp(min=torch.finfo(torch.float64).tiny))
        dp = (p + dp) * scale[system][:, None] - p
    return dq.to(q.device, q.dtype), dp.to(q.device, q.dtype)


def predictor_loss(
    model: FlashMDModel,
    batch: dict[str, torch.Tensor],
    norm: Normalisation,
    positions: torch.Tensor,
    momenta: torch.Tensor,
) -> torch.Tensor:
    """Normalised mean squared error of mass-scaled displacements and momenta (scalar)."""
    d_pred, p_pred = mass_scaled_targets(batch, positions, momenta)
    d_true, p_true = mass_scaled_targets(
        batch, batch[keys.TARGET_POSITIONS], batch[keys.TARGET_MOMENTA]
    )
    d_scale, p_scale = norm.atom_scales(batch)
    d_err = ((d_pred - d_true) ** 2).mean(1) / d_scale
    p_err = ((p_pred - p_true) ** 2).mean(1) / p_scale
    return (d_err + p_err).mean()


def true_midpoint(model: FlashMDModel, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch at its pairs' true midpoints ``((x + x')/2)``, neighbours listed anew there."""
    from flashmd.data.graph import with_neighbors

    return with_neighbors(
        {
            **batch,
            keys.POSITIONS: 0.5 * (batch[keys.POSITIONS] + batch[keys.TARGET_POSITIONS]),
            keys.MOMENTA: 0.5 * (batch[keys.MOMENTA] + batch[keys.TARGET_MOMENTA]),
        },
        model.cutoff,
    )


def midpoint_prediction(
    model: FlashMDModel,
    batch: dict[str, torch.Tensor],
    create_graph: bool = False,
    midpoint: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The generating function's stride at the true pair's midpoint: ``x + J ∇S((x + x')/2)``,
    positions (A, 3) Å and momenta (A, 3), for the batch's pairs (no solve: the midpoint
    condition of :mod:`flashmd.md.symplectic` evaluated with the true end ``x'``).

    ``midpoint``: :func:`true_midpoint` of the batch, when already built; ``create_graph`` keeps
    the graph of the derivatives of ``W`` (training).
    """
    assert model.generating is not None and model.energy_model is not None
    midpoint = true_midpoint(model, batch) if midpoint is None else midpoint
    dq, dp = stride_gradients(model.generating, model.energy_model, midpoint, create_graph)
    return batch[keys.POSITIONS] + dq, batch[keys.MOMENTA] + dp


def modified_midpoint_prediction(
    model: FlashMDModel, batch: dict[str, torch.Tensor], midpoint: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The parameter-free modified midpoint map's stride from the same true midpoint
    (:func:`~flashmd.models.generating.modified_stride_gradients`): positions (A, 3) Å and
    momenta (A, 3), no graph; the target :func:`midpoint_prediction` is distilled towards."""
    assert model.energy_model is not None
    dq, dp = modified_stride_gradients(model.energy_model, midpoint)
    return batch[keys.POSITIONS] + dq, batch[keys.MOMENTA] + dp


def _species_groups(
    batch: dict[str, torch.Tensor], norm: Normalisation
) -> tuple[torch.Tensor, int]:
    """(A,) group of each atom, ``system · n_species + species index``, and the number of groups."""
    s, _ = norm._index(batch)
    n_groups = int(batch[keys.N_ATOMS].shape[0]) * len(norm.species)
    return batch[keys.SYSTEM] * len(norm.species) + s, n_groups


def kinetic_energies(
    batch: dict[str, torch.Tensor], norm: Normalisation, momenta: torch.Tensor
) -> torch.Tensor:
    """(G,) kinetic energy ``Σ p² / 2m`` in eV of each species group of each system (group ``g =
    system · n_species + species index``; empty groups are 0) for ``momenta`` (A, 3)."""
    group, n_groups = _species_groups(batch, norm)
    return scatter_sum((momenta**2).sum(1) / (2 * batch[keys.MASSES]), group, n_groups)


def expected_kinetic_energies(batch: dict[str, torch.Tensor], norm: Normalisation) -> torch.Tensor:
    """(G,) expected kinetic energy in eV of each species group of each system after the stride,
    ``Σ 3/2 · momentum_ms`` from the normalisation table (0 for empty groups)."""
    group, n_groups = _species_groups(batch, norm)
    _, p_scale = norm.atom_scales(batch)
    return scatter_sum(1.5 * p_scale.to(batch[keys.MASSES].dtype), group, n_groups)


def kinetic_loss(
    batch: dict[str, torch.Tensor], norm: Normalisation, momenta: torch.Tensor
) -> torch.Tensor:
    """Mean over species groups of ``((K_pred - K_true) / K_expected)²`` after the stride (scalar).

    A predictor trained on squared error alone returns the conditional mean of the momenta, whose
    kinetic energy falls short of the true one by its error's variance: the deficit the energy
    filter must make up, about 10 % at 64 fs. This term asks for the right kinetic energy of each
    species in each system, so it also asks for equipartition between species.
    """
    predicted = kinetic_energies(batch, norm, momenta)
    true = kinetic_energies(batch, norm, batch[keys.TARGET_MOMENTA])
    expected = expected_kinetic_energies(batch, norm).to(momenta.dtype)
    present = expected > 0
    return (((predicted - true) / expected.clamp(min=1e-12))[present] ** 2).mean()


def potential_differences(
    energy_model: torch.nn.Module, batch: dict[str, torch.Tensor], positions: torch.Tensor
) -> torch.Tensor:
    """(S,) ``V(q'_pred) - V(q'_true)`` in eV of each system: the energy model's potential
    energy at the predicted positions ``positions`` (A, 3) Å and at the true ones after the
    stride, each with its own neighbour list. Gradients reach ``positions`` only."""
    from flashmd.data.graph import with_neighbors

    cutoff = float(energy_model.config.cutoff)
    predicted = with_neighbors({**batch, keys.POSITIONS: positions}, cutoff)
    v_pred = energy_model.compute(predicted, forces=False)[keys.ENERGY]
    with torch.no_grad():
        true = with_neighbors({**batch, keys.POSITIONS: batch[keys.TARGET_POSITIONS]}, cutoff)
        v_true = energy_model.compute(true, forces=False)[keys.ENERGY]
    return v_pred - v_true


def potential_shifts(
    energy_model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    norm: Normalisation,
    positions: torch.Tensor,
) -> torch.Tensor:
    """(S,) :func:`potential_differences` over each system's expected kinetic energy (eV,
    :func:`expected_kinetic_energies`), dimensionless. The energy model must be kept fixed."""
    expected = expected_kinetic_energies(batch, norm).to(positions.dtype)
    per_system = expected.reshape(-1, len(norm.species)).sum(1)
    return potential_differences(energy_model, batch, positions) / per_system


def potential_loss(shifts: torch.Tensor) -> torch.Tensor:
    """Mean over systems of the squared :func:`potential_shifts` (scalar).

    With the kinetic term trained away, the scatter of ``V`` at the predicted positions is what
    makes the energy filter redo strides, and its bias what shifts a thermostatted rollout's mean
    potential energy; this term asks for both to vanish.
    """
    return (shifts**2).mean()


def potential_bias_loss(shifts: torch.Tensor) -> torch.Tensor:
    """The squared mean over the batch's systems of :func:`potential_shifts` (scalar): the bias
    alone. A stride that adds potential energy on average makes a thermostatted rollout settle
    with configurations too hot (``scripts/energy_partition.py``); this term asks for no bias
    without asking each stride's scatter away, which the squared form can only reduce by pulling
    the predicted positions towards lower energy."""
    return shifts.mean() ** 2


def energy_loss(
    batch: dict[str, torch.Tensor],
    norm: Normalisation,
    energy: torch.Tensor,
    forces: torch.Tensor | None,
    weights,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(energy term, forces term): per-atom energy MSE / its variance, force MSE / mean square."""
    n_atoms = batch[keys.N_ATOMS].to(energy.dtype)
    e_err = ((energy - batch[keys.ENERGY]) / n_atoms) ** 2
    e_term = e_err.mean() / norm.energy_per_atom_var
    f_term = torch.zeros((), dtype=energy.dtype, device=energy.device)
    if forces is not None and keys.FORCES in batch:
        f_term = ((forces - batch[keys.FORCES]) ** 2).mean() / norm.forces_ms
    return weights.energy * e_term, weights.forces * f_term


def stress_loss(
    batch: dict[str, torch.Tensor], norm: Normalisation, stress: torch.Tensor
) -> torch.Tensor:
    """Stress MSE / its mean square (scalar): ``stress`` (S, 3, 3) eV/Å³ against the batch's.

    The stress is the energy model's response to a strain of the cell, which forces and energies
    at one density do not pin down; a barostat driven by the model's virial settles at the
    volume where this stress vanishes, so its error becomes the volume's. Systems whose stress is
    unknown (NaN: a trajectory stored without stress, or a slab) do not count."""
    error = known_stress_errors(stress, batch[keys.STRESS])
    if not len(error):
        return torch.zeros((), dtype=stress.dtype, device=stress.device)
    return (error**2).mean() / norm.stress_ms


def known_stress_errors(stress: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """(K, 3, 3) ``stress - true`` (eV/Å³, each (S, 3, 3)) of the K systems where both are finite
    (NaN marks a stress unknown: a trajectory stored without it, or a slab)."""
    known = torch.isfinite(true).all(dim=(1, 2)) & torch.isfinite(stress).all(dim=(1, 2))
    return stress[known] - true[known]


def has_known_stress(batch: dict[str, torch.Tensor]) -> bool:
    """Whether some system of ``batch`` carries a known (finite) stress: else a stress term has
    nothing to compare and the strain derivative need not be taken."""
    return keys.STRESS in batch and bool(torch.isfinite(batch[keys.STRESS]).all(dim=(1, 2)).any())


def filtered_momenta(
    batch: dict[str, torch.Tensor],
    target_energy: torch.Tensor,
    potential_energy: torch.Tensor,
    momenta: torch.Tensor,
) -> torch.Tensor:
    """(A, 3) ``momenta`` filtered as a rollout's energy filter does
    (:func:`flashmd.md.filters.rescale`): each system's internal part scaled so that ``K + V``
    equals ``target_energy`` (S,) eV at ``potential_energy`` (S,) eV; unchanged where no real
    factor exists."""
    from flashmd.md.filters import rescale
    from flashmd.md.state import MDState

    n_systems = len(batch[keys.N_ATOMS])
    state = MDState(
        positions=batch[keys.POSITIONS],
        momenta=momenta,
        masses=batch[keys.MASSES].to(momenta.dtype),
        numbers=batch[keys.NUMBERS],
        system=batch[keys.SYSTEM],
        fixed=torch.zeros_like(batch[keys.SYSTEM], dtype=torch.bool),
        cell=batch[keys.CELL],
        pbc=batch[keys.PBC],
        n_atoms=batch[keys.N_ATOMS],
        ids=torch.arange(n_systems, device=momenta.device),
        target_energy=target_energy.to(momenta.dtype),
        generator=torch.Generator(device=momenta.device),
    )
    return rescale(state, potential_energy.to(momenta.dtype)).momenta
