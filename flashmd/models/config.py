"""Hyperparameters shared by all models: the equivariant backbone, and named size presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from e3nn import o3

from flashmd.nn.backbone import Backbone
from flashmd.nn.irreps import hidden_irreps

C = TypeVar("C", bound="BackboneConfig")

#: Named sizes. ``tiny`` is for tests, ``small`` for quick experiments, ``medium`` for production.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(n_scalars=8, n_tensors=2, lmax=2, n_layers=2, n_radial=4, radial_hidden=8),
    "small": dict(n_scalars=32, n_tensors=8, lmax=2, n_layers=2, n_radial=8, radial_hidden=32),
    "medium": dict(n_scalars=64, n_tensors=16, lmax=2, n_layers=3, n_radial=8, radial_hidden=64),
}


def stride_fields(strides_fs, n_stride_basis: int, momentum_scale: float) -> tuple[float, ...]:
    """Validate the stride fields shared by the stride models; returns ``strides_fs`` as floats.

    Raises:
        ValueError: strides not distinct and positive, fewer than 2 stride features, or a
            non-positive momentum scale.
    """
    strides = tuple(float(s) for s in strides_fs)
    if not strides or min(strides) <= 0 or len(set(strides)) != len(strides):
        raise ValueError(f"strides_fs must be distinct positive strides, got {strides_fs}")
    if n_stride_basis < 2:
        raise ValueError(f"n_stride_basis must be >= 2, got {n_stride_basis}")
    if not momentum_scale > 0:
        raise ValueError(f"momentum_scale must be positive, got {momentum_scale}")
    return strides


@dataclass(frozen=True, kw_only=True)
class BackboneConfig:
    """Hyperparameters of the equivariant message-passing trunk (see ``flashmd.nn.Backbone``)."""

    species: tuple[int, ...]
    """Atomic numbers the model knows, in the order of the embedding table."""
    cutoff: float = 5.0
    """Neighbour cutoff radius in Å."""
    n_scalars: int = 32
    """Number of ``0e`` channels of the hidden node features."""
    n_tensors: int = 8
    """Number of channels of each ``l = 1..lmax`` irrep (both parities) of the hidden features."""
    lmax: int = 2
    """Largest spherical-harmonic degree, for edge directions and hidden features."""
    n_layers: int = 2
    """Number of interaction blocks."""
    n_radial: int = 8
    """Number of Bessel functions of the edge length."""
    radial_hidden: int = 32
    """Width of the hidden layers of the radial MLPs."""
    cutoff_p: int = 6
    """Order of the polynomial cutoff envelope."""
    avg_num_neighbors: float = 30.0
    """Typical neighbour count within the cutoff; aggregated messages are divided by its root."""
    receiver_messages: bool = False
    """Messages read the receiving atom's features too (``Lin(x_j) + Lin'(x_i)``), so a layer
    forms products of an atom's own momentum with its bond directions; off in checkpoints written
    before this field existed."""

    kind: ClassVar[str] = "backbone"
    added_fields: ClassVar[frozenset[str]] = frozenset({"receiver_messages"})
    """Fields added after checkpoints were first written: one that lacks them gets the default,
    which is the architecture it was trained with."""

    def __post_init__(self) -> None:
        species = tuple(int(z) for z in self.species)
        if not species or len(set(species)) != len(species) or min(species) < 1:
            raise ValueError(f"species must be distinct atomic numbers, got {self.species}")
        object.__setattr__(self, "species", species)
        if not self.cutoff > 0:
            raise ValueError(f"cutoff must be positive, got {self.cutoff}")
        if self.n_layers < 1 or self.n_radial < 1 or self.radial_hidden < 1:
            raise ValueError("n_layers, n_radial and radial_hidden must be >= 1")
        if not self.avg_num_neighbors > 0:
            raise ValueError(f"avg_num_neighbors must be positive, got {self.avg_num_neighbors}")
        hidden_irreps(self.n_scalars, self.n_tensors, self.lmax)  # validates the sizes

    @property
    def irreps_hidden(self) -> o3.Irreps:
        """Irreps of the hidden node features."""
        return hidden_irreps(self.n_scalars, self.n_tensors, self.lmax)

    def backbone(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps) -> Backbone:
        """The message-passing trunk these hyperparameters describe."""
        return Backbone(
            irreps_in,
            self.irreps_hidden,
            irreps_out,
            n_layers=self.n_layers,
            lmax=self.lmax,
            cutoff=self.cutoff,
            n_radial=self.n_radial,
            radial_hidden=self.radial_hidden,
            avg_num_neighbors=self.avg_num_neighbors,
            cutoff_p=self.cutoff_p,
            receiver_messages=self.receiver_messages,
        )

    @classmethod
    def preset(cls: type[C], name: str, **overrides: Any) -> C:
        """A config of the named size (``tiny``, ``small``, ``medium``) with ``overrides`` applied.

        ``species`` (and any other field without a default) must be given in ``overrides``.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary of every field (lists for tuples), for checkpoints."""
        return {
            f.name: list(v) if isinstance(v, tuple) else v
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; every field must be present (except ``added_fields``) and
        no other.

        Raises:
            ValueError: missing or unknown fields (named).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(data) - cls.added_fields)
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise ValueError(
                f"{cls.__name__} fields do not match: missing {missing}, unknown {unknown}"
            )
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**values)
