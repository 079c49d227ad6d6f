"""Exploit probes: policies a clinician would call meaningless or harmful, and their audit.

A reward is a specification, and a specification is tested by attacking it.
The probes below act without clinical reasoning (constants at the corners and
centre of the action box, uniform random actions, alternating extremes), or
add meaningless variation to the clinical heuristic (small dithers, random
jitter, periodic swings), or take the two extremes of treatment (never treat,
treat as hard as the box allows). On a well-specified environment every probe
scores clearly below the clinical heuristic, and the harmful ones (declared by
each environment in ``harmful_probes``) below never treating.

Every probe is data (:class:`Probe`), so one compiled rollout serves every
probe, and all probes play the same episodes (same reset and step keys) as
the heuristic: the comparisons are paired, episode by episode.

Environments opt in by declaring, in physical units:

* ``no_treatment_action``: the action that means "never treat";
* ``max_treatment_action``: the most treatment the action box allows;
* ``harmful_probes``: names of probes that a clinician would call harmful;
* optionally ``extra_probes``: ``{name: spec}`` for environment-specific
  attacks, a spec being a :class:`Probe`, a constant action, or
  ``{"heuristic_shift": fractions}`` (the heuristic shifted by those fractions
  of the action range, one per dimension).

    >>> import jax
    >>> import cardiosim_jax
    >>> from cardiosim_jax.agents import probes
    >>> env, params = cardiosim_jax.make("AntiarrhythmicDosing-v1", "medium")
    >>> returns = probes.probe_returns(env, params, ["heuristic", "never_treat"],
    ...                                jax.random.PRNGKey(0), 64)
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

#: ``Probe.kind``: a constant schedule, uniform random actions, or the heuristic plus an offset.
CONSTANT, RANDOM, HEURISTIC = 0, 1, 2
#: ``Probe.offset_pattern`` (heuristic probes): no offset, sign flipping every step, a square
#: wave of period ``SWING_PERIOD`` steps, uniform noise in +-offset each step, or a constant
#: shift by +offset.
NO_OFFSET, FLIP, SQUARE_WAVE, UNIFORM_NOISE, SHIFT = 0, 1, 2, 3, 4
#: Period (steps) of the ``swing_10pct`` square wave.
SWING_PERIOD = 4
#: Episodes per tier of the audit, and the margin as a fraction of the heuristic's
#: advantage over never treating.
AUDIT_EPISODES = 256
AUDIT_MARGIN_FRACTION = 0.1
#: Two-sided 95 % normal quantile for the paired confidence intervals.
Z_95 = 1.959964


@struct.dataclass
class Probe:
    """One probe policy as arrays (actions in physical units, clipped to the action box).

    ``kind`` CONSTANT plays ``even_action`` on even steps and ``odd_action`` on
    odd ones; RANDOM draws uniformly from the box; HEURISTIC plays the
    environment's clinical heuristic plus ``offset_fraction`` (one per action
    dimension) of the box range in the ``offset_pattern``.
    """

    kind: jax.Array
    even_action: jax.Array
    odd_action: jax.Array
    offset_fraction: jax.Array
    offset_pattern: jax.Array


def constant_probe(action: Any, odd_action: Any | None = None) -> Probe:
    """The action held constant (or alternating with ``odd_action`` on odd steps)."""
    even = jnp.asarray(action, jnp.float32)
    odd = even if odd_action is None else jnp.asarray(odd_action, jnp.float32)
    return Probe(jnp.int32(CONSTANT), even, odd, jnp.zeros_like(even), jnp.int32(NO_OFFSET))


def heuristic_probe(action_size: int, offset_fraction: Any, pattern: int) -> Probe:
    """The clinical heuristic plus ``offset_fraction`` of the action range in ``pattern``.

    ``offset_fraction`` is a scalar or one fraction per action dimension.
    """
    zero = jnp.zeros((action_size,), jnp.float32)
    fraction = jnp.broadcast_to(jnp.asarray(offset_fraction, jnp.float32), (action_size,))
    return Probe(jnp.int32(HEURISTIC), zero, zero, fraction, jnp.int32(pattern))


def random_probe(action_size: int) -> Probe:
    """Uniform random actions over the box (the same draws as ``agents.random_policy``)."""
    zero = jnp.zeros((action_size,), jnp.float32)
    return Probe(jnp.int32(RANDOM), zero, zero, zero, jnp.int32(NO_OFFSET))


def action_bounds(env: Any, env_params: Any) -> tuple[np.ndarray, np.ndarray]:
    """Low and high bounds of the action box as float32 vectors."""
    space = env.action_space(env_params)
    shape = (int(np.prod(space.shape)),)
    low = np.broadcast_to(np.asarray(space.low, np.float32), shape)
    high = np.broadcast_to(np.asarray(space.high, np.float32), shape)
    return low.copy(), high.copy()


def standard_probes(env: Any, env_params: Any) -> dict[str, Probe]:
    """Every probe the audit runs on ``env``, by name (``heuristic`` itself included).

    Corners are named ``corner_<bits>``, bit ``i`` 1 for the high bound of action
    dimension ``i``. ``never_treat`` and ``max_treatment`` need the environment's
    ``no_treatment_action`` and ``max_treatment_action``; ``extra_probes`` are added.
    """
    low, high = action_bounds(env, env_params)
    size = low.shape[0]
    found: dict[str, Probe] = {"heuristic": heuristic_probe(size, 0.0, NO_OFFSET)}
    for bits in itertools.product((0, 1), repeat=size):
        corner = np.where(np.array(bits, bool), high, low)
        found["corner_" + "".join(map(str, bits))] = constant_probe(corner)
    found["centre"] = constant_probe(0.5 * (low + high))
    found["random"] = random_probe(size)
    found["alternating_extremes"] = constant_probe(low, high)
    found["dither_2pct"] = heuristic_probe(size, 0.02, FLIP)
    found["dither_random_5pct"] = heuristic_probe(size, 0.05, UNIFORM_NOISE)
    found["swing_10pct"] = heuristic_probe(size, 0.10, SQUARE_WAVE)
    if hasattr(env, "no_treatment_action"):
        found["never_treat"] = constant_probe(env.no_treatment_action)
    if hasattr(env, "max_treatment_action"):
        found["max_treatment"] = constant_probe(env.max_treatment_action)
    for name, extra in getattr(env, "extra_probes", {}).items():
        if isinstance(extra, Probe):
            found[name] = extra
        elif isinstance(extra, Mapping):  # {"heuristic_shift": fractions of the range}
            found[name] = heuristic_probe(size, extra["heuristic_shift"], SHIFT)
        else:
            found[name] = constant_probe(extra)
    return found


def _probe_action(
    probe: Probe,
    heuristic: Any,
    heuristic_params: Any,
    low: jax.Array,
    high: jax.Array,
    obs: jax.Array,
    step: jax.Array,
    key: jax.Array,
) -> jax.Array:
    # The random probe uses the step's action key exactly as agents.random_policy does,
    # and the heuristic gets the same key, so both match run_episodes for the same key.
    uniform = jax.random.uniform(key, low.shape, minval=low, maxval=high)
    clinical = jnp.reshape(heuristic(heuristic_params, obs, key), low.shape)
    noise = jax.random.uniform(jax.random.fold_in(key, 1), low.shape, minval=-1.0, maxval=1.0)
    sign = jnp.where(step % 2 == 0, 1.0, -1.0)
    square = jnp.where((step // (SWING_PERIOD // 2)) % 2 == 0, 1.0, -1.0)
    pattern = jnp.select(
        [
            probe.offset_pattern == FLIP,
            probe.offset_pattern == SQUARE_WAVE,
            probe.offset_pattern == UNIFORM_NOISE,
            probe.offset_pattern == SHIFT,
        ],
        [sign, square, noise, jnp.ones_like(noise)],
        jnp.zeros_like(noise),
    )
    offset = probe.offset_fraction * (high - low) * pattern
    constant = jnp.where(step % 2 == 0, probe.even_action, probe.odd_action)
    action = jnp.select(
        [probe.kind == CONSTANT, probe.kind == RANDOM], [constant, uniform], clinical + offset
    )
    return jnp.clip(action, low, high)


@partial(jax.jit, static_argnames=("env", "heuristic", "n_episodes", "max_steps", "action_shape"))
def _run_probes(
    env: Any,
    env_params: Any,
    heuristic: Any,
    heuristic_params: Any,
    probes: Probe,
    low: jax.Array,
    high: jax.Array,
    key: jax.Array,
    n_episodes: int,
    max_steps: int,
    action_shape: tuple[int, ...],
) -> jax.Array:
    """Episode returns, shape ``(n_probes, n_episodes)``; the episodes of ``run_episodes``."""

    def one_episode(probe: Probe, episode_key: jax.Array) -> jax.Array:
        reset_key, loop_key = jax.random.split(episode_key)
        obs, state = env.reset(reset_key, env_params)

        def body(carry, inputs):
            obs, state, total, alive = carry
            step, step_key = inputs
            act_key, env_key = jax.random.split(step_key)
            action = _probe_action(
                probe, heuristic, heuristic_params, low, high, obs, step, act_key
            )
            obs, state, reward, terminated, truncated, _ = env.step(
                env_key, state, jnp.reshape(action, action_shape), env_params
            )
            total = total + jnp.where(alive, reward, 0.0)
            alive = alive & ~(terminated | truncated)
            return (obs, state, total, alive), None

        steps = jnp.arange(max_steps, dtype=jnp.int32)
        init = (obs, state, jnp.zeros(()), jnp.array(True))
        (_, _, total, _), _ = jax.lax.scan(
            body, init, (steps, jax.random.split(loop_key, max_steps))
        )
        return total

    keys = jax.random.split(key, n_episodes)
    per_probe = jax.vmap(one_episode, in_axes=(None, 0))
    return jax.vmap(per_probe, in_axes=(0, None))(probes, keys)


def probe_returns(
    env: Any,
    env_params: Any,
    probe_names: Sequence[str],
    key: jax.Array,
    n_episodes: int,
    max_steps: int | None = None,
) -> dict[str, np.ndarray]:
    """Undiscounted episode returns of each named probe on the same ``n_episodes`` episodes.

    Episode ``i`` of every probe uses the reset and step keys that
    :func:`cardiosim_jax.rollout.run_episodes` gives episode ``i`` for ``key``,
    so ``"heuristic"`` and ``"random"`` reproduce ``run_episodes`` with those
    policies exactly. ``max_steps`` (static) defaults to the tier's episode length;
    pass one bound for several tiers to share one compilation.

    Raises:
        ValueError: an unknown probe name (the message lists the accepted ones).
    """
    from cardiosim_jax.agents import baseline_policy  # the package imports this module

    available = standard_probes(env, env_params)
    unknown = [name for name in probe_names if name not in available]
    if unknown:
        raise ValueError(f"unknown probe(s) {unknown}; accepted: {sorted(available)}")
    if max_steps is None:
        max_steps = int(np.max(env_params.max_steps_in_episode))
    heuristic, heuristic_params = baseline_policy("heuristic", env, env_params)
    low, high = action_bounds(env, env_params)
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[available[n] for n in probe_names])
    returns = _run_probes(
        env,
        env_params,
        heuristic,
        heuristic_params,
        stacked,
        jnp.asarray(low),
        jnp.asarray(high),
        key,
        n_episodes,
        max_steps,
        tuple(env.action_space(env_params).shape),
    )
    returns = np.asarray(returns, np.float64)
    return {name: returns[i] for i, name in enumerate(probe_names)}


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over paired episodes with its 95 % normal confidence interval."""

    mean: float
    ci_low: float
    ci_high: float
    fraction_b_better: float  # share of episodes where b scored above a

    @classmethod
    def of(cls, a: np.ndarray, b: np.ndarray) -> PairedDifference:
        diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
        half = Z_95 * diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else np.inf
        return cls(
            float(diff.mean()),
            float(diff.mean() - half),
            float(diff.mean() + half),
            float(np.mean(diff < 0.0)),
        )


@dataclasses.dataclass(frozen=True)
class ProbeVerdict:
    """One probe on one tier: its mean return and the paired tests it must pass."""

    name: str
    mean_return: float
    below_heuristic: PairedDifference  # heuristic - probe
    harmful: bool
    below_never_treat: PairedDifference | None  # never_treat - probe (harmful probes)
    margin: float

    @property
    def failures(self) -> list[str]:
        """Why the probe is not clearly worse than it must be (empty when it passes)."""
        found = []
        gap = self.below_heuristic
        if gap.mean < self.margin or gap.ci_low <= 0.0:
            found.append(
                f"{self.name}: heuristic - probe = {gap.mean:.2f} "
                f"[{gap.ci_low:.2f}, {gap.ci_high:.2f}], needs >= {self.margin:.2f} with CI > 0"
            )
        if self.harmful and self.below_never_treat is not None:
            gap = self.below_never_treat
            if gap.mean <= 0.0 or gap.ci_low <= 0.0:
                found.append(
                    f"{self.name} (harmful): never_treat - probe = {gap.mean:.2f} "
                    f"[{gap.ci_low:.2f}, {gap.ci_high:.2f}], needs CI > 0"
                )
        return found


@dataclasses.dataclass(frozen=True)
class TierAudit:
    """The audit of one environment tier."""

    env_id: str
    difficulty: str
    n_episodes: int
    heuristic_mean: float
    never_treat_mean: float
    verdicts: tuple[ProbeVerdict, ...]

    @property
    def failures(self) -> list[str]:
        found = []
        if self.heuristic_mean - self.never_treat_mean <= 0.0:
            found.append(
                f"heuristic {self.heuristic_mean:.2f} does not beat never_treat "
                f"{self.never_treat_mean:.2f}"
            )
        for verdict in self.verdicts:
            found.extend(verdict.failures)
        return [f"{self.env_id} {self.difficulty}: {line}" for line in found]


def judge(
    env_id: str,
    difficulty: str,
    returns: Mapping[str, np.ndarray],
    harmful: Sequence[str],
    margin_fraction: float = AUDIT_MARGIN_FRACTION,
) -> TierAudit:
    """Verdicts for every probe in ``returns`` against ``returns["heuristic"]`` (paired).

    The margin is ``margin_fraction`` of the heuristic's mean advantage over
    ``never_treat``: every probe must give up at least that much.
    """
    heuristic = np.asarray(returns["heuristic"])
    never = np.asarray(returns["never_treat"])
    margin = margin_fraction * float(heuristic.mean() - never.mean())
    verdicts = []
    for name, values in returns.items():
        if name == "heuristic":
            continue
        is_harmful = name in harmful
        verdicts.append(
            ProbeVerdict(
                name=name,
                mean_return=float(np.mean(values)),
                below_heuristic=PairedDifference.of(heuristic, values),
                harmful=is_harmful,
                below_never_treat=PairedDifference.of(never, values) if is_harmful else None,
                margin=margin,
            )
        )
    return TierAudit(
        env_id,
        difficulty,
        int(heuristic.size),
        float(heuristic.mean()),
        float(never.mean()),
        tuple(verdicts),
    )


def audit_returns(
    env_id: str,
    difficulties: Sequence[str] = ("easy", "medium", "hard"),
    n_episodes: int = AUDIT_EPISODES,
    key: jax.Array | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """``{tier: {probe: returns}}`` of every standard probe (one compilation for all tiers)."""
    from cardiosim_jax.registration import make

    key = jax.random.PRNGKey(20261128) if key is None else key
    tiers = {difficulty: make(env_id, difficulty) for difficulty in difficulties}
    max_steps = max(int(np.max(params.max_steps_in_episode)) for _, params in tiers.values())
    return {
        difficulty: probe_returns(
            env, params, list(standard_probes(env, params)), key, n_episodes, max_steps
        )
        for difficulty, (env, params) in tiers.items()
    }


def audit(
    env_id: str,
    difficulties: Sequence[str] = ("easy", "medium", "hard"),
    n_episodes: int = AUDIT_EPISODES,
    key: jax.Array | None = None,
) -> list[TierAudit]:
    """Run every standard probe of ``env_id`` on each tier and judge it (one compilation)."""
    from cardiosim_jax.registration import make

    harmful = tuple(getattr(make(env_id)[0], "harmful_probes", ()))
    found = audit_returns(env_id, difficulties, n_episodes, key)
    return [judge(env_id, difficulty, returns, harmful) for difficulty, returns in found.items()]
