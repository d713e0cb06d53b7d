"""Child process of the collection-memory benchmark (started by ``run.py``; prints one JSON line).

It imports exactly what a collection needs (``rl_lab.collect`` and ``rl_lab.envs``, which pull
in numpy, gymnasium and torch), reads its peak RSS right after the imports, collects random
CartPole-v1 episodes with rl_lab's collector and the ``>= min_score`` filter, and reads its peak
RSS again. Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux), reported in
MB (10^6 bytes).

Start it through a forking shell (``sh -c '"$@"; exit $?' sh python memory_child.py ...``), as
``run.py`` does: a process spawned straight from a big parent inherits the parent's high-water RSS
in ``ru_maxrss``.

Usage: ``python experiments/benchmarks/memory_child.py --episodes 1000000 --num-envs 2000 --seed 0``
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from rl_lab.collect import collect
from rl_lab.envs import make_vec_env


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def proc_status_mb(key: str) -> float:
    """A ``/proc/self/status`` figure (``VmRSS``: current RSS, ``VmHWM``: this program's peak RSS) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def main() -> None:
    after_imports = peak_rss_mb()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1_000_000)
    parser.add_argument("--num-envs", type=int, default=2000)  # rl_lab's default env.num_envs
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--min-score", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    venv = make_vec_env("CartPole-v1", args.num_envs, args.max_steps)
    t0 = time.perf_counter()
    ds, stats = collect(
        venv,
        np.random.default_rng(args.seed),
        args.episodes,
        max_steps=args.max_steps,
        seed=args.seed,
        min_score=args.min_score,
    )
    seconds = time.perf_counter() - t0
    venv.close()
    result = {
        "episodes": args.episodes,
        "num_envs": args.num_envs,
        "rss_after_imports_mb": after_imports,
        "peak_rss_mb": peak_rss_mb(),
        "vm_hwm_mb": proc_status_mb("VmHWM"),  # cross-check of the peak, from the kernel's per-mm counter
        "rss_at_end_mb": proc_status_mb("VmRSS"),
        "seconds": seconds,
        "kept_episodes": int(ds.kept.sum()),
        "samples": int(len(ds.actions)),
        "dataset_mb": (ds.obs.nbytes + ds.actions.nbytes + ds.episode_returns.nbytes + ds.episode_lengths.nbytes) / 1e6,
        "useful_steps": stats.useful_steps,
        "env_steps": stats.env_steps,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
