"""flashmd.ase: drop-in ASE dynamics (:mod:`.dynamics`) and the energy model as a calculator."""

from flashmd.ase.calculator import EnergyCalculator
from flashmd.ase.dynamics import (
    FlashMD,
    FlashMDBussi,
    FlashMDLangevin,
    FlashMDMetropolis,
    FlashMDNPT,
)

__all__ = [
    "EnergyCalculator",
    "FlashMD",
    "FlashMDBussi",
    "FlashMDLangevin",
    "FlashMDMetropolis",
    "FlashMDNPT",
]
