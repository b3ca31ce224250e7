"""Models: the long-stride predictor, the energy model, the constraint layer and checkpoints.

:mod:`.config` (shared hyperparameters and presets), :mod:`.predictor`, :mod:`.energy`,
:mod:`.generating` (the learned generating function of symplectic strides), :mod:`.kick` (the
learned kick of leapfrog proposals), :mod:`.constraints`,
:mod:`.model` (``FlashMDModel``: the models with input validation), :mod:`.io` (checkpoint
save/load, ``load_model``) and :mod:`.compiled` (``compile_model``: ``torch.compile`` for
inference).
"""

from __future__ import annotations

from flashmd.models.compiled import compile_model
from flashmd.models.config import PRESETS, BackboneConfig
from flashmd.models.constraints import apply_constraints
from flashmd.models.energy import EnergyConfig, EnergyModel
from flashmd.models.generating import GeneratingConfig, GeneratingFunction
from flashmd.models.io import load_checkpoint, load_model, save_checkpoint
from flashmd.models.kick import KickConfig, KickField
from flashmd.models.model import FlashMDModel
from flashmd.models.predictor import Predictor, PredictorConfig

__all__ = [
    "PRESETS",
    "BackboneConfig",
    "EnergyConfig",
    "EnergyModel",
    "FlashMDModel",
    "GeneratingConfig",
    "GeneratingFunction",
    "KickConfig",
    "KickField",
    "Predictor",
    "PredictorConfig",
    "apply_constraints",
    "compile_model",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
