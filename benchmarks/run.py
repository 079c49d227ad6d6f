"""Run the benchmark suite; the same as ``cardiosim-jax bench`` (see docs/benchmarks.md).

python benchmarks/run.py [--quick] [--envs ID ...] [--batches 1,256,4096,65536,1048576]
                         [--no-ppo] [--max-step-seconds 5] [--out benchmarks/results/cpu.json]
"""

from __future__ import annotations

import sys

from cardiosim_jax.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
