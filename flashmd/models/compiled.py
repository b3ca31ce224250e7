"""``compile_model``: a model's equivariant layers compiled by ``torch.compile`` for inference.

What a stride costs is the e3nn tensor products, linear maps and gates of the interaction
blocks, run as many small eager kernels; TorchInductor fuses them (C++ on the CPU, Triton on a
GPU). ``python scripts/compile_check.py sevennet-cuau`` (108 Cu atoms, one thread): the
predictor's stride 1.9x faster, the energy model's forces 1.8x, a solver iteration (forces and
the generating function's gradient) 2.2x. Only the blocks are compiled (each with dynamic shapes,
so a new number of atoms or edges does not recompile), not the models around them: the flashmd
code between them (batching, neighbour lists, the filter, the solver) stays eager and debuggable.

The first evaluation of each network compiles its blocks: 10-50 s each on one core in that run,
once per process and dtype (Inductor caches the generated code on disk, so a later process starts
faster). Compiled kernels sum in another order than eager ones, so results agree with the eager
model's to float rounding (float32: about 4e-7 relative in that run), not bit for bit; a run
resumed with and without compilation is therefore not bit-identical to an uninterrupted one.
Training does not compile.
"""

from __future__ import annotations

import shutil
from typing import TypeVar

import torch
from e3nn import o3

from flashmd.models.model import FlashMDModel
from flashmd.nn.interaction import InteractionBlock
from flashmd.nn.radial import RadialEmbedding

M = TypeVar("M", bound=torch.nn.Module)

#: C++ compilers Inductor can use on the CPU (one must be on ``PATH``).
CXX_COMPILERS = ("g++", "c++", "clang++")

#: The module types compiled: where nearly all of a stride's arithmetic happens.
COMPILED_TYPES = (InteractionBlock, RadialEmbedding, o3.SphericalHarmonics)

#: Compiled variants allowed per layer type (``torch._dynamo.config.recompile_limit``): Dynamo
#: keeps one per block shape and grad mode, and one model's predictor, energy model (with and
#: without forces) and generating function already need 8, torch's default, past which the
#: remaining blocks silently run eager.
RECOMPILE_LIMIT = 64


def check_compiler(device: torch.device) -> None:
    """Raise a clear error when ``torch.compile`` cannot build kernels for ``device``.

    Raises:
        ValueError: on the CPU without a C++ compiler; on CUDA without Triton (a setting the
            machine cannot serve, reported like any other bad setting by the command line).
    """
    if device.type == "cpu" and not any(map(shutil.which, CXX_COMPILERS)):
        raise ValueError(
            "compiling a model on the CPU needs a C++ compiler (g++ or clang++) on PATH; "
            "install one (e.g. apt install g++) or run without --compile"
        )
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError as error:
            raise ValueError(
                "compiling a model on a GPU needs Triton (pip install triton, which CUDA builds "
                "of torch bring along); or run without --compile"
            ) from error


def compile_model(model: FlashMDModel) -> FlashMDModel:
    """Compile ``model``'s interaction blocks, radial embeddings and spherical harmonics in
    place (``torch.nn.Module.compile``, dynamic shapes) and return it.

    The state dict is unchanged, so a compiled model saves and loads like any other; its
    predictions agree with the eager model's to float rounding (module docstring).

    Raises:
        ValueError: no compiler for the model's device (:func:`check_compiler`).
    """
    check_compiler(model.device)
    return compile_layers(model)


def compile_layers(module: M) -> M:
    """Compile every :data:`COMPILED_TYPES` submodule of ``module`` in place (dynamic shapes) and
    return ``module``: :func:`compile_model` for a bare network (a predictor, an energy model, a
    generating function), without the compiler check. Raises Dynamo's recompile limit of the
    process to at least :data:`RECOMPILE_LIMIT`."""
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    for layer in module.modules():
        if isinstance(layer, COMPILED_TYPES):
            layer.compile(dynamic=True)
    return module


def is_compiled(model: torch.nn.Module) -> bool:
    """Whether :func:`compile_model` was applied to ``model``."""
    return any(
        getattr(module, "_compiled_call_impl", None) is not None
        for module in model.modules()
        if isinstance(module, COMPILED_TYPES)
    )


__all__ = [
    "COMPILED_TYPES",
    "CXX_COMPILERS",
    "RECOMPILE_LIMIT",
    "check_compiler",
    "compile_layers",
    "compile_model",
    "is_compiled",
]
