"""Pure-JAX cardiac physiology: cell models, pharmacokinetics, conduction, RK4."""

from cardiosim_jax.models import (
    aliev_panfilov,
    conduction,
    fitzhugh_nagumo,
    integrators,
    pharmacokinetics,
)
from cardiosim_jax.models.validation import ParameterRange, validate_parameters

__all__ = [
    "ParameterRange",
    "aliev_panfilov",
    "conduction",
    "fitzhugh_nagumo",
    "integrators",
    "pharmacokinetics",
    "validate_parameters",
]
