"""Steps per second: a batch of our environments vs one cardiosim 0.1.0 environment.

Both are measured in the same run on the same machine, with uniform random
actions and auto-reset. Ours runs ``--batch`` patients in one jitted
``lax.scan`` over ``--steps`` steps (compilation timed separately); the
reference steps one NumPy environment in a Python loop.

    python baselines/benchmark_throughput.py [--batch 4096] [--steps 500] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import cardiosim_jax

TIERS = {
    "PacingControl-v0": "medium",
    "AntiarrhythmicDosing-v0": "medium",
    "DefibrillationTiming-v0": "easy",
}


def ours_steps_per_second(env_id: str, difficulty: str, batch: int, steps: int) -> dict:
    env, params = cardiosim_jax.make(env_id, difficulty)
    space = env.action_space(params)

    @jax.jit
    def rollout(key):
        keys = jax.random.split(key, batch)
        _, states = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

        def body(carry, step_key):
            states, total = carry
            act_key, env_key = jax.random.split(step_key)
            actions = jax.random.uniform(
                act_key, (batch, *space.shape), minval=space.low, maxval=space.high
            )
            _, states, rewards, _, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(env_key, batch), states, actions, params
            )
            return (states, total + jnp.sum(rewards)), None

        (_, total), _ = jax.lax.scan(body, (states, jnp.zeros(())), jax.random.split(key, steps))
        return total

    start = time.perf_counter()
    rollout(jax.random.PRNGKey(0)).block_until_ready()
    compile_and_first = time.perf_counter() - start
    timings = []
    for seed in (1, 2, 3):
        start = time.perf_counter()
        rollout(jax.random.PRNGKey(seed)).block_until_ready()
        timings.append(time.perf_counter() - start)
    best = min(timings)
    return {
        "steps_per_second": batch * steps / best,
        "seconds": best,
        "first_call_seconds": compile_and_first,
    }


def reference_steps_per_second(env_id: str, difficulty: str, steps: int) -> float:
    from cardiosim.envs.antiarrhythmic_dosing import AntiarrhythmicDosingEnv
    from cardiosim.envs.defibrillation_timing import DefibrillationTimingEnv
    from cardiosim.envs.pacing_control import PacingControlEnv

    cls = {
        "PacingControl-v0": PacingControlEnv,
        "AntiarrhythmicDosing-v0": AntiarrhythmicDosingEnv,
        "DefibrillationTiming-v0": DefibrillationTimingEnv,
    }[env_id]
    env = cls(difficulty=difficulty)
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(low, high))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--reference-steps", type=int, default=20_000)
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args()

    device = jax.devices()[0]
    print(
        f"# Throughput on {device.platform} ({device.device_kind}), "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        f"# ours: {args.batch} patients x {args.steps} steps; "
        f"reference: 1 env x {args.reference_steps} steps"
    )
    print("| env | tier | ours steps/s | reference steps/s | ratio | ours first call (s) |")
    print("|---|---|---:|---:|---:|---:|")
    results = {}
    for env_id, difficulty in TIERS.items():
        ours = ours_steps_per_second(env_id, difficulty, args.batch, args.steps)
        ref = reference_steps_per_second(env_id, difficulty, args.reference_steps)
        ratio = ours["steps_per_second"] / ref
        results[env_id] = {**ours, "reference_steps_per_second": ref, "ratio": ratio}
        print(
            f"| {env_id} | {difficulty} | {ours['steps_per_second']:,.0f} | {ref:,.0f} | "
            f"{ratio:,.1f}x | {ours['first_call_seconds']:.1f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "device": str(device),
                    "batch": args.batch,
                    "steps": args.steps,
                    "results": results,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
