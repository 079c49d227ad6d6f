"""Literature ranges for model parameters and the validator that enforces them.

Validation is plain NumPy on concrete values: call it when parameters are
built (``cardiosim_jax.make`` does), never inside ``jit``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class ParameterRange:
    """Accepted closed interval ``[low, high]`` for one parameter."""

    low: float
    high: float
    unit: str
    source: str

    def describe(self) -> str:
        return f"[{self.low:g}, {self.high:g}] {self.unit} ({self.source})"


def validate_parameters(
    params: Any, ranges: Mapping[str, ParameterRange], *, prefix: str = ""
) -> None:
    """Raise ``ValueError`` if any field of ``params`` named in ``ranges`` is out of range.

    Works on scalar and batched (population) parameters alike: every element
    must be finite and inside the range. The message names the parameter, the
    offending value, the accepted range with its unit, and the literature source.
    """
    for name, bounds in ranges.items():
        value = np.asarray(getattr(params, name))
        # Compare in the value's own float precision, so float32(0.05) passes a 0.05 bound.
        dtype = value.dtype if np.issubdtype(value.dtype, np.floating) else np.float64
        value = value.astype(dtype)
        low, high = np.asarray(bounds.low, dtype), np.asarray(bounds.high, dtype)
        bad = ~np.isfinite(value) | (value < low) | (value > high)
        if np.any(bad):
            offending = value[bad] if value.ndim else value
            shown = float(np.ravel(offending)[0])
            where = "" if value.ndim == 0 else f" ({int(bad.sum())} of {value.size} entries)"
            raise ValueError(
                f"parameter '{prefix}{name}' = {shown:g}{where} is outside its "
                f"literature range {bounds.describe()}"
            )
