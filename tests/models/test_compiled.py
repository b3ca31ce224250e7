"""``compile_model``: torch.compile of the equivariant layers for inference.

One compiled tiny energy model (float64, so agreement is checked tightly; the predictor's and
the generating function's blocks are the same modules): the same energies and forces as the
eager model on two systems of different sizes and periodicities (dynamic shapes: one compile),
no change to the checkpoint, and a clear error where no compiler can run. Compiling takes most
of this file's time (about a minute on one core).
"""

from __future__ import annotations

import copy
import shutil

import pytest
import torch

from flashmd import keys
from flashmd.data.graph import batch_from_atoms
from flashmd.models import FlashMDModel, compile_model
from flashmd.models.compiled import (
    CXX_COMPILERS,
    RECOMPILE_LIMIT,
    check_compiler,
    is_compiled,
)
from tests.models.models_testkit import CUTOFF, make_atoms, tiny_energy

needs_compiler = pytest.mark.skipif(
    not any(map(shutil.which, CXX_COMPILERS)),
    reason="torch.compile on the CPU needs a C++ compiler",
)


@pytest.fixture(scope="module")
def models() -> tuple[FlashMDModel, FlashMDModel]:
    eager = FlashMDModel(energy_model=tiny_energy(seed=2))
    return eager, compile_model(copy.deepcopy(eager))


def _batch(kind: str) -> dict[str, torch.Tensor]:
    return batch_from_atoms(make_atoms(kind, seed=3), CUTOFF, 32.0, dtype=torch.float64)


@needs_compiler
@pytest.mark.parametrize("kind", ["periodic", "slab"])
def test_compiled_model_agrees_with_the_eager_one(models, kind):
    eager, compiled = models
    batch = _batch(kind)
    want = eager.energy_model.compute(batch, forces=True)
    got = compiled.energy_model.compute(batch, forces=True)
    for key in (keys.ENERGY, keys.FORCES):
        torch.testing.assert_close(got[key], want[key], rtol=1e-9, atol=1e-9)


@needs_compiler
def test_compiling_keeps_the_checkpoint_and_is_visible(models):
    eager, compiled = models
    assert is_compiled(compiled) and not is_compiled(eager)
    # one model's blocks need more compiled variants than Dynamo's default of 8
    assert torch._dynamo.config.recompile_limit >= RECOMPILE_LIMIT > 8
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    for name, tensor in eager.state_dict().items():
        assert torch.equal(compiled.state_dict()[name], tensor), name


def test_no_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("flashmd.models.compiled.shutil.which", lambda name: None)
    with pytest.raises(ValueError, match="needs a C\\+\\+ compiler.*without --compile"):
        check_compiler(torch.device("cpu"))
    model = FlashMDModel(energy_model=tiny_energy())
    with pytest.raises(ValueError, match="C\\+\\+ compiler"):
        compile_model(model)
    assert not is_compiled(model)  # nothing was half compiled
