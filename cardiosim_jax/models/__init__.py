"""Pure-JAX cardiac physiology: cell models, tissue, pharmacology, conduction, pacing, RK4."""

from cardiosim_jax.models import (
    aliev_panfilov,
    conduction,
    drug_effect,
    fitzhugh_nagumo,
    integrators,
    pacemaker,
    pharmacokinetics,
    shock_response,
    tissue,
    variability,
)
from cardiosim_jax.models.validation import ParameterRange, validate_parameters

__all__ = [
    "ParameterRange",
    "aliev_panfilov",
    "conduction",
    "drug_effect",
    "fitzhugh_nagumo",
    "integrators",
    "pacemaker",
    "pharmacokinetics",
    "shock_response",
    "tissue",
    "validate_parameters",
    "variability",
]
