"""The three CardioSim environments as gymnax environments."""

from cardiosim_jax.envs.antiarrhythmic_dosing import AntiarrhythmicDosing
from cardiosim_jax.envs.base import DIFFICULTIES, CardioSimEnvironment
from cardiosim_jax.envs.defibrillation_timing import DefibrillationTiming
from cardiosim_jax.envs.pacing_control import PacingControl

__all__ = [
    "DIFFICULTIES",
    "AntiarrhythmicDosing",
    "CardioSimEnvironment",
    "DefibrillationTiming",
    "PacingControl",
]
