"""Stride self-consistency: zero for an exact flow, the bias of a map that is not one, and
stored per atom and frame by ``flashmd md --uncertainty``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from md_testkit import crystal, thermal
from md_testkit import harmonic as harmonic_model

from flashmd.analysis.report import evaluate
from flashmd.md.batch import MDSettings, run_md
from flashmd.md.consistency import StrideConsistency
from flashmd.md.harmonic import HarmonicCrystal
from flashmd.md.state import state_from_atoms


class Biased:
    """The exact harmonic flow plus a displacement growing as the stride squared: not a flow."""

    def __init__(self, exact: HarmonicCrystal, bias_A: float) -> None:
        self.exact, self.bias_A, self.cutoff = exact, bias_A, None

    def check(self, state, stride_fs):
        self.exact.check(state, stride_fs)

    def propagate(self, state, edges, stride_fs):
        q, p = self.exact.propagate(state, edges, stride_fs)
        shift = torch.zeros_like(q)
        shift[0, 0] = self.bias_A * (stride_fs / 32.0) ** 2  # one atom: a local error
        return q + shift, p


@pytest.fixture
def harmonic():
    reference = crystal((2, 2, 2))
    return harmonic_model([reference]), state_from_atoms(thermal(reference, 3, 600.0))


def test_exact_flow_is_consistent_and_a_biased_map_is_flagged_where_it_errs(harmonic):
    exact, state = harmonic
    strides = (16.0, 32.0, 64.0)
    clean = StrideConsistency(exact, strides)(state, 32.0)
    assert float(clean.positions.max()) < 1e-9
    biased = StrideConsistency(Biased(exact, 0.01), strides)(state, 32.0)
    # one 32 fs stride is off by 0.01 Å, two 16 fs strides by about 2 x 0.0025 Å (the first
    # half's offset then evolves in the harmonic flow): about 0.005 Å apart, on the biased atom
    assert 0.003 < float(biased.positions[0]) < 0.008
    assert int(torch.argmax(biased.positions)) == 0
    assert float(torch.sort(biased.positions).values[-2]) < 0.5 * float(biased.positions[0])
    assert float(biased.per_system(1)[0]) == pytest.approx(float(biased.positions.max()))


def test_the_compared_stride_and_models_without_a_double(harmonic):
    exact, state = harmonic
    consistency = StrideConsistency(exact, (16.0, 32.0, 64.0))
    assert [consistency.long_stride(s) for s in (16.0, 32.0, 64.0)] == [32.0, 32.0, 64.0]
    assert consistency(state, 16.0).long_fs == 32.0
    with pytest.raises(ValueError, match="needs it with its half or its double"):
        consistency.long_stride(48.0)
    with pytest.raises(ValueError, match="a stride and its double"):
        StrideConsistency(exact, (16.0, 48.0))


def test_md_stores_uncertainty_per_atom_and_frame_and_evaluate_shows_it(
    tmp_path, reference_and_model
):
    reference, model = reference_and_model
    settings = MDSettings(
        model=model,
        start_from=reference,
        temperature_K=600.0,
        stride_fs=16.0,
        strides=6,
        every=2,
        uncertainty=True,
    )
    out = str(tmp_path / "md.zarr")
    run_md(settings, out, progress=False)
    group = zarr.open_group(out, mode="r")["trajectories"]
    for name in group.group_keys():
        array = group[name]["uncertainty"]
        assert array.shape == (4, group[name]["numbers"].shape[0])
        assert array.metadata.dimension_names == ("frame", "atom")
        values = np.asarray(array[:])
        assert np.isfinite(values).all() and (values > 0).all()
    report = evaluate(reference, out, tmp_path / "report", figures=False)
    keys = {m.key for condition in report.conditions for m in condition.metrics}
    assert "uncertainty" in keys
