"""Profile the CardioSim environments at a large batch: where does a step's time go?

Every variant below runs ``--steps`` environment steps of ``--batch`` patients
in ONE jitted ``lax.scan`` and is timed side by side in this one process,
alternating the variants round by round and keeping each one's best round
(the machine is shared, so only same-process ratios mean anything):

``env.step``        gymnax auto-reset step (``reset_env`` computed every step
                    and selected), random actions drawn and keys split inside
                    the loop -- how a training loop uses the env.
``env.step pregen`` the same step fed keys and actions generated before the
                    timed call: the loop's own PRNG work removed.
``env.step cheap-rng`` ``env.step pregen`` with keys of a trivial (insecure)
                    PRNG instead of threefry, so every ``jax.random`` call
                    inside the env costs a few integer ops: the difference to
                    ``env.step pregen`` is what the env's PRNG costs.
``step_env``        ``step_env`` alone, no reset, no select.
``reset_env``       ``reset_env`` alone (obs and every state leaf consumed).
``loop rng``        only the loop's PRNG work (split keys + random actions).
``batched``         ``cardiosim_jax.envs.vector.make_batched_step`` (optimistic
                    reset), inputs pregenerated.
``floor``           the compute floor: a bare RK4 kernel with the env's
                    substeps and 2-state model per env step, vmapped, no RNG,
                    no branching (best of a scanned and an unrolled substep loop).

``--baseline REV`` also loads ``cardiosim_jax`` as of git revision REV (import
paths rewritten to a private package name) and times its variants in the same
rounds, for before/after ratios. ``--hlo DIR`` writes the optimised HLO of
every variant and prints an op census (while loops, fusions, gathers,
scatters, dynamic-update-slices, sorts, f64, cost-analysis flops).

Run from the repository root, e.g.::

    python benchmarks/profile_envs.py --baseline HEAD --repeats 7
    python benchmarks/profile_envs.py --envs pacing --hlo /tmp/hlo --repeats 3
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cardiosim_jax  # noqa: E402
from cardiosim_jax.models import aliev_panfilov as ap  # noqa: E402
from cardiosim_jax.models import fitzhugh_nagumo as fhn  # noqa: E402
from cardiosim_jax.models.integrators import rk4_step  # noqa: E402

ENVS = {
    "pacing": "PacingControl-v0",
    "dosing": "AntiarrhythmicDosing-v0",
    "defib": "DefibrillationTiming-v0",
}
#: Reference (cardiosim 0.1.0, NumPy, one env) steps/s on this machine, from the issue.
REFERENCE_STEPS_PER_S = {"pacing": 15.3e3, "dosing": 17.0e3, "defib": 3.5e3}
TARGET_SPEEDUP = 3000.0
TARGET_FLOOR_FRACTION = 0.5
#: (model, RK4 substeps, dt) per env step: what the floor integrates.
FLOOR_MODELS = {"pacing": ("fhn", 10), "dosing": ("fhn", 20), "defib": ("ap", 20)}


# ----------------------------------------------------------------- cheap PRNG


def _mix(x: jax.Array) -> jax.Array:
    """A few-op integer hash (xorshift-multiply); NOT a good PRNG, only a cost probe."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    return x ^ (x >> 15)


def _cheap_split(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    n = int(np.prod(shape))
    counter = jnp.arange(2 * n, dtype=jnp.uint32).reshape(n, 2)
    return _mix(key[None, :] ^ counter).reshape(*shape, 2)


def _cheap_bits(key: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    n = int(np.prod(shape))
    bits = _mix(key[0] ^ _mix(key[1] + jnp.arange(n, dtype=jnp.uint32))).reshape(shape)
    dtype = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32}[bit_width]
    return bits.astype(dtype)


CHEAP_PRNG = define_prng_impl(
    key_shape=(2,),
    seed=lambda seed: jnp.stack([jnp.uint32(0), seed.astype(jnp.uint32)]),
    split=_cheap_split,
    random_bits=_cheap_bits,
    fold_in=lambda key, data: _mix(key ^ jnp.asarray(data, jnp.uint32)),
    name="cheap_probe",
)


def cheap_keys(raw_keys: jax.Array) -> jax.Array:
    """Typed keys of the cheap probe PRNG with the bits of ``raw_keys`` (uint32, (..., 2))."""
    return jax.random.wrap_key_data(raw_keys, impl=CHEAP_PRNG)


# ----------------------------------------------------------------- baseline


def load_baseline(rev: str) -> Any:
    """``cardiosim_jax`` as of git ``rev``, importable as ``cardiosim_jax_base``."""
    archive = subprocess.run(
        ["git", "archive", rev, "cardiosim_jax"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    target = Path(tempfile.mkdtemp(prefix="cardiosim_base_"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    package = target / "cardiosim_jax_base"
    (target / "cardiosim_jax").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\bcardiosim_jax\b", "cardiosim_jax_base", text))
    sys.path.insert(0, str(target))
    return importlib.import_module("cardiosim_jax_base")


# ----------------------------------------------------------------- variants


def random_actions(env: Any, params: Any, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    space = env.action_space(params)
    return jax.random.uniform(key, (*shape, *space.shape), minval=space.low, maxval=space.high)


def consume(tree: Any) -> jax.Array:
    """Sum of every leaf as float32, so nothing the variant computes is dead code."""
    return sum(jnp.sum(leaf.astype(jnp.float32)) for leaf in jax.tree_util.tree_leaves(tree))


class Variant:
    """One jitted timed function with its (device-resident) arguments; compiled lazily."""

    def __init__(self, name: str, fn: Callable, args: tuple, steps: int) -> None:
        self.name = name
        self.jitted = jax.jit(fn)
        self.args = args
        self.steps = steps  # env steps per call (batch x scan length)
        self._compiled: Any = None
        self.compile_s = float("nan")
        self.best = float("inf")

    @property
    def compiled(self) -> Any:
        if self._compiled is None:
            start = time.perf_counter()
            self._compiled = self.jitted.lower(*self.args).compile()
            self.compile_s = time.perf_counter() - start
        return self._compiled

    def run(self) -> float:
        start = time.perf_counter()
        jax.block_until_ready(self.compiled(*self.args))
        elapsed = time.perf_counter() - start
        self.best = min(self.best, elapsed)
        return elapsed

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.best


def env_variants(
    tag: str, package: Any, env_id: str, batch: int, steps: int, key: jax.Array
) -> list[Variant]:
    """The env-level variants of one env from one version of the package."""
    env, params = package.make(env_id)
    k_reset, k_keys, k_act, k_loop = jax.random.split(key, 4)
    _, state0 = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, batch), params)
    keys = jax.random.split(k_keys, steps * batch).reshape(steps, batch, 2)
    actions = random_actions(env, params, k_act, (steps, batch))
    vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    vstep_env = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))
    vreset_env = jax.vmap(env.reset_env, in_axes=(0, None))
    n = steps * batch

    def loop_step(loop_key, state):
        def body(carry, _):
            loop_key, state, acc = carry
            loop_key, key_act, key_env = jax.random.split(loop_key, 3)
            act = random_actions(env, params, key_act, (batch,))
            obs, state, reward, term, trunc, _ = vstep(
                jax.random.split(key_env, batch), state, act, params
            )
            return (loop_key, state, acc + consume((obs, reward, term | trunc))), None

        (_, state, acc), _ = jax.lax.scan(body, (loop_key, state, 0.0), None, length=steps)
        return state, acc

    def pregen_step(keys, actions, state, wrap=lambda k: k):
        def body(carry, inputs):
            state, acc = carry
            step_keys, act = inputs
            obs, state, reward, term, trunc, _ = vstep(wrap(step_keys), state, act, params)
            return (state, acc + consume((obs, reward, term | trunc))), None

        (state, acc), _ = jax.lax.scan(body, (state, 0.0), (keys, actions))
        return state, acc

    def pregen_step_env(keys, actions, state):
        def body(carry, inputs):
            state, acc = carry
            step_keys, act = inputs
            obs, state, reward, term, _ = vstep_env(step_keys, state, act, params)
            return (state, acc + consume((obs, reward, term))), None

        (state, acc), _ = jax.lax.scan(body, (state, 0.0), (keys, actions))
        return state, acc

    def pregen_reset(keys):
        def body(acc, step_keys):
            return acc + consume(vreset_env(step_keys, params)), None

        acc, _ = jax.lax.scan(body, 0.0, keys)
        return acc

    def loop_rng_only(loop_key):
        def body(carry, _):
            loop_key, acc = carry
            loop_key, key_act, key_env = jax.random.split(loop_key, 3)
            act = random_actions(env, params, key_act, (batch,))
            env_keys = jax.random.split(key_env, batch)
            return (loop_key, acc + consume((act, env_keys))), None

        (_, acc), _ = jax.lax.scan(body, (loop_key, 0.0), None, length=steps)
        return acc

    variants = [
        Variant(f"{tag} env.step", loop_step, (k_loop, state0), n),
        Variant(f"{tag} env.step pregen", pregen_step, (keys, actions, state0), n),
        Variant(
            f"{tag} env.step cheap-rng",
            lambda k, a, s: pregen_step(k, a, s, cheap_keys),
            (keys, actions, state0),
            n,
        ),
        Variant(f"{tag} step_env", pregen_step_env, (keys, actions, state0), n),
        Variant(f"{tag} reset_env", pregen_reset, (keys,), n),
        Variant(f"{tag} loop rng", loop_rng_only, (k_loop,), n),
    ]
    vector = getattr(getattr(package, "envs", None), "vector", None)
    if vector is None:
        try:
            vector = importlib.import_module(f"{package.__name__}.envs.vector")
        except ImportError:
            vector = None
    if vector is not None:
        for ratio in (16,):
            bstep = vector.make_batched_step(env, batch, reset_ratio=ratio)

            def batched(keys, actions, state, bstep=bstep):
                def body(carry, inputs):
                    state, acc = carry
                    step_keys, act = inputs
                    obs, state, reward, term, trunc, _ = bstep(step_keys, state, act, params)
                    return (state, acc + consume((obs, reward, term | trunc))), None

                (state, acc), _ = jax.lax.scan(body, (state, 0.0), (keys, actions))
                return state, acc

            variants.append(
                Variant(f"{tag} batched k=B/{ratio}", batched, (keys, actions, state0), n)
            )
    return variants


def floor_variants(short: str, batch: int, steps: int, key: jax.Array) -> list[Variant]:
    """Bare vmapped RK4 of the env's model: scanned and fully unrolled substeps."""
    model, substeps = FLOOR_MODELS[short]
    if model == "fhn":
        field, dt, args = fhn.vector_field, fhn.DT, (fhn.FitzHughNagumoParams(), 0.5)
        y0 = fhn.FitzHughNagumoState(
            v=-1.2 + 0.05 * jax.random.normal(key, (batch,)), w=jnp.full((batch,), -0.6)
        )
    else:
        field, dt, args = ap.vector_field, ap.DT, (ap.AlievPanfilovParams(), 0.1)
        y0 = ap.AlievPanfilovState(
            u=jax.random.uniform(key, (batch,), minval=0.3, maxval=0.9),
            v=jnp.full((batch,), 1.0),
        )
    zero = jnp.zeros((), jnp.float32)

    def make(unroll: int | bool):
        def one_env_step(y):
            def sub(y, _):
                return rk4_step(field, zero, y, dt, args), None

            return jax.lax.scan(sub, y, None, length=substeps, unroll=unroll)[0]

        vmapped = jax.vmap(one_env_step)

        def run(y):
            def body(y, _):
                return vmapped(y), None

            y, _ = jax.lax.scan(body, y, None, length=steps)
            return consume(y)

        return run

    n = steps * batch
    return [
        Variant(f"floor {short} scan", make(1), (y0,), n),
        Variant(f"floor {short} unrolled", make(True), (y0,), n),
    ]


# ----------------------------------------------------------------- HLO census

CENSUS = {
    "while": r"\bwhile\(",
    "fusion": r"\bfusion\(",
    "gather": r"\bgather\(",
    "scatter": r"\bscatter\(",
    "dyn-update-slice": r"\bdynamic-update-slice\(",
    "dyn-slice": r"\bdynamic-slice\(",
    "sort": r"\bsort\(",
    "f64": r"\bf64\[",
    "custom-call": r"\bcustom-call\(",
    "rng": r"\brng",
}


def census(variant: Variant, out_dir: Path | None) -> str:
    text = variant.compiled.as_text()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9]+", "_", variant.name).strip("_")
        (out_dir / f"{safe}.hlo.txt").write_text(text)
    counts = {name: len(re.findall(pattern, text)) for name, pattern in CENSUS.items()}
    cost = variant.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = (cost or {}).get("flops", float("nan")) / variant.steps
    return " ".join(f"{k}={v}" for k, v in counts.items()) + f" flops/step={flops:.0f}"


# ----------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5, help="rounds; best round kept")
    parser.add_argument("--baseline", default=None, help="git revision to A/B against")
    parser.add_argument("--hlo", type=Path, default=None, help="dump optimised HLO here")
    parser.add_argument("--only", default=None, help="regex: keep variants whose name matches")
    args = parser.parse_args(argv)

    print(
        f"jax {jax.__version__}, {jax.devices()[0].device_kind}, batch {args.batch}, "
        f"{args.steps} steps per call, best of {args.repeats} rounds"
    )
    packages = [("new", cardiosim_jax)]
    if args.baseline:
        packages.insert(0, (f"old@{args.baseline}", load_baseline(args.baseline)))

    key = jax.random.PRNGKey(0)
    for short in args.envs:
        variants: list[Variant] = []
        for tag, package in packages:
            variants += env_variants(tag, package, ENVS[short], args.batch, args.steps, key)
        variants += floor_variants(short, args.batch, args.steps, key)
        if args.only:
            variants = [v for v in variants if re.search(args.only, v.name)]
        for variant in variants:
            variant.run()  # warm-up
        for _ in range(args.repeats):
            for variant in variants:
                variant.run()
        floors = [v for v in variants if v.name.startswith("floor")]
        floor = max((v.steps_per_s for v in floors), default=float("nan"))
        print(
            f"\n== {short} ({ENVS[short]}): reference {REFERENCE_STEPS_PER_S[short]:,.0f} "
            f"steps/s, floor {floor / 1e6:.2f} M steps/s"
        )
        print(f"{'variant':34s} {'M steps/s':>10s} {'ns/step':>8s} {'x ref':>8s} {'/floor':>7s}")
        for v in variants:
            sps = v.steps_per_s
            print(
                f"{v.name:34s} {sps / 1e6:10.2f} {1e9 / sps:8.1f} "
                f"{sps / REFERENCE_STEPS_PER_S[short]:8.0f} {sps / floor:7.2f}"
            )
        if args.hlo is not None or args.only:
            print("HLO census (per compiled variant):")
            for v in variants:
                print(f"  {v.name:32s} {census(v, args.hlo)}")


if __name__ == "__main__":
    main()
