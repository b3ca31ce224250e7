"""Small e3nn building blocks shared by the predictor and the energy model.

Each module does one thing: radial basis and smooth cutoff (:mod:`.radial`), species and scalar
embeddings (:mod:`.embedding`), scatter sums (:mod:`.scatter`), irreps helpers (:mod:`.irreps`),
the gated nonlinearity (:mod:`.gate`), one message-passing interaction (:mod:`.interaction`), the
stack of interactions over a neighbour graph (:mod:`.backbone`), readouts (:mod:`.readout`), and
the energy model's fixed short-range ZBL wall (:mod:`.repulsion`).
"""

from __future__ import annotations

from flashmd.nn.backbone import Backbone
from flashmd.nn.embedding import GaussianEmbedding, SpeciesEmbedding
from flashmd.nn.gate import GatedNonlinearity
from flashmd.nn.interaction import InteractionBlock
from flashmd.nn.irreps import check_irreps, hidden_irreps, reachable_irreps
from flashmd.nn.radial import BesselBasis, PolynomialCutoff, RadialEmbedding
from flashmd.nn.readout import ScalarReadout, VectorReadout
from flashmd.nn.scatter import scatter_sum

__all__ = [
    "Backbone",
    "BesselBasis",
    "GatedNonlinearity",
    "GaussianEmbedding",
    "InteractionBlock",
    "PolynomialCutoff",
    "RadialEmbedding",
    "ScalarReadout",
    "SpeciesEmbedding",
    "VectorReadout",
    "check_irreps",
    "hidden_irreps",
    "reachable_irreps",
    "scatter_sum",
]
