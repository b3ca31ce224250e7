"""flashmd: long-stride molecular dynamics with equivariant networks and physical filters."""

from __future__ import annotations

__version__ = "0.1.0"

from flashmd.models.io import load_model  # noqa: E402

__all__ = ["__version__", "load_model"]
