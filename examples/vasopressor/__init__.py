"""A template environment package: everything of one environment, registered in one call.

Importing this package registers ``VasopressorTitration-v0``; nothing outside it is edited.
"""

from cardiosim_jax.registration import EnvSpec, register

from .env import VasopressorTitration
from .heuristic import TitrationParams, titration_policy

register(
    EnvSpec(
        VasopressorTitration,
        heuristic=(titration_policy, TitrationParams()),
        # Settings of the tuned PPO preset that differ from the common ones.
        ppo_tuned=dict(total_timesteps=200_000, gamma=0.95, init_log_std=-1.0),
        # Imported only when a plot is drawn, so registering never imports matplotlib.
        plotter=f"{__name__}.plot:plot_v0",
    )
)

__all__ = ["TitrationParams", "VasopressorTitration", "titration_policy"]
