"""DefibrillationTiming: time and size defibrillation shocks. v0 reproduces the reference; v1
is out-of-hospital VF with CPR (see ``docs/v1/defibrillation_timing.md``). Registered here, in
one call each.
"""

from cardiosim_jax.envs.defibrillation_timing.heuristic_v0 import (
    AlwaysShockParams,
    always_shock_policy,
)
from cardiosim_jax.envs.defibrillation_timing.heuristic_v1 import (
    HeuristicDefibrillationV1Params,
    heuristic_defibrillation_v1_policy,
)
from cardiosim_jax.envs.defibrillation_timing.v0 import DefibrillationTiming
from cardiosim_jax.envs.defibrillation_timing.v1 import DefibrillationTimingV1
from cardiosim_jax.registration import EnvSpec, register

register(
    EnvSpec(
        DefibrillationTiming,
        # CardioSim ships no defibrillation heuristic: shocking at maximum energy on every
        # step is the natural rule-based comparator.
        heuristic=(always_shock_policy, AlwaysShockParams()),
        # Paper Table 1 (Stable-Baselines3 defaults elsewhere, one environment).
        ppo_paper=dict(
            difficulty="easy",
            learning_rate=3e-4,
            num_steps=256,
            ent_coef=0.10,
            total_timesteps=500_000,
        ),
        ppo_tuned=dict(total_timesteps=500_000, gamma=0.99),
        plotter="cardiosim_jax.envs.defibrillation_timing.plot:plot_v0",
    )
)
register(
    EnvSpec(
        DefibrillationTimingV1,
        heuristic=(heuristic_defibrillation_v1_policy, HeuristicDefibrillationV1Params()),
        # PPO's edge over the ACLS rule is shocking recurrent VF as soon as the monitor
        # shows it; at 0.4M steps one seed still added low-energy shocks after a shock,
        # gone by 1M.
        ppo_tuned=dict(total_timesteps=2_000_000, gamma=0.99),
        # Outcomes (termination, ROSC, PEA, asystole) are chance events worth ~100 each:
        # with 16 candidates x 2 iterations on 32 futures the search picked lucky
        # candidates and fell 15.3 below its guide (medium, 128 episodes), 8 candidates on
        # 64 futures 5.3 below; gated at 2 standard errors on the same 64 futures, 0.4 /
        # 0.9 below (medium / hard: the winner's curse survives a gate judged on the
        # futures that chose); judged on 64 fresh futures, 1.2 below on medium (false
        # switches among ~100 decisions per episode) and level on hard. The gate asks for
        # 3 standard errors on fresh futures.
        mpc=dict(
            horizon=6,
            action_repeat=2,
            num_candidates=8,
            iterations=1,
            num_elites=2,
            noise_samples=64,
            tail=48,
            initial_std=0.3,
            switch_sds=3.0,
            validation_samples=64,
        ),
        # No shock: the middle of the box is a 180 J shock every 10 s.
        mpc_initial_action=(0.0,),
    )
)

__all__ = [
    "AlwaysShockParams",
    "DefibrillationTiming",
    "DefibrillationTimingV1",
    "HeuristicDefibrillationV1Params",
    "always_shock_policy",
    "heuristic_defibrillation_v1_policy",
]
