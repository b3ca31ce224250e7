"""Universal machine-learned potentials as named reference calculators (the ``mlip`` extra).

Two real universal MLIPs install from the package index with their weights inside the wheel, so
they run offline:

* ``sevennet-0``: SevenNet-0 (``sevenn``; an e3nn-based NequIP-style network trained on PBE data);
  params ``model`` (default ``7net-0``; any name ``sevenn`` ships, e.g. ``7net-l3i5``) and
  ``device`` (default ``cpu``);
* ``chgnet``: CHGNet (``chgnet``); params ``model`` (default ``0.3.0``; ``r2scan`` is the
  r2SCAN transfer-learned model) and ``device`` (default ``cpu``).

In a recipe: ``calculator: {name: chgnet, params: {model: r2scan}}``. A store records, besides
package and version, the weights file's name and SHA-256 (:func:`weights_identity`), so two
stores made with different weights are never mistaken for one reference. Each costs about
1000 times asap3 EMT (``flashmd bench calculators`` prints the ratios on this machine):
budget the data.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator
from ase.data import chemical_symbols

from flashmd.data.recipes import RecipeError


@dataclass(frozen=True)
class MLIP:
    """A named universal potential: its package, default model, how to build it, where its
    weights lie and which atomic numbers a built calculator covers."""

    package: str
    default_model: str
    build: Callable[[str, str], Calculator]
    weights: Callable[[str], Path]
    covers: Callable[[Calculator], frozenset[int]]


def _sevennet(model: str, device: str) -> Calculator:
    from sevenn.calculator import SevenNetCalculator

    return SevenNetCalculator(model=model, device=device)


def _sevennet_weights(model: str) -> Path:
    from sevenn.util import pretrained_name_to_path

    return Path(pretrained_name_to_path(model))


def _sevennet_covers(calculator: Calculator) -> frozenset[int]:
    return frozenset(int(z) for z in calculator.type_map)


def _chgnet(model: str, device: str) -> Calculator:
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    network = CHGNet.load(model_name=model, use_device=device, verbose=False)
    return CHGNetCalculator(network, use_device=device, on_isolated_atoms="error")


def _chgnet_covers(calculator: Calculator) -> frozenset[int]:
    # one embedding row per atomic number from 1 (CHGNet: H to Pu, 94 rows)
    return frozenset(range(1, calculator.model.atom_embedding.embedding.num_embeddings + 1))


def _chgnet_weights(model: str) -> Path:
    import chgnet

    found = sorted((Path(chgnet.__file__).parent / "pretrained" / model).glob("*.pth.tar"))
    if len(found) != 1:
        raise RecipeError(f"chgnet ships no single weights file for model {model!r}")
    return found[0]


#: The named universal potentials.
MLIPS: dict[str, MLIP] = {
    "sevennet-0": MLIP("sevenn", "7net-0", _sevennet, _sevennet_weights, _sevennet_covers),
    "chgnet": MLIP("chgnet", "0.3.0", _chgnet, _chgnet_weights, _chgnet_covers),
}


def _settings(name: str, params: dict[str, Any]) -> tuple[MLIP, str, str]:
    mlip = MLIPS[name]
    unknown = set(params) - {"model", "device"}
    if unknown:
        raise RecipeError(
            f"calculator {name!r} takes params model and device, not {', '.join(sorted(unknown))}"
        )
    return mlip, str(params.get("model", mlip.default_model)), str(params.get("device", "cpu"))


def make_mlip(name: str, params: dict[str, Any]) -> Calculator:
    """The ASE calculator of the named universal potential (see the module docstring).

    Raises:
        RecipeError: the package is not installed (the message says how to install it), an
            unknown parameter, or a model the package does not ship.
    """
    mlip, model, device = _settings(name, params)
    try:
        with warnings.catch_warnings():
            # sevenn warns at every calculator it builds that no tensor-product accelerator
            # (cuEquivariance, FlashTP) is installed: true of every CPU run, and the generator
            # builds one calculator per trajectory. The speed it costs is measured by
            # `flashmd bench calculators`.
            warnings.filterwarnings("ignore", message="No tensor product accelerator")
            return mlip.build(model, device)
    except ImportError:
        raise RecipeError(
            f"calculator {name!r} needs {mlip.package}, which is not installed: "
            f"pip install 'flashmd[mlip]' (or pip install {mlip.package})"
        ) from None
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise RecipeError(f"calculator {name!r}, model {model!r}: {error}") from None


def check_covered(name: str, calculator: Calculator, numbers: Iterable[int], label: str) -> None:
    """Raise ``RecipeError`` when the named potential's ``calculator`` has no parameters for
    some of ``numbers`` (atomic numbers of the system ``label``), before any step is taken
    (SevenNet-0 would refuse them with its list of 89 numbers, CHGNet fail in a matrix product)."""
    covered = MLIPS[name].covers(calculator)
    missing = sorted(set(int(z) for z in numbers) - covered)
    if missing:
        symbols = ", ".join(chemical_symbols[z] for z in missing)
        raise RecipeError(
            f"{label}: calculator {name} was not trained on {symbols}; it covers "
            f"{len(covered)} elements from {chemical_symbols[min(covered)]} to "
            f"{chemical_symbols[max(covered)]}: choose a reference that covers every element "
            "of the system"
        )


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of the file at ``path``, read again only when its size or modification time
    changed (a checkpoint rewritten in the same process gets its new hash)."""
    status = path.stat()
    return _file_sha256(path, status.st_size, status.st_mtime_ns)


@functools.cache
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(name: str, params: dict[str, Any]) -> dict[str, str]:
    """``{"model", "weights_file", "weights_sha256"}`` of the named potential's weights."""
    mlip, model, _ = _settings(name, params)
    path = mlip.weights(model)
    return {"model": model, "weights_file": path.name, "weights_sha256": file_sha256(path)}
