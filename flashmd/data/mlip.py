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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator

from flashmd.data.recipes import RecipeError


@dataclass(frozen=True)
class MLIP:
    """A named universal potential: its package, default model and how to build it."""

    package: str
    default_model: str
    build: Callable[[str, str], Calculator]
    weights: Callable[[str], Path]


def _sevennet(model: str, device: str) -> Calculator:
    from sevenn.calculator import SevenNetCalculator

    return SevenNetCalculator(model=model, device=device)


def _sevennet_weights(model: str) -> Path:
    from sevenn.util import pretrained_name_to_path

    return Path(pretrained_name_to_path(model))


def _chgnet(model: str, device: str) -> Calculator:
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    network = CHGNet.load(model_name=model, use_device=device, verbose=False)
    return CHGNetCalculator(network, use_device=device, on_isolated_atoms="error")


def _chgnet_weights(model: str) -> Path:
    import chgnet

    found = sorted((Path(chgnet.__file__).parent / "pretrained" / model).glob("*.pth.tar"))
    if len(found) != 1:
        raise RecipeError(f"chgnet ships no single weights file for model {model!r}")
    return found[0]


#: The named universal potentials.
MLIPS: dict[str, MLIP] = {
    "sevennet-0": MLIP("sevenn", "7net-0", _sevennet, _sevennet_weights),
    "chgnet": MLIP("chgnet", "0.3.0", _chgnet, _chgnet_weights),
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


@functools.cache
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(name: str, params: dict[str, Any]) -> dict[str, str]:
    """``{"model", "weights_file", "weights_sha256"}`` of the named potential's weights."""
    mlip, model, _ = _settings(name, params)
    path = mlip.weights(model)
    return {"model": model, "weights_file": path.name, "weights_sha256": _sha256(path)}
