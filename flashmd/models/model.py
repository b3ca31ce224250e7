"""``FlashMDModel``: the predictor and energy model shipped together, with input validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ase
import torch
from ase.data import atomic_masses, chemical_symbols

from flashmd import keys
from flashmd.data.graph import batch_from_atoms
from flashmd.models.config import BackboneConfig
from flashmd.models.energy import EnergyModel
from flashmd.models.generating import GeneratingFunction
from flashmd.models.kick import KickField
from flashmd.models.predictor import Predictor

#: Relative tolerance when comparing strides and masses with the supported ones.
RTOL = 1e-6


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` gives CUDA when available, else CPU; anything else goes to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _names(numbers: Sequence[int]) -> str:
    return ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in numbers)


class FlashMDModel(torch.nn.Module):
    """A long-stride predictor and/or an energy model for the same species and cutoff, and
    optionally a generating function for symplectic strides and a learned kick for hybrid Monte
    Carlo's proposals.

    Args:
        predictor: the long-stride map, or None (an energy-only model).
        energy_model: the energy model, or None (no energy filter, no calculator).
        masses: training mass in amu of each species; defaults to ASE's standard masses.
        generating: the learned correction of the generating function of symplectic strides
            (:mod:`flashmd.models.generating`), or None; it needs the energy model.
        kick: a vector field read in the energy model's forward pass that stands in for its
            forces in leapfrog proposals (:mod:`flashmd.models.kick`), or None; it needs the
            energy model it was trained on.

    Raises:
        ValueError: neither model given, models disagreeing on species or cutoff (a generating
            function's cutoff may be shorter than the others'), masses not
            covering exactly the species, or a generating function or kick without an energy
            model (a kick: without the one it was trained on).
    """

    def __init__(
        self,
        predictor: Predictor | None = None,
        energy_model: EnergyModel | None = None,
        masses: Mapping[int, float] | None = None,
        generating: GeneratingFunction | None = None,
        kick: KickField | None = None,
    ) -> None:
        super().__init__()
        models = [m for m in (predictor, energy_model, generating, kick) if m is not None]
        if predictor is None and energy_model is None:
            raise ValueError("FlashMDModel needs a predictor, an energy model or both")
        if generating is not None and energy_model is None:
            raise ValueError(
                "a generating function needs the energy model it was trained with (S = h(K + V "
                "+ W)); pass energy_model"
            )
        if kick is not None and (
            energy_model is None or not kick.config.backbone_matches(energy_model.config)
        ):
            raise ValueError(
                "a kick reads the energy model it was trained on, and this model has "
                f"{'none' if energy_model is None else 'another one'}; train a kick for it "
                "(flashmd train-kick)"
            )
        species, cutoff = models[0].config.species, models[0].config.cutoff
        for m in models[1:]:
            # a generating function may see fewer neighbours than the model's neighbour list
            # holds (it keeps the edges within its own cutoff): a cheaper W
            shorter = m is generating and m.config.cutoff <= cutoff
            if m.config.species != species or (m.config.cutoff != cutoff and not shorter):
                raise ValueError(
                    f"the models disagree: species {species} vs {m.config.species}, cutoff "
                    f"{cutoff} vs {m.config.cutoff}"
                    + (
                        " (a generating function's cutoff may be shorter, not longer)"
                        if m is generating
                        else ""
                    )
                )
        masses = {z: float(atomic_masses[z]) for z in species} if masses is None else masses
        masses = {int(z): float(m) for z, m in masses.items()}
        if set(masses) != set(species):
            raise ValueError(f"masses are given for {sorted(masses)} but species are {species}")
        self.predictor = predictor
        self.energy_model = energy_model
        self.generating = generating
        self.kick = kick
        self.masses: dict[int, float] = masses

    @property
    def species(self) -> tuple[int, ...]:
        """Atomic numbers the model supports."""
        return self._config.species

    @property
    def cutoff(self) -> float:
        """Neighbour cutoff in Å."""
        return self._config.cutoff

    @property
    def strides_fs(self) -> tuple[float, ...]:
        """Strides in fs the predictor serves (empty without a predictor)."""
        return () if self.predictor is None else self.predictor.config.strides_fs

    @property
    def symplectic_strides_fs(self) -> tuple[float, ...]:
        """Strides in fs of symplectic strides (empty without a generating function)."""
        return () if self.generating is None else self.generating.config.strides_fs

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Float dtype of the weights."""
        return next(self.parameters()).dtype

    @property
    def _config(self) -> BackboneConfig:
        if self.predictor is not None:
            return self.predictor.config
        assert self.energy_model is not None  # the constructor requires one of them
        return self.energy_model.config

    def check_species(self, numbers: Sequence[int] | torch.Tensor) -> None:
        """Raise ``ValueError`` naming any atomic number the model was not trained on."""
        present = torch.as_tensor(numbers).unique().tolist()
        unknown = sorted(set(present) - set(self.species))
        if unknown:
            raise ValueError(
                f"the model does not support {_names(unknown)}; it supports {_names(self.species)}"
            )

    def check_strides(
        self, stride_fs: Sequence[float] | torch.Tensor, symplectic: bool = False
    ) -> None:
        """Raise ``ValueError`` naming any stride (fs) that is not one of :attr:`strides_fs`
        (of :attr:`symplectic_strides_fs` when ``symplectic``)."""
        if symplectic:
            self.check_symplectic()
            strides = self.symplectic_strides_fs
        elif self.predictor is None:
            raise ValueError("this model has no predictor; it can only compute energies")
        else:
            strides = self.strides_fs
        supported = torch.tensor(strides, dtype=torch.float64)
        for stride in torch.as_tensor(stride_fs, dtype=torch.float64).unique().tolist():
            if not bool(torch.any(torch.abs(supported - stride) <= RTOL * supported)):
                raise ValueError(
                    f"stride {stride:g} fs is not supported; supported "
                    f"{'symplectic ' if symplectic else ''}strides are "
                    f"{[f'{s:g}' for s in strides]} fs"
                )

    def check_symplectic(self) -> None:
        """Raise ``ValueError``, saying how to train one, if the model has no generating
        function (symplectic strides need one)."""
        if self.generating is None:
            raise ValueError(
                "this model has no generating function, so it cannot take symplectic strides; "
                "train one from its stride data with a recipe that sets 'generating: {preset: "
                "small}' and keeps this model's energy model fixed (see "
                "training/emt-metals-symplectic.yaml), or run without symplectic strides"
            )

    def check_masses(self, numbers: torch.Tensor, masses: torch.Tensor) -> None:
        """Raise ``ValueError`` if masses differ from the masses the model was trained with."""
        numbers, masses = numbers.cpu(), masses.detach().cpu().to(torch.float64)
        table = torch.zeros(int(numbers.max()) + 1, dtype=torch.float64)
        for z, m in self.masses.items():
            if z < len(table):
                table[z] = m
        expected = table[numbers]
        bad = torch.abs(masses - expected) > RTOL * expected
        if bool(bad.any()):
            k = int(bad.nonzero()[0])
            z = int(numbers[k])
            raise ValueError(
                f"atom {k} ({chemical_symbols[z]}) has mass {float(masses[k]):g} amu but the model "
                f"was trained with {self.masses[z]:g} amu; use the training masses "
                f"(atoms.set_masses) or a model trained for these masses"
            )

    def validate(self, batch: dict[str, torch.Tensor], predict: bool = False) -> None:
        """Check species (and, when ``predict``, strides and masses) of a batch."""
        self.check_species(batch[keys.NUMBERS])
        if predict:
            keys.check_batch(batch, (keys.STRIDE, keys.MASSES))
            self.check_strides(batch[keys.STRIDE])
            self.check_masses(batch[keys.NUMBERS], batch[keys.MASSES])

    def make_batch(
        self,
        atoms: ase.Atoms | Sequence[ase.Atoms],
        stride_fs: float | Sequence[float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Batch ``atoms`` on the model's device and dtype with neighbours at its cutoff."""
        batch = batch_from_atoms(atoms, self.cutoff, stride_fs, self.device, self.dtype)
        self.validate(batch, predict=stride_fs is not None)
        return batch

    def predict(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions ``(A, 3)`` Å and momenta ``(A, 3)`` one stride later (inputs validated)."""
        if self.predictor is None:
            raise ValueError("this model has no predictor; it can only compute energies")
        self.validate(batch, predict=True)
        return self.predictor(batch)

    def compute_energy(
        self, batch: dict[str, torch.Tensor], forces: bool = True, stress: bool = False
    ) -> dict[str, torch.Tensor]:
        """Energy ``(S,)`` eV, forces ``(A, 3)`` eV/Å, stress ``(S, 3, 3)`` eV/Å³ as requested."""
        if self.energy_model is None:
            raise ValueError("this model has no energy model; it can only predict strides")
        self.validate(batch)
        return self.energy_model.compute(batch, forces=forces, stress=stress)
