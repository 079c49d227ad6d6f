"""PPO settings as typed data: :class:`PPOConfig` and the presets (paper, tuned, large).

The continuous hyperparameters (learning rate, entropy coefficient, clip range,
gamma, GAE lambda, ...) are pytree leaves of :class:`PPOConfig`; shapes (number
of environments, steps, minibatches, network sizes) are static fields. A stack
of configs that share the static fields (:func:`stack_configs`) is one ``vmap``
of one compiled ``train``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

import cardiosim_jax

#: Hidden-layer activations by the name :attr:`PPOConfig.activation` takes.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"tanh": nn.tanh, "relu": nn.relu}


def _unknown_env_error(env_id: str) -> ValueError:
    # One line, as the CLI prints it.
    return ValueError(
        f"unknown environment id {env_id!r}; registered: {list(cardiosim_jax.registered_envs)}"
    )


def _is_int(value: Any) -> bool:
    """An int or NumPy integer, not a bool (and not a float such as 64.0)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _real_array(value: Any) -> np.ndarray | None:
    """``value`` as a float64 array if it holds only real numbers, else ``None``.

    Bools, strings, None and complex numbers are refused, not converted:
    ``np.asarray("0.1", float)`` would read a string as a number.
    """
    if value is None or isinstance(value, (str, bytes, bool, np.bool_)):
        return None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if array.dtype.kind not in "iuf":
        return None
    return array.astype(np.float64)


#: Boolean static fields of :class:`PPOConfig` (a string such as "False" would count as True).
_FLAGS = (
    "normalize_observations",
    "symlog_observations",
    "symlog_rewards",
    "rescale_actions",
    "anneal_lr",
    "shard_envs",
)

#: Per leaf of :class:`PPOConfig`: what is accepted (for the message) and the test of
#: every entry, in float64 (NaN fails every comparison, so it is refused everywhere).
_LEAF_RULES: tuple[tuple[str, str, Callable[[np.ndarray], np.ndarray]], ...] = (
    # 0 is allowed: a frozen-network control arm (the PPO tests train one).
    ("learning_rate", "finite and >= 0", lambda v: np.isfinite(v) & (v >= 0)),
    ("ent_coef", "finite and >= 0", lambda v: np.isfinite(v) & (v >= 0)),
    ("clip_eps", "finite and > 0", lambda v: np.isfinite(v) & (v > 0)),
    ("gamma", "in [0, 1]", lambda v: (v >= 0) & (v <= 1)),
    ("gae_lambda", "in [0, 1]", lambda v: (v >= 0) & (v <= 1)),
    ("vf_coef", "finite and >= 0", lambda v: np.isfinite(v) & (v >= 0)),
    # inf leaves the gradients unclipped (optax scales by min(1, max_norm / norm)).
    ("max_grad_norm", "> 0 (inf: no clipping)", lambda v: v > 0),
    ("init_log_std", "finite", np.isfinite),
    ("reward_scale", "finite and > 0", lambda v: np.isfinite(v) & (v > 0)),
    ("reward_clip", "> 0 (inf: no clipping)", lambda v: v > 0),
    ("smoothness_coef", "finite and >= 0", lambda v: np.isfinite(v) & (v >= 0)),
)


@struct.dataclass
class PPOConfig:
    """PPO settings. Static fields fix shapes; the others are vmappable leaves."""

    env_id: str = struct.field(pytree_node=False, default="AntiarrhythmicDosing-v0")
    difficulty: str = struct.field(pytree_node=False, default="medium")
    num_envs: int = struct.field(pytree_node=False, default=1)
    num_steps: int = struct.field(pytree_node=False, default=2048)
    total_timesteps: int = struct.field(pytree_node=False, default=200_000)
    minibatch_size: int = struct.field(pytree_node=False, default=64)
    update_epochs: int = struct.field(pytree_node=False, default=10)
    hidden_sizes: tuple[int, ...] = struct.field(pytree_node=False, default=(64, 64))
    activation: str = struct.field(pytree_node=False, default="tanh")
    normalize_observations: bool = struct.field(pytree_node=False, default=False)
    symlog_observations: bool = struct.field(pytree_node=False, default=False)
    symlog_rewards: bool = struct.field(pytree_node=False, default=False)
    rescale_actions: bool = struct.field(pytree_node=False, default=False)
    anneal_lr: bool = struct.field(pytree_node=False, default=False)
    #: Initial mean action in environment units (None: the policy's raw mean starts at 0).
    init_action: tuple[float, ...] | None = struct.field(pytree_node=False, default=None)
    #: Split the environments over all devices (``cardiosim_jax.sharding``); needs
    #: ``num_envs`` and ``minibatch_size`` divisible by the device count.
    shard_envs: bool = struct.field(pytree_node=False, default=False)
    #: Residual policy learning (:class:`cardiosim_jax.training.networks.Residual`): act
    #: as ``env_id``'s registered heuristic plus ``residual_scale x clip(raw, -1, 1)``
    #: (environment units per action entry). None: the network acts alone.
    residual_scale: tuple[float, ...] | None = struct.field(pytree_node=False, default=None)
    learning_rate: float = 3e-4
    ent_coef: float = 0.0
    clip_eps: float = 0.2
    gamma: float = 0.99
    gae_lambda: float = 0.95
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    init_log_std: float = 0.0
    reward_scale: float = 1.0
    reward_clip: float = float("inf")
    #: Weight of the temporal action-smoothness loss (CAPS, Mysore et al. 2021): the mean
    #: Euclidean distance between the policy's mean actions (raw units) at consecutive
    #: steps of an episode. The term is compiled in only when ``make_train``'s config has a
    #: nonzero value (0 leaves the loss, and every committed result, unchanged).
    smoothness_coef: float = 0.0

    @property
    def batch_size(self) -> int:
        """Transitions per rollout (``num_envs x num_steps``)."""
        return self.num_envs * self.num_steps

    @property
    def num_minibatches(self) -> int:
        return max(1, self.batch_size // self.minibatch_size)

    @property
    def num_updates(self) -> int:
        """Rollout-and-update iterations in ``total_timesteps`` (at least one)."""
        return max(1, self.total_timesteps // self.batch_size)

    def replace_static(self, **changes: Any) -> PPOConfig:
        return dataclasses.replace(self, **changes)

    def validate(self, registered_env: bool = True) -> None:
        """Raise a one-line ``ValueError`` for settings that cannot train.

        Static fields: counts are ints >= 1 (not floats or bools), flags are
        bools, ``hidden_sizes`` ints >= 1, ``activation`` known,
        ``init_action`` finite numbers; for a registered ``env_id`` also
        ``difficulty`` one of its tiers and ``init_action``/``residual_scale``
        one entry per action. Leaves: :meth:`validate_hyperparameters`.
        ``registered_env=False`` skips the checks against the registry
        (``make_train`` given an environment object trains on that instead;
        ``env_id`` and ``difficulty`` are then labels, and ``make_train``
        checks the action sizes against that environment).
        """
        if registered_env:
            self._validate_env()
        for name in ("num_envs", "num_steps", "total_timesteps", "minibatch_size", "update_epochs"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in _FLAGS:
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        if not isinstance(self.hidden_sizes, (tuple, list)) or not all(
            _is_int(width) and width >= 1 for width in self.hidden_sizes
        ):
            raise ValueError(
                f"hidden_sizes must be a tuple (or list) of ints >= 1 (layer widths), "
                f"got {self.hidden_sizes!r}"
            )
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} not in {sorted(ACTIVATIONS)}")
        if self.batch_size % self.minibatch_size:
            raise ValueError(
                f"num_envs x num_steps ({self.batch_size}) must be a multiple of "
                f"minibatch_size ({self.minibatch_size})"
            )
        if self.init_action is not None:
            self._validate_action_tuple("init_action", self.init_action, registered_env)
        if self.residual_scale is not None:
            self._validate_residual(registered_env)
        self.validate_hyperparameters()

    def validate_hyperparameters(self) -> None:
        """Raise ``ValueError`` for a leaf (a vmappable hyperparameter) that is not in range.

        Every leaf finite and in its range (``gamma`` and ``gae_lambda`` in
        [0, 1], ``max_grad_norm`` and ``reward_clip`` > 0 with inf meaning no
        clipping, the rest as named in the message). Every entry of an array
        leaf is checked, so a stacked config (:func:`stack_configs`) names its
        bad entry; traced leaves (inside ``jit``) cannot be read and are skipped.
        """
        for name, accepted, in_range in _LEAF_RULES:
            value = getattr(self, name)
            if isinstance(value, jax.core.Tracer):
                continue
            values = _real_array(value)
            if values is None:
                raise ValueError(f"{name} must be a real number, got {value!r}")
            bad = ~in_range(values)
            if np.any(bad):
                index = int(np.flatnonzero(np.ravel(bad))[0])
                shown = f"{float(np.ravel(values)[index]):g}"
                where = f" (entry {index} of {values.size})" if values.ndim else ""
                raise ValueError(f"{name} must be {accepted}, got {shown}{where}")

    def _validate_env(self) -> None:
        env_id = self.env_id.removeprefix("cardiosim/") if isinstance(self.env_id, str) else None
        if env_id not in cardiosim_jax.registered_envs:
            raise _unknown_env_error(self.env_id)
        tiers = list(cardiosim_jax.registration.spec(env_id).env_class.tiers)
        if not isinstance(self.difficulty, str) or self.difficulty not in tiers:
            raise ValueError(
                f"unknown difficulty {self.difficulty!r} for {env_id}; accepted: {tiers}"
            )

    def _validate_action_tuple(self, name: str, value: Any, registered_env: bool) -> None:
        """A sequence of finite numbers, one per action entry of a registered environment."""
        entries = None if isinstance(value, (str, bytes)) else _real_array(value)
        if entries is None or entries.ndim != 1 or not np.all(np.isfinite(entries)):
            raise ValueError(f"{name} must be a tuple of finite numbers, got {value!r}")
        if registered_env:
            env_id = self.env_id.removeprefix("cardiosim/")
            size = int(np.prod(cardiosim_jax.registration.spec(env_id).env_class.action_shape))
            if entries.size != size:
                raise ValueError(
                    f"{name} {value!r} has {entries.size} entries; {env_id}'s action has {size}"
                )

    def _validate_residual(self, registered_env: bool) -> None:
        try:
            scale = np.asarray(self.residual_scale, np.float64)
        except (TypeError, ValueError):
            scale = np.asarray(np.nan)
        if scale.ndim != 1 or not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError(
                f"residual_scale must be finite and > 0 per action entry, got {self.residual_scale}"
            )
        self._validate_action_tuple("residual_scale", self.residual_scale, registered_env)
        if self.init_action is not None:
            raise ValueError(
                "init_action must be None with residual_scale: a residual policy starts "
                "at the heuristic's action"
            )
        # Also for a given env object: the heuristic comes from the registry.
        env_id = self.env_id.removeprefix("cardiosim/")
        if cardiosim_jax.registration.spec(env_id).heuristic is None:
            raise ValueError(f"residual_scale needs a registered heuristic; {env_id} has none")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists, array leaves as lists or floats)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            value = np.asarray(value).tolist() if not isinstance(value, str | tuple) else value
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPOConfig:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["hidden_sizes"] = tuple(data.get("hidden_sizes", (64, 64)))
        for name in ("init_action", "residual_scale"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)


def stack_configs(configs: Sequence[PPOConfig]) -> PPOConfig:
    """Stack configs with equal static fields into one config with batched leaves (for vmap).

    Raises:
        ValueError: a leaf out of range in any of the configs
            (:meth:`PPOConfig.validate_hyperparameters`): a sweep's grid is
            checked before it compiles, not only its base config.
    """
    stacked = jax.tree_util.tree_map(
        lambda *xs: jnp.stack([jnp.asarray(x, jnp.float32) for x in xs]), *configs
    )
    # Checked stacked, so the message names the bad config by its entry.
    stacked.validate_hyperparameters()
    return stacked


# --------------------------------------------------------------------------- presets

#: Many parallel environments, normalised observations, actions rescaled to the bounds.
#: The ``tuned`` preset is these settings plus what the environment's package registers
#: (``EnvSpec.ppo_tuned``); without an entry, these alone (with :class:`PPOConfig`'s
#: 200,000-step budget and gamma 0.99).
_TUNED_COMMON = dict(
    num_envs=64,
    num_steps=128,
    minibatch_size=1024,
    update_epochs=4,
    normalize_observations=True,
    rescale_actions=True,
    anneal_lr=True,
    learning_rate=1e-3,
    ent_coef=0.0,
    clip_eps=0.2,
    gae_lambda=0.95,
    vf_coef=0.5,
    max_grad_norm=0.5,
    init_log_std=-0.5,
)
PRESETS = ("paper", "tuned", "large")

#: The ``large`` preset's defaults: environments in parallel (4,096 or more suits a
#: GPU), steps per rollout, and minibatches per epoch (the ``tuned`` preset's 8).
LARGE_NUM_ENVS = 1024
LARGE_NUM_STEPS = 32
LARGE_MINIBATCHES = 8

#: Settings that shape a rollout; ``large`` derives the rest of its shape from them.
_SHAPE_FIELDS = ("num_envs", "num_steps", "minibatch_size", "total_timesteps")


def _large_settings(tuned: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``tuned`` scaled to a large batch: its number of updates, epochs and minibatches.

    ``num_envs`` (default :data:`LARGE_NUM_ENVS`) x ``num_steps`` (default
    :data:`LARGE_NUM_STEPS`) transitions per update, :data:`LARGE_MINIBATCHES`
    minibatches per epoch, and a budget of as many updates as ``tuned`` makes,
    so each gradient step sees a larger, less noisy minibatch and the schedule
    (learning-rate annealing included) is ``tuned``'s. ``minibatch_size`` and
    ``total_timesteps`` follow ``num_envs`` and ``num_steps`` unless overridden.
    """
    tuned_updates = max(1, tuned["total_timesteps"] // (tuned["num_envs"] * tuned["num_steps"]))
    num_envs = overrides.get("num_envs", LARGE_NUM_ENVS)
    num_steps = overrides.get("num_steps", LARGE_NUM_STEPS)
    settings = dict(tuned, num_envs=num_envs, num_steps=num_steps)
    if _is_int(num_envs) and _is_int(num_steps) and num_envs > 0 and num_steps > 0:
        # (else validate() names the bad value)
        batch = num_envs * num_steps
        # The largest divisor of the batch giving at least LARGE_MINIBATCHES minibatches.
        minibatch = max(1, batch // LARGE_MINIBATCHES)
        while batch % minibatch:
            minibatch -= 1
        settings["minibatch_size"] = minibatch
        settings["total_timesteps"] = tuned_updates * batch
    return settings


def preset(name: str, env_id: str, difficulty: str | None = None, **overrides: Any) -> PPOConfig:
    """The ``paper``, ``tuned`` or ``large`` configuration for a registered environment.

    Each environment's settings come from its package's registration
    (:class:`cardiosim_jax.registration.EnvSpec`): ``paper`` is ``ppo_paper``
    (the paper's Table 1, v0 environments only); ``tuned`` is the common
    settings updated by ``ppo_tuned`` (the common settings alone without one),
    then by ``ppo_tuned_tiers`` for the tier. ``large`` is ``tuned`` scaled
    to ``num_envs`` (default 1,024) x ``num_steps`` (default 32) per rollout,
    with ``tuned``'s number of updates and 8 minibatches per epoch
    (:func:`_large_settings`), then updated by ``ppo_large``: the batch size
    for a GPU (``num_envs=4096``).
    ``difficulty`` (default: the paper's tier, else ``"medium"``) and
    ``overrides`` (any :class:`PPOConfig` field) replace the preset's values.
    Raises ``ValueError`` for an unknown preset, an unregistered id, or
    settings that cannot train.
    """
    env_id = env_id.removeprefix("cardiosim/")
    if env_id not in cardiosim_jax.registered_envs:
        raise _unknown_env_error(env_id)
    spec = cardiosim_jax.registration.spec(env_id)
    paper = spec.ppo_paper
    if name == "paper":
        if paper is None:
            with_paper = [
                i
                for i in cardiosim_jax.registered_envs
                if cardiosim_jax.registration.spec(i).ppo_paper is not None
            ]
            raise ValueError(
                f"the paper preset exists only for the v0 environments {with_paper}; "
                f"use the tuned preset for {env_id}"
            )
        settings = dict(paper)
    elif name in ("tuned", "large"):
        default_tier = (paper or {}).get("difficulty", "medium")
        settings = {"difficulty": default_tier, **_TUNED_COMMON, **spec.ppo_tuned}
    else:
        raise ValueError(f"unknown preset {name!r}; accepted: {list(PRESETS)}")
    if difficulty is not None:
        settings["difficulty"] = difficulty
    if name != "paper":
        settings.update(spec.ppo_tuned_tiers.get(settings["difficulty"], {}))
    if name == "large":
        settings = _large_settings(settings, {**spec.ppo_large, **overrides})
        settings.update(spec.ppo_large)
    settings.update(overrides)
    config = PPOConfig(env_id=env_id, **settings)
    config.validate()
    return config
