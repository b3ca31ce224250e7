"""Validated YAML recipes for reference trajectory generation.

A recipe names the systems to simulate, the calculator, the thermodynamic conditions and the
sampling. :func:`load_recipe` turns YAML into a :class:`Recipe`; every error names the offending
field (``systems.2.supercell: ...``). Times are in fs and temperatures in K, as the names say.

Example (``data/al-emt-tiny.yaml``)::

    name: al-emt-tiny
    seed: 1
    calculator: {name: asap3-emt}
    systems:
      - {builder: crystal, element: Al, lattice: fcc, supercell: [2, 2, 2]}
    temperatures_K: [600]
    ensemble: {equilibration: langevin, production: nve}
    timestep_fs: 1.0
    sample_interval_fs: 4.0
    equilibration_fs: 100
    production_fs: 400
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)


class RecipeError(ValueError):
    """A recipe is malformed; the message names the field and what is wrong."""


def whole_multiple(
    value: float, unit: float, value_name: str, unit_name: str, minimum: int = 1
) -> int:
    """``value / unit`` when it is a whole number of at least ``minimum``.

    Raises:
        ValueError: naming both fields, e.g. "sample_interval_fs (5) must be a whole multiple of
            timestep_fs (2)".
    """
    ratio = value / unit
    if not math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-9) or round(ratio) < minimum:
        raise ValueError(f"{value_name} ({value}) must be a whole multiple of {unit_name} ({unit})")
    return round(ratio)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalculatorSpec(_Strict):
    """The reference calculator.

    ``name`` is ``asap3-emt`` (asap3's fast C++ EMT), ``emt`` (ASE's own EMT; a different
    parameterisation), ``lj``, ``morse``, a universal MLIP (``sevennet-0``, ``chgnet``; see
    :mod:`flashmd.data.mlip`), ``flashmd`` (a flashmd checkpoint's energy model,
    ``params: {model: NAME_OR_PATH}``: a teacher to distil from), or ``module:callable``
    returning any ASE calculator.
    ``params`` are passed to the calculator's constructor (or the callable).
    """

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class _SystemBase(_Strict):
    """Options shared by every system builder."""

    name: str | None = None
    supercell: tuple[PositiveInt, PositiveInt, PositiveInt] = (1, 1, 1)
    vacancies: Annotated[int, Field(ge=0)] = 0
    rattle: Annotated[float, Field(ge=0)] = 0.0
    """Standard deviation (Å) of Gaussian displacements applied to the built structure."""
    strain: float | tuple[float, float, float] = 0.0
    """Isotropic strain, or one per cell vector (0.01 = 1 % longer)."""
    temperatures_K: tuple[PositiveFloat, ...] | None = None
    """Overrides the recipe's temperatures for this system."""
    replicas: PositiveInt | None = None
    equilibration_fs: Annotated[float, Field(ge=0)] | None = None
    melt_K: PositiveFloat | None = None
    """Melt first: the equilibration begins with ``melt_fs`` of its thermostat at this
    temperature, then runs ``equilibration_fs`` at the trajectory's. A small periodic crystal
    superheats: 32 Cu atoms stayed crystalline for 7 ps at 1700 K under SevenNet-0, and 108 for 5 ps
    at 2500 K under asap3 EMT."""
    melt_fs: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _check_melt(self) -> _SystemBase:
        if (self.melt_K is None) != (self.melt_fs == 0):
            raise ValueError("melt_K and melt_fs go together: the temperature and time of melting")
        return self


class CrystalSystem(_SystemBase):
    """A bulk crystal of one element from ``ase.build.bulk``."""

    builder: Literal["crystal"]
    element: str
    lattice: Literal["fcc", "bcc", "hcp", "sc", "diamond"] = "fcc"
    a: PositiveFloat | None = None
    """Lattice constant in Å (default: ASE's reference value for the element)."""
    cubic: bool = True


class AlloySystem(_SystemBase):
    """A binary or multicomponent alloy on a cubic lattice, random or ordered."""

    builder: Literal["alloy"]
    elements: dict[str, PositiveFloat]
    """Element -> fraction (normalised). Random alloys draw sites per trajectory from its seed."""
    lattice: Literal["fcc", "bcc"] = "fcc"
    a: PositiveFloat | None = None
    """Lattice constant in Å (default: Vegard's law over ASE's reference values)."""
    ordered: Literal["L12", "L10", "B2"] | None = None

    @model_validator(mode="after")
    def _check_order(self) -> AlloySystem:
        if len(self.elements) < 2:
            raise ValueError("an alloy needs at least two elements")
        if self.ordered and len(self.elements) != 2:
            raise ValueError(f"ordered {self.ordered} needs exactly two elements")
        if self.ordered in ("L12", "L10") and self.lattice != "fcc":
            raise ValueError(f"{self.ordered} is an fcc ordering; set lattice: fcc")
        if self.ordered == "B2" and self.lattice != "bcc":
            raise ValueError("B2 is a bcc ordering; set lattice: bcc")
        return self


class SurfaceSystem(_SystemBase):
    """A slab from ``ase.build.fcc100/110/111`` (or bcc), periodic in-plane, vacuum along z."""

    builder: Literal["surface"]
    element: str
    lattice: Literal["fcc", "bcc"] = "fcc"
    facet: Literal["100", "110", "111"] = "111"
    size: tuple[PositiveInt, PositiveInt, PositiveInt] = (3, 3, 4)
    """Surface cells along a and b, and the number of layers."""
    vacuum: PositiveFloat = 10.0
    """Vacuum on each side of the slab, Å."""
    a: PositiveFloat | None = None


class FileSystem(_SystemBase):
    """Any structure file ASE can read; a relative path is relative to the recipe file."""

    builder: Literal["file"]
    path: str
    index: int = 0


System = Annotated[
    CrystalSystem | AlloySystem | SurfaceSystem | FileSystem, Field(discriminator="builder")
]


#: Ensemble fields added after stores were first written, with their defaults.
ADDED_ENSEMBLE_FIELDS: dict[str, Any] = {
    "pressure_GPa": None,
    "barostat_tau_fs": 1000.0,
    "compressibility_per_GPa": 0.01,
    "barostat_every": 10,
    "cell_mask": None,
}


#: System fields added after stores were first written, with their defaults.
ADDED_SYSTEM_FIELDS: dict[str, Any] = {"melt_K": None, "melt_fs": 0.0}


class EnsembleSpec(_Strict):
    """Equilibration thermostat and production ensemble.

    ``friction_per_fs`` is the Langevin friction in 1/fs; ``taut_fs`` the Bussi time constant.
    ``npt`` is Langevin with stochastic cell rescaling at ``pressure_GPa``
    (:class:`flashmd.ase.reference_npt.LangevinSCR`, the barostat of ``flashmd md --ensemble
    npt``), applied every ``barostat_every`` timesteps; ``cell_mask`` scales the x, y, z axes
    independently (None: isotropically).
    """

    equilibration: Literal["langevin", "bussi", "npt"] = "langevin"
    production: Literal["nve", "langevin", "bussi", "npt"] = "nve"
    friction_per_fs: PositiveFloat = 0.01
    taut_fs: PositiveFloat = 100.0
    pressure_GPa: float | None = None
    barostat_tau_fs: PositiveFloat = 1000.0
    compressibility_per_GPa: PositiveFloat = 0.01
    barostat_every: PositiveInt = 10
    cell_mask: tuple[bool, bool, bool] | None = None

    @model_validator(mode="after")
    def _pressure_with_npt(self) -> EnsembleSpec:
        uses_npt = "npt" in (self.equilibration, self.production)
        if uses_npt != (self.pressure_GPa is not None):
            raise ValueError(
                "an npt equilibration or production needs pressure_GPa, and pressure_GPa needs "
                "one of them"
            )
        return self


class Recipe(_Strict):
    """A whole generation recipe. Every trajectory is (system, temperature, replica)."""

    name: str
    seed: int = 0
    calculator: CalculatorSpec
    systems: list[System] = Field(min_length=1)
    temperatures_K: tuple[PositiveFloat, ...] = Field(min_length=1)
    ensemble: EnsembleSpec = EnsembleSpec()
    timestep_fs: PositiveFloat
    sample_interval_fs: PositiveFloat
    equilibration_fs: Annotated[float, Field(ge=0)] = 0.0
    production_fs: PositiveFloat
    replicas: PositiveInt = 1
    store_forces: bool = True
    #: store the reference stress of every frame (fully periodic systems only); for training
    #: energy models whose virial drives a barostat
    store_stress: bool = False

    @model_validator(mode="after")
    def _check_times(self) -> Recipe:
        whole_multiple(
            self.sample_interval_fs, self.timestep_fs, "sample_interval_fs", "timestep_fs"
        )
        whole_multiple(
            self.production_fs, self.sample_interval_fs, "production_fs", "sample_interval_fs", 0
        )
        return self

    def stored(self) -> dict[str, Any]:
        """The recipe as a store records it (and hashes it to recognise the store again): its
        JSON form without the fields added later (ensemble fields, ``store_stress``) that are at
        their default, so a store written before they existed still resumes."""
        data = self.model_dump(mode="json")
        for name, default in ADDED_ENSEMBLE_FIELDS.items():
            if data["ensemble"].get(name) == default:
                del data["ensemble"][name]
        if not data["store_stress"]:
            del data["store_stress"]
        for system in data["systems"]:
            for name, default in ADDED_SYSTEM_FIELDS.items():
                if system.get(name) == default:
                    del system[name]
        return data

    @property
    def steps_per_sample(self) -> int:
        return round(self.sample_interval_fs / self.timestep_fs)

    @property
    def frames_per_trajectory(self) -> int:
        """Stored frames per trajectory, including the first one at t = 0."""
        return round(self.production_fs / self.sample_interval_fs) + 1

    def tasks(self) -> Iterator[TrajectoryTask]:
        """Every trajectory, in a fixed order that does not depend on workers or shards."""
        index = 0
        for system_index, system in enumerate(self.systems):
            for temperature in system.temperatures_K or self.temperatures_K:
                for replica in range(system.replicas or self.replicas):
                    label = system_name(system)
                    yield TrajectoryTask(
                        index=index,
                        id=f"{index:05d}_{label}_{temperature:g}K_r{replica}",
                        system_index=system_index,
                        temperature_K=float(temperature),
                        replica=replica,
                    )
                    index += 1


@dataclass(frozen=True)
class TrajectoryTask:
    """One trajectory of a recipe: which system, temperature and replica, and its store id."""

    index: int
    id: str
    system_index: int
    temperature_K: float
    replica: int


def system_name(system: _SystemBase) -> str:
    """The system's name in trajectory ids: its ``name``, else one built from what it is."""
    if system.name:
        return system.name
    if isinstance(system, CrystalSystem):
        return f"{system.element}-{system.lattice}"
    if isinstance(system, AlloySystem):
        return "".join(system.elements) + (f"-{system.ordered}" if system.ordered else "-random")
    if isinstance(system, SurfaceSystem):
        return f"{system.element}{system.facet}-slab"
    if isinstance(system, FileSystem):
        return Path(system.path).stem
    raise TypeError(type(system))


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"invalid recipe {source}:"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"] if part not in _BUILDER_TAGS)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling against the documentation)"
        lines.append(f"  {location or '(top level)'}: {message}")
    return "\n".join(lines)


_BUILDER_TAGS = {"crystal", "alloy", "surface", "file"}

T = TypeVar("T", bound=BaseModel)


def validate_yaml(path: str | Path, model: type[T], kind: str, overrides: Mapping[str, Any]) -> T:
    """Read the YAML mapping in ``path``, replace its top-level fields by ``overrides`` (those
    not None) and validate it as ``model``; ``kind`` names the file in errors ("training
    recipe").

    Raises:
        RecipeError: the file is missing, is not valid YAML or not a mapping, or a field is
            wrong (each one named, an unknown key as such).
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{kind} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"invalid {kind} {path}: expected a mapping")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as error:
        lines = [f"invalid {kind} {path}:"]
        for item in error.errors():
            where = ".".join(str(p) for p in item["loc"]) or "(top level)"
            message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
            lines.append(f"  {where}: {message}")
        raise RecipeError("\n".join(lines)) from None


def parse_recipe(data: Any, source: str = "<recipe>", base_dir: Path | None = None) -> Recipe:
    """Validate a recipe given as a mapping; file systems' paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise RecipeError(f"invalid recipe {source}: expected a mapping at the top level")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as error:
        raise RecipeError(_format_errors(error, source)) from None
    if base_dir is not None:
        systems = [
            s.model_copy(update={"path": str((base_dir / s.path).resolve())})
            if isinstance(s, FileSystem) and not Path(s.path).is_absolute()
            else s
            for s in recipe.systems
        ]
        recipe = recipe.model_copy(update={"systems": systems})
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a YAML recipe file.

    Raises:
        RecipeError: the file is missing, is not valid YAML, or a field is wrong (named).
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(f"{path} is not valid YAML: {error}") from None
    return parse_recipe(data, source=str(path), base_dir=path.parent)
