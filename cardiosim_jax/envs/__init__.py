"""The CardioSim environments as gymnax environments: v0 (the reference) and v1."""

from cardiosim_jax.envs.antiarrhythmic_dosing import AntiarrhythmicDosing
from cardiosim_jax.envs.antiarrhythmic_dosing_v1 import AntiarrhythmicDosingV1
from cardiosim_jax.envs.base import DIFFICULTIES, CardioSimEnvironment
from cardiosim_jax.envs.defibrillation_timing import DefibrillationTiming
from cardiosim_jax.envs.defibrillation_timing_v1 import DefibrillationTimingV1
from cardiosim_jax.envs.pacing_control import PacingControl
from cardiosim_jax.envs.pacing_control_v1 import PacingControlV1

__all__ = [
    "DIFFICULTIES",
    "AntiarrhythmicDosing",
    "AntiarrhythmicDosingV1",
    "CardioSimEnvironment",
    "DefibrillationTiming",
    "DefibrillationTimingV1",
    "PacingControl",
    "PacingControlV1",
]
