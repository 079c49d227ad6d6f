"""AntiarrhythmicDosing: dose an antiarrhythmic drug. v0 reproduces the reference; v1 is oral
sotalol initiation (see ``docs/v1/antiarrhythmic_dosing.md``). Registered here, in one call each.
"""

from cardiosim_jax.envs.antiarrhythmic_dosing.heuristic_v0 import (
    HeuristicDosingParams,
    heuristic_dosing_policy,
)
from cardiosim_jax.envs.antiarrhythmic_dosing.heuristic_v1 import (
    HeuristicDosingV1Params,
    heuristic_dosing_v1_policy,
)
from cardiosim_jax.envs.antiarrhythmic_dosing.v0 import AntiarrhythmicDosing
from cardiosim_jax.envs.antiarrhythmic_dosing.v1 import AntiarrhythmicDosingV1
from cardiosim_jax.registration import EnvSpec, register

register(
    EnvSpec(
        AntiarrhythmicDosing,
        heuristic=(heuristic_dosing_policy, HeuristicDosingParams()),
        # Paper Table 1 (Stable-Baselines3 defaults elsewhere, one environment).
        ppo_paper=dict(
            difficulty="medium",
            learning_rate=5e-4,
            num_steps=1024,
            ent_coef=0.02,
            total_timesteps=300_000,
        ),
        ppo_tuned=dict(total_timesteps=1_000_000, gamma=0.99),
        plotter="cardiosim_jax.envs.antiarrhythmic_dosing.plot:plot_v0",
    )
)
register(
    EnvSpec(
        AntiarrhythmicDosingV1,
        heuristic=(heuristic_dosing_v1_policy, HeuristicDosingV1Params()),
        # One step is a 12 h dosing decision and an episode 6 of them, so the whole 72 h
        # stay is the horizon (gamma 0.99); a step costs 12 hourly simulations, hence the
        # budget.
        ppo_tuned=dict(total_timesteps=300_000, gamma=0.99),
        # The lookahead covers the whole stay, so no guide tail is needed.
        mpc=dict(
            horizon=6,
            action_repeat=1,
            num_candidates=128,
            iterations=4,
            num_elites=12,
            noise_samples=2,
            tail=0,
        ),
    )
)

__all__ = [
    "AntiarrhythmicDosing",
    "AntiarrhythmicDosingV1",
    "HeuristicDosingParams",
    "HeuristicDosingV1Params",
    "heuristic_dosing_policy",
    "heuristic_dosing_v1_policy",
]
