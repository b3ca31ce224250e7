"""Checkpoints: save and load a :class:`FlashMDModel` with everything needed to trust it.

A checkpoint is a ``torch.save`` dictionary (readable with ``weights_only=True``)::

    format           "flashmd.checkpoint"
    format_version   FORMAT_VERSION (int; bumped whenever this layout or any architecture changes)
    flashmd_version  flashmd.__version__ of the writer
    kind             "flashmd"
    units            flashmd.units.UNITS
    species          [Z, ...]           masses  {Z: amu}
    strides_fs       [fs, ...]          cutoff  Å
    dtype            "float32" | "float64"
    models           {"predictor": {"kind", "config", "state_dict"}, "energy": {...},
                     "generating": {...}, "kick": {...}} (predictor or energy or both;
                     "generating", the correction of symplectic strides, and "kick", the
                     learned kick of leapfrog proposals, only beside "energy")
    metadata         free-form dict (training recipe, dataset, ...)

Loading checks every field and raises errors that say what is wrong and what to do.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

import flashmd
from flashmd.models.config import BackboneConfig
from flashmd.models.energy import EnergyConfig, EnergyModel
from flashmd.models.generating import GeneratingConfig, GeneratingFunction
from flashmd.models.kick import KickConfig, KickField
from flashmd.models.model import FlashMDModel, resolve_device
from flashmd.models.predictor import Predictor, PredictorConfig
from flashmd.units import UNITS

FORMAT = "flashmd.checkpoint"
FORMAT_VERSION = 1
KIND = "flashmd"
#: Directory of the checkpoints shipped with the library, loadable by name.
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"

_Module = type[Predictor] | type[EnergyModel] | type[GeneratingFunction] | type[KickField]
_MODELS: dict[str, tuple[_Module, type[BackboneConfig]]] = {
    config.kind: (module, config)
    for module, config in (
        (Predictor, PredictorConfig),
        (EnergyModel, EnergyConfig),
        (GeneratingFunction, GeneratingConfig),
        (KickField, KickConfig),
    )
}
_FIELDS = (
    "format_version",
    "flashmd_version",
    "kind",
    "units",
    "species",
    "masses",
    "strides_fs",
    "cutoff",
    "dtype",
    "models",
    "metadata",
)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class CheckpointError(ValueError):
    """A file that is not a valid flashmd checkpoint for this version of the library."""


def checkpoint_dict(model: FlashMDModel, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dictionary of ``model`` (weights copied to CPU)."""
    models = {
        module.config.kind: {
            "kind": module.config.kind,
            "config": module.config.to_dict(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        }
        for module in (model.predictor, model.energy_model, model.generating, model.kick)
        if module is not None
    }
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "flashmd_version": flashmd.__version__,
        "kind": KIND,
        "units": dict(UNITS),
        "species": list(model.species),
        "masses": dict(model.masses),
        "strides_fs": list(model.strides_fs),
        "cutoff": float(model.cutoff),
        "dtype": str(model.dtype).removeprefix("torch."),
        "models": models,
        "metadata": dict(metadata or {}),
    }


def save_checkpoint(
    model: FlashMDModel, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` to ``path`` atomically (a temporary file then ``os.replace``).

    Args:
        model: what to save.
        path: destination file (conventionally ``*.pt``); its directory must exist.
        metadata: free-form information made of plain Python types (recipe, dataset, ...).

    Returns:
        The path written.
    """
    path = Path(path)
    data = checkpoint_dict(model, metadata)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:  # plain open: permissions follow the umask
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _not_an_archive(path: Path) -> str | None:
    """What the file is when it is not a zip archive, as every ``torch.save`` since torch 1.6
    writes (None when it is one); such a file is never handed to ``torch.load``."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes; an interrupted save or copy?)"
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.startswith(b"PK"):
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"a binary file ({size} bytes) that is not a PyTorch zip archive"
    first = text.splitlines()[0][:40] if text.strip() else ""
    return f"a text file ({size} bytes, starting {first!r})"


def _refused_archive(path: Path, error: Exception) -> str:
    """What a zip archive that ``torch.load(weights_only=True)`` refused is. torch's own message
    is left out: for pickled objects it advises ``weights_only=False``, which would run any code
    the file carries."""
    size = path.stat().st_size
    if "weights only" in str(error).lower() or "weights_only" in str(error):
        return (
            f"a PyTorch file ({size} bytes) holding Python objects beyond tensors and plain data "
            "(e.g. a whole model saved with torch.save(model), or another program's checkpoint); "
            "flashmd never unpickles such objects, as loading them could run any code they carry"
        )
    return f"a zip archive ({size} bytes) that is not a PyTorch file, or a damaged one"


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint dictionary (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a flashmd checkpoint, another format version, wrong kind, missing
            or inconsistent fields.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    advice = (
        "pass a file written by flashmd.models.io.save_checkpoint (a training run's best.pt or "
        "last.pt)"
    )
    problem = _not_an_archive(path)
    if problem:
        raise CheckpointError(f"{str(path)!r} is not a flashmd checkpoint: {problem}; {advice}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{str(path)!r} is not a flashmd checkpoint: {_refused_archive(path, error)}; {advice}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a flashmd checkpoint (no format={FORMAT!r} entry); "
            "pass a file written by flashmd.models.io.save_checkpoint"
        )
    _check_version(path, data)
    missing = [f for f in _FIELDS if f not in data]
    if missing:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is missing fields {missing}; it is damaged or was not "
            "written by flashmd.models.io.save_checkpoint: re-save it from the training run"
        )
    if data["kind"] != KIND:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a {data['kind']!r} model, expected {KIND!r}"
        )
    differ = {k: v for k, v in data["units"].items() if UNITS.get(k, v) != v}
    if differ:  # quantities named later (stress) are absent from older checkpoints
        raise CheckpointError(
            f"checkpoint {str(path)!r} uses units {differ}, this flashmd uses "
            f"{ {k: UNITS[k] for k in differ} }"
        )
    if data["dtype"] not in _DTYPES:
        raise CheckpointError(f"checkpoint dtype {data['dtype']!r} is not one of {list(_DTYPES)}")
    unknown = sorted(set(data["models"]) - set(_MODELS))
    if unknown or not data["models"]:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds models {sorted(data['models'])}; "
            f"known kinds are {sorted(_MODELS)} (at least one)"
        )
    return data


def _check_version(path: Path, data: dict[str, Any]) -> None:
    version = data.get("format_version")
    writer = data.get("flashmd_version", "unknown")
    if not isinstance(version, int):
        raise CheckpointError(f"checkpoint {str(path)!r} has no integer format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {version} (written by flashmd "
            f"{writer}) but this flashmd {flashmd.__version__} reads version {FORMAT_VERSION}; "
            "upgrade flashmd to load it"
        )
    if version < FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has the old format version {version} (written by flashmd "
            f"{writer}); this flashmd {flashmd.__version__} reads version {FORMAT_VERSION}: load "
            f"it with flashmd {writer} or retrain"
        )


def _build(
    name: str, entry: dict[str, Any], dtype: torch.dtype, path: Path
) -> Predictor | EnergyModel | GeneratingFunction | KickField:
    module_class, config_class = _MODELS[name]
    if entry.get("kind") != name:
        raise CheckpointError(f"models[{name!r}] of {str(path)!r} has kind {entry.get('kind')!r}")
    try:
        config = config_class.from_dict(entry["config"])
        module = module_class(config).to(dtype)  # type: ignore[arg-type]
        module.load_state_dict(entry["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"the {name} model of {str(path)!r} does not match this flashmd's architecture "
            f"({error}); the checkpoint is damaged or needs another flashmd version"
        ) from error
    return module


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "auto") -> FlashMDModel:
    """Load a checkpoint written by :func:`save_checkpoint` as a :class:`FlashMDModel` in eval mode.

    Args:
        path: the checkpoint file.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"``, ...
    """
    path = Path(path)
    data = read_checkpoint(path)
    dtype = _DTYPES[data["dtype"]]
    modules = {name: _build(name, entry, dtype, path) for name, entry in data["models"].items()}
    predictor, energy = modules.get(PredictorConfig.kind), modules.get(EnergyConfig.kind)
    generating, kick = modules.get(GeneratingConfig.kind), modules.get(KickConfig.kind)
    assert isinstance(predictor, Predictor | None) and isinstance(energy, EnergyModel | None)
    assert isinstance(generating, GeneratingFunction | None) and isinstance(kick, KickField | None)
    try:
        model = FlashMDModel(predictor, energy, data["masses"], generating, kick)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {str(path)!r}: {error}") from error
    stored = {"species": list(data["species"]), "strides_fs": list(data["strides_fs"])}
    actual = {"species": list(model.species), "strides_fs": list(model.strides_fs)}
    if stored != actual or data["cutoff"] != model.cutoff:
        raise CheckpointError(
            f"checkpoint {str(path)!r} says {stored}, cutoff={data['cutoff']} but its models have "
            f"{actual}, cutoff={model.cutoff}"
        )
    return model.to(resolve_device(device)).eval()


def available_models() -> list[str]:
    """Names of the checkpoints shipped in ``flashmd/pretrained``."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


def load_model(
    name_or_path: str | os.PathLike, device: str | torch.device = "auto"
) -> FlashMDModel:
    """Load a shipped model by name (``flashmd/pretrained/<name>.pt``) or a checkpoint file.

    Raises:
        FileNotFoundError: neither a file nor a shipped name (the message lists shipped names).
    """
    return load_checkpoint(checkpoint_path(name_or_path), device)


def checkpoint_path(name_or_path: str | os.PathLike) -> Path:
    """The file of a checkpoint given as a path or a shipped model's name.

    Raises:
        FileNotFoundError: neither a file nor a shipped name (the message lists shipped names).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = PRETRAINED_DIR / f"{name_or_path}.pt"
    if path.name == str(name_or_path) and shipped.is_file():
        return shipped
    names = available_models()
    raise FileNotFoundError(
        f"{str(name_or_path)!r} is neither a checkpoint file nor a shipped model; shipped models: "
        f"{names if names else 'none yet'}"
    )
