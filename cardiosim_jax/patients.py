"""Patient populations: sampled cohorts and fixed, named evaluation cohorts.

Each v1 environment lists the parameters that vary between patients and
their literature coefficients of variation (``env.patient_variation``, with
sources); a tier uses the fraction ``patient_variability`` of them (easy 0,
medium 0.5, hard 1). :func:`sample` draws ``n`` patients as the tier defines
them, with the environment's own per-patient draw
(``env.draw_patient``, which every v1 reset uses): each listed parameter is
the tier's typical value times a mean-one log-normal multiplier (the
pharmacometric ``theta x exp(eta)``) with CV ``patient_variability x`` the
literature CV, clipped to the parameter's literature range; patient ``i``
is drawn from ``jax.random.split(key, n)[i]``. The environment's own
per-episode variation is then switched off (``patient_variability = 0``),
so a patient is the same in every episode.
An easy-tier sample is therefore ``n`` copies of the typical patient.
The result is an ``EnvParams`` whose leaves have a leading axis of ``n``,
ready for ``jax.vmap`` or :func:`cardiosim_jax.rollout.run_episodes`.

:func:`cohort` is a fixed sample: ``size`` named patients drawn from a seed
derived from the environment id and tier, so a cohort is the same on every
machine and in every paper that uses this version.

    >>> import jax
    >>> from cardiosim_jax import patients
    >>> params = patients.sample(jax.random.PRNGKey(0), "AntiarrhythmicDosing-v1", 64, "hard")
    >>> eval_set = patients.cohort("PacingControl-v1", "medium")  # 100 named patients
"""

from __future__ import annotations

import dataclasses
import operator
import zlib
from typing import Any

import jax
import numpy as np

from cardiosim_jax.envs.base import population_axis
from cardiosim_jax.registration import make, registered_envs

#: Patients in a named evaluation cohort.
COHORT_SIZE = 100


def envs_with_patient_model() -> list[str]:
    """Environment ids that define inter-patient variability (the v1 environments)."""
    return [env_id for env_id in registered_envs if make(env_id)[0].patient_variation]


def sample(
    key: jax.Array, env_id: str, n: int, difficulty: str = "medium", **overrides: Any
) -> Any:
    """``n`` patients of ``env_id`` on ``difficulty``: ``EnvParams`` with a leading axis of ``n``.

    ``overrides`` (as for :func:`cardiosim_jax.make`) change the typical
    patient before the variation is applied, e.g. ``max_steps_in_episode=50``.

    Raises:
        ValueError: unknown environment or difficulty, ``n`` not a positive
            int (a float such as 2.5 or 2.0, a bool, a string), or an
            environment without a patient model (v0).
    """
    # bool is an int subclass (True would silently mean one patient); operator.index
    # takes ints, NumPy and JAX integer scalars and refuses 2.5, 2.0 and "3".
    try:
        count = None if isinstance(n, (bool, np.bool_)) else operator.index(n)
    except TypeError:
        count = None
    if count is None or count < 1:
        raise ValueError(f"n must be a positive number of patients (an int >= 1), got {n!r}")
    n = count
    env, typical = make(env_id, difficulty, **overrides)
    table = env.patient_variation
    if not table:
        raise ValueError(
            f"{env_id} has no inter-patient variability model; "
            f"cohorts exist for: {envs_with_patient_model()}"
        )
    # The one patient draw of the env's own resets, one key per patient.
    keys = jax.random.split(key, n)
    drawn = jax.vmap(env.draw_patient, in_axes=(0, population_axis(typical, n)))(keys, typical)
    varied = {name: np.asarray(values) for name, values in drawn.items()}
    return env.params_for(difficulty, **{**overrides, **varied, "patient_variability": 0.0})


def cohort_seed(env_id: str, difficulty: str) -> int:
    """The seed of a named cohort: a CRC-32 of ``"<env_id>/<difficulty>"`` (stable everywhere)."""
    return zlib.crc32(f"{env_id.removeprefix('cardiosim/')}/{difficulty}".encode())


@dataclasses.dataclass(frozen=True)
class Cohort:
    """A fixed evaluation cohort: patient names and their batched ``EnvParams``."""

    env_id: str
    difficulty: str
    seed: int
    names: tuple[str, ...]
    params: Any

    def __len__(self) -> int:
        return len(self.names)

    def patient(self, name: str) -> Any:
        """One patient's (unbatched) ``EnvParams``.

        Raises:
            ValueError: ``name`` is not one of :attr:`names`.
        """
        if name not in self.names:
            shown = ", ".join(self.names)
            if len(self.names) > 3:
                shown = f"{self.names[0]} ... {self.names[-1]}"
            raise ValueError(
                f"unknown patient {name!r} in the {self.env_id} {self.difficulty} cohort; "
                f"names: {shown}"
            )
        index = self.names.index(name)
        return jax.tree_util.tree_map(lambda leaf: leaf[index], self.params)

    def table(self) -> dict[str, np.ndarray]:
        """The varied parameters of every patient, by parameter name (for reports)."""
        env, _ = make(self.env_id, self.difficulty)
        return {
            name: np.asarray(env.parameter_value(self.params, name))
            for name in sorted(env.patient_variation)
        }


def cohort(env_id: str, difficulty: str = "medium", size: int = COHORT_SIZE) -> Cohort:
    """The named evaluation cohort of ``env_id`` on ``difficulty`` (``patient-001`` ...)."""
    seed = cohort_seed(env_id, difficulty)
    params = sample(jax.random.PRNGKey(seed), env_id, size, difficulty)
    names = tuple(f"patient-{i + 1:03d}" for i in range(size))
    return Cohort(env_id.removeprefix("cardiosim/"), difficulty, seed, names, params)
