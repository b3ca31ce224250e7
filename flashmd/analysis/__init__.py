"""Physical observables of trajectories stored in the flashmd schema.

Every observable reads arrays shaped like the store's (positions (n_frames, n_atoms, 3) Å
unwrapped, momenta (n_frames, n_atoms, 3) ASE units, masses (n_atoms,) amu, numbers (n_atoms,),
cell (n_frames, 3, 3) Å, pbc (3,), energy (n_frames,) eV, time_fs (n_frames,) fs) and comes both
as an accumulator (``update`` block by block, then ``result``), so stores larger than memory are
processed in pieces, and as a function of whole arrays.
"""

from flashmd.analysis._common import frame_interval_fs
from flashmd.analysis.distances import (
    MinDistanceAccumulator,
    MinDistanceResult,
    OverlapAccumulator,
    OverlapResult,
    find_overlaps,
    min_distance,
)
from flashmd.analysis.energy import (
    DriftFit,
    EnergyAccumulator,
    EnergyResult,
    energy_traces,
    nve_drift,
)
from flashmd.analysis.lindemann import LindemannAccumulator, LindemannResult, lindemann_index
from flashmd.analysis.local_structure import STRUCTURES, StructureFractions, structure_fractions
from flashmd.analysis.msd import (
    DiffusionFit,
    MSDAccumulator,
    MSDResult,
    diffusion_coefficient,
    msd,
)
from flashmd.analysis.rdf import RDFAccumulator, RDFResult, rdf
from flashmd.analysis.sampling import effective_samples, integrated_autocorrelation_time
from flashmd.analysis.temperature import (
    TemperatureAccumulator,
    TemperatureResult,
    kinetic_energy,
    kinetic_temperature,
)
from flashmd.analysis.vacf import VACFAccumulator, VACFResult, vacf, vibrational_dos

__all__ = [
    "STRUCTURES",
    "DiffusionFit",
    "DriftFit",
    "EnergyAccumulator",
    "EnergyResult",
    "LindemannAccumulator",
    "LindemannResult",
    "MSDAccumulator",
    "MSDResult",
    "MinDistanceAccumulator",
    "MinDistanceResult",
    "OverlapAccumulator",
    "OverlapResult",
    "RDFAccumulator",
    "RDFResult",
    "StructureFractions",
    "TemperatureAccumulator",
    "TemperatureResult",
    "VACFAccumulator",
    "VACFResult",
    "diffusion_coefficient",
    "effective_samples",
    "energy_traces",
    "find_overlaps",
    "frame_interval_fs",
    "integrated_autocorrelation_time",
    "kinetic_energy",
    "kinetic_temperature",
    "lindemann_index",
    "min_distance",
    "msd",
    "nve_drift",
    "rdf",
    "structure_fractions",
    "vacf",
    "vibrational_dos",
]
