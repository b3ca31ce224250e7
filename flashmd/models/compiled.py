"""``compile_model``: a model's equivariant layers compiled by ``torch.compile`` for inference.

What a stride costs is the e3nn tensor products, linear maps and gates of the interaction
blocks, run as many small eager kernels; TorchInductor fuses them (C++ on the CPU, Triton on a
GPU). Measured on one CPU thread for 108 Cu atoms (sevennet-cuau, ``runs/s28``): the
predictor's stride 2.0x faster, the energy model's forces 1.5-2.3x, the generating function's
gradient 1.7-2.2x. Only the blocks are compiled (each with dynamic shapes, so a new number of
atoms or edges does not recompile), not the models around them: the flashmd code between them
(batching, neighbour lists, the filter, the solver) stays eager and debuggable.

The first evaluation of each block compiles it: about half a minute to two and a half on one
core, each block once per process and dtype (Inductor caches the generated code on disk, so a
second process is faster). Compiled kernels sum in another order than eager ones, so results
agree with the eager model's to float rounding (float32: about 1e-6 relative), not bit for bit;
a run resumed with and without compilation is therefore not bit-identical to an uninterrupted
one. Training keeps eager models (double backward through forces).
"""

from __future__ import annotations

import shutil

import torch
from e3nn import o3

from flashmd.models.model import FlashMDModel
from flashmd.nn.interaction import InteractionBlock
from flashmd.nn.radial import RadialEmbedding

#: The module types compiled: where nearly all of a stride's arithmetic happens.
COMPILED_TYPES = (InteractionBlock, RadialEmbedding, o3.SphericalHarmonics)


def check_compiler(device: torch.device) -> None:
    """Raise a clear error when ``torch.compile`` cannot build kernels for ``device``.

    Raises:
        RuntimeError: on the CPU without a C++ compiler; on CUDA without Triton.
    """
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise RuntimeError(
            "compiling a model on the CPU needs a C++ compiler (g++ or clang++) on PATH; "
            "install one (e.g. apt install g++) or run without --compile"
        )
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError as error:
            raise RuntimeError(
                "compiling a model on a GPU needs Triton (pip install triton, which CUDA builds "
                "of torch bring along); or run without --compile"
            ) from error


def compile_model(model: FlashMDModel) -> FlashMDModel:
    """Compile ``model``'s interaction blocks, radial embeddings and spherical harmonics in
    place (``torch.nn.Module.compile``, dynamic shapes) and return it.

    The state dict is unchanged, so a compiled model saves and loads like any other; its
    predictions agree with the eager model's to float rounding (module docstring).

    Raises:
        RuntimeError: no compiler for the model's device (:func:`check_compiler`).
    """
    check_compiler(model.device)
    for module in model.modules():
        if isinstance(module, COMPILED_TYPES):
            module.compile(dynamic=True)
    return model


def is_compiled(model: torch.nn.Module) -> bool:
    """Whether :func:`compile_model` was applied to ``model``."""
    return any(
        getattr(module, "_compiled_call_impl", None) is not None
        for module in model.modules()
        if isinstance(module, COMPILED_TYPES)
    )


__all__ = ["COMPILED_TYPES", "check_compiler", "compile_model", "is_compiled"]
