"""Reference calculators named by recipes, and their exact identity for provenance.

``asap3-emt`` and ``emt`` are different parameterisations of EMT (for Ni they differ by up to
10 meV/atom and 0.06 eV/Å): one is never substituted for the other. ``sevennet-0`` and
``chgnet`` are universal machine-learned potentials (:mod:`flashmd.data.mlip`); their stores
also record the weights' SHA-256. ``flashmd`` is the energy model of a flashmd checkpoint
(``params: {model: NAME_OR_PATH}``): a teacher to distil a cheaper energy model from without a
call of the reference it learned; its stores record the checkpoint's SHA-256.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Sequence
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator

from flashmd.data.mlip import MLIPS, check_covered, file_sha256, make_mlip, weights_identity
from flashmd.data.recipes import CalculatorSpec, RecipeError
from flashmd.data.store import StoreError, TrajectoryStore

#: Elements each built-in EMT parameterisation covers.
EMT_ELEMENTS: dict[str, frozenset[str]] = {
    "asap3-emt": frozenset({"Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"}),
    "emt": frozenset({"H", "C", "N", "O", "Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"}),
}
BUILTIN = ("asap3-emt", "emt", "lj", "morse", "flashmd", *MLIPS)
#: Parameters of the ``flashmd`` calculator: the checkpoint (a shipped name or a path).
FLASHMD_PARAMS = frozenset({"model"})


def _import_callable(name: str):
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise RecipeError(f"calculator {name!r}: cannot import {module_name!r}: {error}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise RecipeError(f"calculator {name!r}: {module_name} has no {attribute!r}") from None


def make_calculator(spec: CalculatorSpec) -> Calculator:
    """A fresh calculator instance for ``spec`` (each trajectory gets its own).

    Raises:
        RecipeError: unknown name, asap3 not installed, bad parameters.
    """
    name, params = spec.name, dict(spec.params)
    try:
        if name == "asap3-emt":
            try:
                from asap3 import EMT as AsapEMT
            except ImportError:
                raise RecipeError(
                    "calculator 'asap3-emt' needs asap3, which is not installed: "
                    "pip install 'flashmd[fast]' (or pip install asap3). ASE's own EMT ('emt') is "
                    "a different parameterisation and is not substituted silently."
                ) from None
            return AsapEMT(**params)
        if name == "emt":
            from ase.calculators.emt import EMT

            return EMT(**params)
        if name == "lj":
            from ase.calculators.lj import LennardJones

            return LennardJones(**params)
        if name == "morse":
            from ase.calculators.morse import MorsePotential

            return MorsePotential(**params)
        if name in MLIPS:
            return make_mlip(name, params)
        if name == "flashmd":
            return _flashmd_energy(params)
        if ":" in name:
            calculator = _import_callable(name)(**params)
            if not isinstance(calculator, Calculator) and not hasattr(calculator, "get_forces"):
                raise RecipeError(
                    f"calculator {name!r} returned {type(calculator)!r}, not an ASE calculator"
                )
            return calculator
    except TypeError as error:
        raise RecipeError(f"calculator.params for {name!r}: {error}") from None
    raise RecipeError(
        f"calculator.name: unknown calculator {name!r}; use one of {', '.join(BUILTIN)} "
        "or 'module:callable' returning an ASE calculator"
    )


def _flashmd_checkpoint(params: dict[str, Any]):
    """The checkpoint file a ``flashmd`` calculator's params name."""
    from flashmd.models.io import checkpoint_path

    unknown = sorted(set(params) - FLASHMD_PARAMS)
    if "model" not in params or unknown:
        raise RecipeError(
            "calculator 'flashmd' takes params: {model: NAME_OR_PATH} (a shipped model's name or "
            f"a checkpoint path), got {sorted(params)}"
        )
    try:
        return checkpoint_path(params["model"])
    except FileNotFoundError as error:
        raise RecipeError(f"calculator 'flashmd': {error}") from None


def _flashmd_energy(params: dict[str, Any]) -> Calculator:
    """The energy model of the checkpoint ``params["model"]`` as an ASE calculator, on the CPU."""
    from flashmd.ase.calculator import EnergyCalculator
    from flashmd.models.io import load_model

    path = _flashmd_checkpoint(params)
    try:
        return EnergyCalculator(load_model(path, device="cpu"))
    except ValueError as error:  # not a checkpoint, another version, no energy model
        raise RecipeError(f"calculator 'flashmd' ({path}): {error}") from None


def _weights(spec: CalculatorSpec) -> dict[str, str] | None:
    """The weights' identity of a named MLIP or flashmd checkpoint (None for other calculators)."""
    if spec.name in MLIPS:
        return weights_identity(spec.name, dict(spec.params))
    if spec.name == "flashmd":
        path = _flashmd_checkpoint(dict(spec.params))
        return {"weights_file": path.name, "weights_sha256": file_sha256(path)}
    return None


def check_elements(spec: CalculatorSpec, symbols: set[str], label: str) -> None:
    """Raise when a built-in EMT is asked for elements it has no parameters for."""
    supported = EMT_ELEMENTS.get(spec.name)
    if supported is not None and not symbols <= supported:
        raise RecipeError(
            f"{label}: calculator {spec.name} has no parameters for "
            f"{', '.join(sorted(symbols - supported))}; it supports {', '.join(sorted(supported))}"
        )


def serving_calculator(spec: CalculatorSpec, systems: Sequence[tuple[Atoms, str]]) -> Calculator:
    """A fresh calculator of ``spec`` after checking that it covers every element of each
    ``(atoms, label)`` of ``systems`` (EMT's parameter sets before it is built, an MLIP's
    training elements after); ``label`` names the system in the message.

    Raises:
        RecipeError: an element the calculator has no parameters for, or what
            :func:`make_calculator` raises.
    """
    for atoms, label in systems:
        check_elements(spec, set(atoms.get_chemical_symbols()), label)
    calculator = make_calculator(spec)
    if spec.name in MLIPS:
        for atoms, label in systems:
            check_covered(spec.name, calculator, atoms.numbers, label)
    if spec.name == "flashmd":
        for atoms, label in systems:
            try:
                calculator.model.check_species(atoms.numbers)
            except ValueError as error:
                raise RecipeError(f"{label}: calculator flashmd: {error}") from None
    return calculator


def attach_calculator(spec: CalculatorSpec, atoms: Atoms, label: str) -> Calculator:
    """Attach a fresh calculator of ``spec`` to ``atoms`` after checking that it covers every
    element of them (:func:`serving_calculator`); returns it.

    Raises:
        RecipeError: an element the calculator has no parameters for (``label`` names the
            system in the message), or what :func:`make_calculator` raises.
    """
    atoms.calc = serving_calculator(spec, [(atoms, label)])
    return atoms.calc


def _version_of(module_name: str) -> str:
    top = module_name.split(".")[0]
    try:
        return importlib.metadata.version(top)
    except importlib.metadata.PackageNotFoundError:
        module = importlib.import_module(top)
        return str(getattr(module, "__version__", "unknown"))


def provenance(spec: CalculatorSpec, calculator: Calculator) -> dict[str, Any]:
    """The calculator's exact identity: recipe name, class, package and version, parameters,
    and for a universal MLIP its model and weights (file name and SHA-256)."""
    cls = type(calculator)
    found = {
        "name": spec.name,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "package": cls.__module__.split(".")[0],
        "version": _version_of(cls.__module__),
        "params": dict(spec.params),
    }
    found.update(_weights(spec) or {})
    return found


def check_same_weights(spec: CalculatorSpec, store: TrajectoryStore) -> None:
    """Raise ``StoreError`` before any work when a trajectory of ``store`` was written with other
    weights than the calculator has now: another ``sevenn`` or ``chgnet`` release, or another
    ``flashmd`` checkpoint under the same name. Resuming would mix two references in one store."""
    current = _weights(spec)
    if current is None:
        return
    for traj_id in store.ids():
        recorded = store[traj_id].attrs.get("calculator", {})
        digest = recorded.get("weights_sha256")
        if digest is not None and digest != current["weights_sha256"]:
            if spec.name == "flashmd":
                now = f"the checkpoint {spec.params.get('model')!r} is now"
                fix = "Restore that checkpoint to resume it"
            else:
                now = "the installed package ships"
                release = f"{recorded.get('package')} {recorded.get('version')}"
                fix = f"Install {release} again to resume it"
            raise StoreError(
                f"{store.location}: trajectory {traj_id} was written with {spec.name} weights "
                f"{recorded.get('weights_file')} (sha256 {digest[:12]}, "
                f"{recorded.get('package')} {recorded.get('version')}), but {now} "
                f"{current['weights_file']} (sha256 {current['weights_sha256'][:12]}); resuming "
                f"would mix two references in one store. {fix}, or write to a new store."
            )


def keeps_state(spec: CalculatorSpec) -> bool:
    """Whether the calculator carries state between calls that can change its results' last bits.

    asap3's and ASE's EMT, LJ and Morse keep a neighbour list with a skin between calls: the order
    in which forces are summed depends on where the list was last built, so a fresh calculator at
    the same positions can differ in the last bits. The MLIPs build their graph on every call.
    Unknown (``module:callable``) calculators are assumed to keep state.
    """
    return spec.name not in MLIPS and spec.name != "flashmd"
