"""The CardioSim environments as gymnax environments: v0 (the reference) and v1.

Each environment is one package (``pacing_control``, ``antiarrhythmic_dosing``,
``defibrillation_timing``) holding its v0 and v1 classes, their heuristics,
plotters, PPO presets and oracle settings, and registering them in one call
(:func:`cardiosim_jax.registration.register`).
"""

# Registration order (pacing, dosing, defibrillation) is the order of registered_envs.
from cardiosim_jax.envs.pacing_control import PacingControl, PacingControlV1  # isort: skip
from cardiosim_jax.envs.antiarrhythmic_dosing import (  # isort: skip
    AntiarrhythmicDosing,
    AntiarrhythmicDosingV1,
)
from cardiosim_jax.envs.defibrillation_timing import (  # isort: skip
    DefibrillationTiming,
    DefibrillationTimingV1,
)
from cardiosim_jax.envs.base import DIFFICULTIES, CardioSimEnvironment  # isort: skip

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
