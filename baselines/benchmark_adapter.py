"""Overhead of the Gymnasium adapter over the raw jitted JAX step, measured side by side.

For each environment (medium tier), in one run on one machine:

(a) single env: ``CardioSimGymnasiumEnv.step`` with random NumPy actions
    (``reset()`` whenever an episode ends) vs the raw jitted gymnax
    ``env.step`` on one patient per call (``block_until_ready``; auto-reset is
    inside the compiled step);
(b) batch: ``CardioSimVectorEnv.step`` with ``--num-envs`` sub-envs (NEXT_STEP
    autoreset) vs the raw jitted ``vmap(env.step)`` over the same number of
    patients, one call per step (``block_until_ready``).

Both sides get their actions from NumPy on the host; the raw step leaves its
outputs on the device, the adapter converts them to NumPy (observations,
rewards, flags, info dict). Compilation happens before timing; each figure is
the best of ``--repeats`` timed blocks, the adapter and raw blocks alternating
so that machine load hits both alike. Overhead = raw steps/s / adapter steps/s.

    python baselines/benchmark_adapter.py [--quick] [--out-dir DIR]

Without ``--quick`` the results go to ``baselines/results/adapter_overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

import cardiosim_jax
from cardiosim_jax.gymnasium_adapter import CardioSimGymnasiumEnv, CardioSimVectorEnv

ENV_IDS = ("PacingControl-v0", "AntiarrhythmicDosing-v0", "DefibrillationTiming-v0")
DIFFICULTY = "medium"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def gym_single(env_id: str, steps: int, seed: int) -> float:
    """Steps/s of ``CardioSimGymnasiumEnv.step`` (reset on done; resets are timed too)."""
    env = CardioSimGymnasiumEnv(env_id, DIFFICULTY)
    rng = np.random.default_rng(seed)
    space = env.action_space
    actions = rng.uniform(space.low, space.high, (steps, *space.shape)).astype(np.float32)
    env.reset(seed=seed)
    env.step(actions[0])  # compiled
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def raw_single(env_id: str, steps: int, seed: int) -> float:
    """Steps/s of the jitted gymnax ``env.step`` on one patient per call."""
    env, params = cardiosim_jax.make(env_id, DIFFICULTY)
    rng = np.random.default_rng(seed)
    space = env.action_space(params)
    low, high = np.asarray(space.low), np.asarray(space.high)
    actions = rng.uniform(low, high, (steps, *space.shape)).astype(np.float32)
    keys = np.asarray(jax.random.split(jax.random.PRNGKey(seed), steps + 1))
    _, state = env.reset(keys[-1], params)
    jax.block_until_ready(env.step(keys[0], state, actions[0], params))  # compiled
    start = time.perf_counter()
    for key, action in zip(keys[:-1], actions, strict=True):
        out = env.step(key, state, action, params)
        state = out[1]
        jax.block_until_ready(out)
    return steps / (time.perf_counter() - start)


def gym_vector(env_id: str, num_envs: int, steps: int, seed: int) -> float:
    """Env-steps/s of ``CardioSimVectorEnv.step`` (NEXT_STEP autoreset)."""
    env = CardioSimVectorEnv(env_id, num_envs, DIFFICULTY)
    rng = np.random.default_rng(seed)
    space = env.action_space
    actions = rng.uniform(space.low, space.high, (steps, *space.shape)).astype(np.float32)
    env.reset(seed=seed)
    env.step(actions[0])  # compiled
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    return num_envs * steps / (time.perf_counter() - start)


@functools.partial(jax.jit, static_argnums=0)
def _raw_vector_step(env, key, t, states, actions, params):
    """``vmap(env.step)`` with per-patient keys split from ``fold_in(key, t)``."""
    keys = jax.random.split(jax.random.fold_in(key, t), actions.shape[0])
    return jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, states, actions, params)


def raw_vector(env_id: str, num_envs: int, steps: int, seed: int) -> float:
    """Env-steps/s of the jitted ``vmap(env.step)`` over ``num_envs`` patients, one call a step."""
    env, params = cardiosim_jax.make(env_id, DIFFICULTY)
    rng = np.random.default_rng(seed)
    space = env.action_space(params)
    low, high = np.asarray(space.low), np.asarray(space.high)
    actions = rng.uniform(low, high, (steps, num_envs, *space.shape)).astype(np.float32)

    key = jax.random.PRNGKey(seed)
    _, states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)
    jax.block_until_ready(_raw_vector_step(env, key, 0, states, actions[0], params))  # compiled
    start = time.perf_counter()
    for t, action in enumerate(actions):
        out = _raw_vector_step(env, key, t, states, action, params)
        states = out[1]
        jax.block_until_ready(out)
    return num_envs * steps / (time.perf_counter() - start)


def measure(env_id: str, args: argparse.Namespace) -> dict:
    """Best-of-``repeats`` steps/s of the four variants, adapter and raw blocks alternating."""
    best = {"gym_single": 0.0, "raw_single": 0.0, "gym_vector": 0.0, "raw_vector": 0.0}
    for repeat in range(args.repeats):
        seed = 1000 * repeat
        best["gym_single"] = max(best["gym_single"], gym_single(env_id, args.single_steps, seed))
        best["raw_single"] = max(best["raw_single"], raw_single(env_id, args.single_steps, seed))
        best["gym_vector"] = max(
            best["gym_vector"], gym_vector(env_id, args.num_envs, args.vector_steps, seed)
        )
        best["raw_vector"] = max(
            best["raw_vector"], raw_vector(env_id, args.num_envs, args.vector_steps, seed)
        )
    return {
        "gymnasium_env_steps_per_second": best["gym_single"],
        "raw_single_steps_per_second": best["raw_single"],
        "single_overhead": best["raw_single"] / best["gym_single"],
        "vector_env_steps_per_second": best["gym_vector"],
        "raw_vmapped_steps_per_second": best["raw_vector"],
        "vector_overhead": best["raw_vector"] / best["gym_vector"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run, writes nothing")
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--single-steps", type=int, default=None, help="default 5000 (quick 300)")
    parser.add_argument("--vector-steps", type=int, default=None, help="default 300 (quick 20)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (quick 1)")
    parser.add_argument("--out-dir", type=Path, default=None, help="default baselines/results")
    args = parser.parse_args()
    args.single_steps = args.single_steps or (300 if args.quick else 5000)
    args.vector_steps = args.vector_steps or (20 if args.quick else 300)
    args.repeats = args.repeats or (1 if args.quick else 3)
    out_dir = args.out_dir or (None if args.quick else RESULTS_DIR)

    device = jax.devices()[0]
    lines = [
        f"# Gymnasium adapter overhead on {device.platform} ({device.device_kind}), "
        f"{platform.processor() or platform.machine()}, {DIFFICULTY} tier",
        f"# single: {args.single_steps} steps; vector: {args.num_envs} envs x "
        f"{args.vector_steps} steps; best of {args.repeats}",
        "| env | Gymnasium env steps/s | raw jitted step steps/s | overhead | "
        f"VectorEnv ({args.num_envs}) env-steps/s | raw vmapped step ({args.num_envs}) "
        "env-steps/s | overhead |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for line in lines:
        print(line, flush=True)
    results = {}
    for env_id in ENV_IDS:
        r = measure(env_id, args)
        results[env_id] = r
        row = (
            f"| {env_id} | {r['gymnasium_env_steps_per_second']:,.0f} | "
            f"{r['raw_single_steps_per_second']:,.0f} | {r['single_overhead']:.2f}x | "
            f"{r['vector_env_steps_per_second']:,.0f} | {r['raw_vmapped_steps_per_second']:,.0f} | "
            f"{r['vector_overhead']:.2f}x |"
        )
        lines.append(row)
        print(row, flush=True)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "adapter_overhead.md").write_text("\n".join(lines) + "\n")
        payload = {
            "device": str(device),
            "difficulty": DIFFICULTY,
            "num_envs": args.num_envs,
            "single_steps": args.single_steps,
            "vector_steps": args.vector_steps,
            "repeats": args.repeats,
            "results": results,
        }
        (out_dir / "adapter_overhead.json").write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {out_dir / 'adapter_overhead.md'} and .json")


if __name__ == "__main__":
    main()
