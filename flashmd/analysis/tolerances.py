"""Tolerances and analysis settings of ``flashmd evaluate``, validated from YAML.

The defaults ship with the package in ``tolerances.yaml`` (documented field by field there). A
user file overrides any subset of fields in the same two sections, ``tolerances`` and
``analysis``; unknown fields, wrong types and out-of-range values are rejected with the field's
dotted name in the message.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]


class ToleranceError(ValueError):
    """A tolerance file is unreadable or invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tolerances(_Strict):
    """Largest accepted deviation of a rollout from its reference, per summary metric."""

    temperature_rel: NonNegative
    """|T_rollout - T_reference| / T_reference of the mean kinetic temperatures."""
    potential_energy_meV_per_atom: NonNegative
    """|V_rollout - V_reference| / N of the mean potential energies, meV/atom."""
    rdf_mean_abs: NonNegative
    """Mean over bins of |Δg(r)|, the largest over the total and the partials."""
    diffusion_rel: NonNegative
    """|D_rollout - D_reference| / D_reference (judged only for diffusive systems)."""
    vibrational_frequency_rel: NonNegative
    """|ν_rollout - ν_reference| / ν_reference of the mean vibrational frequencies (first moment of
    the VACF's spectrum within the band both samplings resolve)."""
    equipartition_rel: NonNegative
    """Largest |T_s - T| / T over species of the rollout's mean temperatures."""
    nve_drift_eV_per_atom_per_ps: NonNegative
    """|drift| of the rollout's total energy in eV/atom/ps (NVE rollouts only)."""
    overlap_frames: Annotated[int, Field(ge=0)]
    """Rollout frames whose closest pair is below the overlap threshold."""
    nan_count: Annotated[int, Field(ge=0)]
    """Non-finite values in the rollout's positions, momenta, cell and energy."""
    fallback_fraction: Annotated[float, Field(ge=0, le=1)]
    """Fraction of rollout strides the energy filter rejected and had redone (as half
    strides, or by velocity Verlet where the model serves no half stride)."""
    volume_rel: NonNegative
    """|<V>_rollout - <V>_reference| / <V>_reference of the mean volumes (constant pressure)."""
    volume_fluctuation_rel: NonNegative
    """Relative difference of the volumes' standard deviations, whose square is proportional to
    the isothermal compressibility (constant pressure)."""


class AnalysisSettings(_Strict):
    """How the observables are computed (the same for reference and rollout)."""

    overlap_fraction: Annotated[float, Field(gt=0, le=1)]
    """Overlap threshold as a fraction of the reference's smallest interatomic distance."""
    rdf_nbins: Annotated[int, Field(ge=2)]
    """RDF bins."""
    rdf_rmax_A: Positive | None
    """Largest RDF distance in Å; None: half the smallest periodic cell width."""
    rdf_max_frames: Annotated[int, Field(ge=1)]
    """Frames per trajectory used for the RDF at most, evenly spaced."""
    vacf_max_lag_fs: Positive
    """Largest VACF lag in fs."""
    msd_max_lag_fs: Positive
    """Largest MSD lag in fs."""
    diffusion: Literal["auto", "always", "never"]
    """Whether D is judged (auto: when the reference diffuses; a rollout alone diffusing fails)."""
    diffusive_msd_A2: Positive
    """MSD (Å^2) at the end of the fit window above which ``auto`` judges diffusion."""
    diffusion_fit: tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]]
    """Fit window of the MSD line as fractions (start, end) of the largest common lag."""

    @model_validator(mode="after")
    def _check_window(self) -> AnalysisSettings:
        start, end = self.diffusion_fit
        if not start < end:
            raise ValueError(f"diffusion_fit must have start < end, got {list(self.diffusion_fit)}")
        return self


class EvaluationConfig(_Strict):
    """Everything ``flashmd evaluate`` is configured with."""

    tolerances: Tolerances
    analysis: AnalysisSettings


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ToleranceError(f"{source}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ToleranceError(f"{source}: expected a mapping with tolerances/analysis sections")
    return data


def default_config_dict() -> dict[str, Any]:
    """The shipped defaults as a plain nested dictionary."""
    text = resources.files("flashmd.analysis").joinpath("tolerances.yaml").read_text()
    return _read_yaml(text, "flashmd/analysis/tolerances.yaml")


def _describe(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            problems.append(f"{field}: unknown field")
        else:
            problems.append(f"{field}: {item['msg']}")
    return f"{source}: " + "; ".join(problems)


def parse_config(
    overrides: dict[str, Any] | None = None, source: str = "tolerances"
) -> EvaluationConfig:
    """Defaults updated section by section with ``overrides``, validated.

    Raises:
        ToleranceError: an unknown section or field, or an invalid value (the field is named).
    """
    merged = default_config_dict()
    for section, values in (overrides or {}).items():
        if section not in merged:
            known = ", ".join(sorted(merged))
            raise ToleranceError(f"{source}: {section}: unknown section (known: {known})")
        if not isinstance(values, dict):
            raise ToleranceError(f"{source}: {section}: expected a mapping of fields")
        merged[section] = {**merged[section], **values}
    try:
        return EvaluationConfig.model_validate(merged)
    except ValidationError as error:
        raise ToleranceError(_describe(error, source)) from None


def load_config(path: str | os.PathLike | None = None) -> EvaluationConfig:
    """The defaults, overridden by the YAML file at ``path`` when given."""
    if path is None:
        return parse_config()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ToleranceError(f"cannot read tolerance file {path}: {error.strerror}") from None
    return parse_config(_read_yaml(text, str(path)), str(path))
