"""flashmd: long-stride molecular dynamics with equivariant networks and physical filters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]

if TYPE_CHECKING:
    from flashmd.models.io import load_model


def __getattr__(name: str) -> Any:
    # torch and e3nn load only when a model is asked for: data generation and analysis stay light
    # (every generator worker process imports flashmd).
    if name == "load_model":
        from flashmd.models.io import load_model

        return load_model
    raise AttributeError(f"module 'flashmd' has no attribute {name!r}")
