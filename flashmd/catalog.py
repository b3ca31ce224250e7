"""The shipped models (``flashmd models``): what each checkpoint in ``flashmd/pretrained`` holds.

Everything comes from the checkpoint's own header (see :mod:`flashmd.models.io`): species,
strides, cutoff, dtype and which networks it carries. The file is read with
``torch.load(weights_only=True)`` and no network is built, so listing costs a fraction of a
second per model and imports no e3nn. The reference calculator is not a checkpoint field:
it is taken from the checkpoint's metadata when a training run recorded it there, else from the
first line of the model's card (``<name>.md`` beside it), and the table says which.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ase.data import chemical_symbols

#: Directory of the shipped checkpoints (the same as ``flashmd.models.io.PRETRAINED_DIR``,
#: spelled here so that listing does not import the networks).
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


@dataclass(frozen=True)
class ShippedModel:
    """One shipped checkpoint, as its header describes it."""

    name: str
    path: Path
    elements: tuple[str, ...]
    strides_fs: tuple[float, ...]
    cutoff_A: float
    dtype: str
    networks: tuple[str, ...]
    reference: str
    reference_source: str
    size_bytes: int
    card: Path | None
    symplectic_strides_fs: tuple[float, ...] = ()

    @property
    def generating(self) -> bool:
        """Whether it carries a generating function (symplectic strides, ``--symplectic``)."""
        return "generating" in self.networks

    @property
    def kick(self) -> bool:
        """Whether it carries a learned kick (leapfrog proposals, ``--learned-kick``)."""
        return "kick" in self.networks


def _calculator(metadata: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The calculator's name and params recorded in checkpoint ``metadata`` (or its recipe)."""
    for holder in (metadata, metadata.get("recipe") or {}):
        calculator = holder.get("calculator") if isinstance(holder, dict) else None
        if isinstance(calculator, dict) and calculator.get("name"):
            return str(calculator["name"]), dict(calculator.get("params") or {})
        if calculator:
            return str(calculator), {}
    return None, {}


def _reference(metadata: dict[str, Any], card: Path | None) -> tuple[str, str]:
    """The reference calculator and where it was read: checkpoint metadata, else the card's
    title (``# name: elements (calculator), ...``), else neither. A model distilled from a
    shipped one (its store's calculator ``flashmd`` with that model) names the shipped model's
    reference and the model it came through: ``sevennet-0 via sevennet-cuau``."""
    calculator, params = _calculator(metadata)
    teacher = params.get("model")
    if calculator == "flashmd" and isinstance(teacher, str):
        path = PRETRAINED_DIR / f"{teacher}.pt"
        if path.is_file():
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            beside = path.with_suffix(".md")
            upstream, _ = _reference_of(data.get("metadata") or {}, beside)
            return f"{upstream} via {teacher}", "checkpoint"
    return _reference_of(metadata, card)


def _reference_of(metadata: dict[str, Any], card: Path | None) -> tuple[str, str]:
    """:func:`_reference` without following a distillation to its teacher."""
    calculator, _ = _calculator(metadata)
    if calculator:
        return calculator, "checkpoint"
    if card is not None and card.is_file():
        title = card.read_text(encoding="utf-8").splitlines()[0] if card.stat().st_size else ""
        found = re.search(r"\(([^()]+)\)", title)
        if found:
            return found.group(1), "card"
    return "not recorded", "-"


def describe(path: str | os.PathLike) -> ShippedModel:
    """Describe the checkpoint at ``path`` without building its networks.

    Raises:
        ValueError: the file is not a flashmd checkpoint (``flashmd.load_model`` says why in
            detail).
    """
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise ValueError(f"{str(path)!r} is not a flashmd checkpoint ({error})") from None
    if not isinstance(data, dict) or data.get("format") != "flashmd.checkpoint":
        raise ValueError(f"{str(path)!r} is not a flashmd checkpoint")
    beside = path.with_suffix(".md")
    card = beside if beside.is_file() else None
    reference, source = _reference(data.get("metadata") or {}, card)
    generating = (data["models"].get("generating") or {}).get("config") or {}
    return ShippedModel(
        name=path.stem,
        path=path,
        elements=tuple(chemical_symbols[int(z)] for z in data["species"]),
        strides_fs=tuple(float(s) for s in data["strides_fs"]),
        cutoff_A=float(data["cutoff"]),
        dtype=str(data["dtype"]),
        networks=tuple(data["models"]),
        reference=reference,
        reference_source=source,
        size_bytes=path.stat().st_size,
        card=card,
        symplectic_strides_fs=tuple(float(s) for s in generating.get("strides_fs", ())),
    )


def shipped_models(directory: str | os.PathLike = PRETRAINED_DIR) -> list[ShippedModel]:
    """Every checkpoint in ``directory`` (the shipped ones by default), sorted by name (as
    :func:`flashmd.models.io.available_models` sorts them: ``a`` before ``a-b``)."""
    return [describe(path) for path in sorted(Path(directory).glob("*.pt"), key=lambda p: p.stem)]


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def format_models(models: list[ShippedModel]) -> str:
    """A plain-text table of ``models``, one row each, with a closing note on its columns."""
    header = (
        "name",
        "elements",
        "strides fs",
        "cutoff Å",
        "reference",
        "generating function",
        "learned kick",
        "size",
        "card",
    )
    rows = [
        (
            m.name,
            " ".join(m.elements),
            " ".join(f"{s:g}" for s in m.strides_fs),
            f"{m.cutoff_A:g}",
            m.reference + (" (card)" if m.reference_source == "card" else ""),
            " ".join(f"{s:g}" for s in m.symplectic_strides_fs) + " fs" if m.generating else "no",
            "yes" if m.kick else "no",
            f"{m.size_bytes / 1000:.0f} kB",
            _shown(m.card) if m.card else "-",
        )
        for m in models
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    if not rows:
        lines.append(f"(no checkpoints in {PRETRAINED_DIR})")
    lines += [
        "",
        "Load one with flashmd.load_model(NAME) or --model NAME. 'generating function': the",
        "strides at which it takes symplectic strides (--symplectic); 'learned kick: yes': its",
        "leapfrog proposals can step on the kick instead of forces (--learned-kick). '(card)':",
        "read from the model card's title, as the checkpoint does not record its reference",
        "calculator; 'via': distilled from that shipped model, no call to its reference.",
    ]
    return "\n".join(lines)
