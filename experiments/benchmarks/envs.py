"""Collection on the other discrete envs: rl_lab's default backend against raw EnvPool and gymnasium stepping.

    python experiments/benchmarks/envs.py [--reps 3] [--num-envs 256] [--envs Acrobot-v1,MountainCar-v0,LunarLander-v3]
        [--acrobot-before REV]

Per env, side by side in this one process, alternated (A, B, C, A, B, C, ...), at the same sub-env count:

- **rl_lab**: ``collect(make_vec_env(id, N, limit), default_rng(seed), episodes, top_fraction=0.1)`` with
  rl_lab's defaults (``env.backend=auto``, which picks EnvPool for these ids; EnvPool threads = the cores
  available, as ``rl-lab`` sets them). Useful steps/s = the steps of the counted episodes over the whole
  call, building and seeding the env included.
- **EnvPool raw**: ``envpool.make(id, env_type="gymnasium", num_envs=N, num_threads=cores)``, then only
  ``step`` with pre-drawn int64 random actions, nothing recorded: the machine's limit for this env.
- **gymnasium raw**: ``gymnasium.make_vec(id, N, vectorization_mode="sync")`` (``SyncVectorEnv``, what rl_lab
  used for these envs before), stepped the same way.

With ``--acrobot-before REV`` it also times ``rl-lab experiment=acrobot`` end to end (wall, start-up
included) at git revision REV (a temporary ``git worktree``) and at the working tree, alternated, each
with its final evaluation score. Writes ``results/envs.json`` and ``results/envs.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rl_lab.collect import collect
from rl_lab.envs import available_cores, make_vec_env, resolve_backend
from rl_lab.utils import write_json

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = HERE / "results"
EPISODES = {"Acrobot-v1": 2048, "MountainCar-v0": 4096, "LunarLander-v3": 4096}
RAW_STEPS = {"Acrobot-v1": 400_000, "MountainCar-v0": 800_000, "LunarLander-v3": 300_000}
SYNC_STEPS = 50_000


def rl_lab_collect(env_id: str, num_envs: int, threads: int, seed: int) -> dict[str, Any]:
    limit = gym.spec(env_id).max_episode_steps
    t0 = time.perf_counter()
    venv = make_vec_env(env_id, num_envs, limit, num_threads=threads)
    ds, stats = collect(
        venv, np.random.default_rng(seed), EPISODES[env_id], max_steps=limit, seed=seed, top_fraction=0.1
    )
    venv.close()
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "useful_steps": stats.useful_steps,
        "env_steps": stats.env_steps,
        "steps_per_s": stats.useful_steps / seconds,
        "score_mean": float(ds.episode_returns.mean()),
        "length_mean": float(ds.episode_lengths.mean()),
    }


def raw_stepping(venv: Any, steps: int, n_actions: int, seed: int, reset: Any) -> dict[str, Any]:
    calls = max(1, steps // venv.num_envs)
    actions = np.random.default_rng(seed).integers(0, n_actions, size=(calls, venv.num_envs), dtype=np.int64)
    reset()
    t0 = time.perf_counter()
    for a in actions:
        venv.step(a)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "env_steps": calls * venv.num_envs, "steps_per_s": calls * venv.num_envs / seconds}


def envpool_raw(env_id: str, num_envs: int, threads: int, seed: int) -> dict[str, Any]:
    import envpool

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pool = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, seed=seed, num_threads=threads)
        pool.reset()
    out = raw_stepping(pool, RAW_STEPS[env_id], int(pool.action_space.n), seed, lambda: None)
    pool.close()
    return out


def gym_raw(env_id: str, num_envs: int, seed: int) -> dict[str, Any]:
    venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
    out = raw_stepping(venv, SYNC_STEPS, int(venv.single_action_space.n), seed, lambda: venv.reset(seed=seed))
    venv.close()
    return out


def median(xs: list[float]) -> float:
    return float(np.median(xs))


def bench_env(env_id: str, num_envs: int, threads: int, reps: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"rl_lab": [], "envpool_raw": [], "gym_sync_raw": []}
    rl_lab_collect(env_id, num_envs, threads, 999)  # warm-up: imports, first pool
    for rep in range(reps):
        runs["rl_lab"].append(rl_lab_collect(env_id, num_envs, threads, rep))
        runs["envpool_raw"].append(envpool_raw(env_id, num_envs, threads, rep))
        runs["gym_sync_raw"].append(gym_raw(env_id, num_envs, rep))
    sps = {k: median([r["steps_per_s"] for r in v]) for k, v in runs.items()}
    return {
        "env_id": env_id,
        "backend": resolve_backend(env_id),
        "num_envs": num_envs,
        "threads": threads,
        "episodes": EPISODES[env_id],
        "runs": runs,
        "steps_per_s": sps,
        "vs_envpool_raw": sps["rl_lab"] / sps["envpool_raw"],
        "vs_gym_sync": sps["rl_lab"] / sps["gym_sync_raw"],
        "useful_fraction": median([r["useful_steps"] / r["env_steps"] for r in runs["rl_lab"]]),
    }


def acrobot_e2e(tree: Path, run_root: Path) -> dict[str, Any]:
    """``python -m rl_lab experiment=acrobot`` in ``tree``: wall time and the final evaluation score."""
    run_root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "rl_lab", "experiment=acrobot", "trainer.progress=false", f"hydra.run.dir={run_root}"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"experiment=acrobot failed in {tree}: {r.stderr[-2000:]}")
    metrics = json.loads((run_root / "metrics.json").read_text())
    return {"wall_s": wall, "final_score": metrics["eval"]["score_mean"], "rounds": len(metrics["rounds"])}


def bench_acrobot(before: str, reps: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="rl_lab_before_"))
    worktree = tmp / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(worktree), before], cwd=REPO, check=True, capture_output=True
    )
    try:
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "now": []}
        for rep in range(reps):
            runs["before"].append(acrobot_e2e(worktree, tmp / f"before_{rep}"))
            runs["now"].append(acrobot_e2e(REPO, tmp / f"now_{rep}"))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, capture_output=True)
    walls = {k: median([r["wall_s"] for r in v]) for k, v in runs.items()}
    return {"before_rev": before, "runs": runs, "wall_s": walls, "speedup": walls["before"] / walls["now"]}


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {available_cores()} cores available; Python {platform.python_version()}"


def markdown(res: dict[str, Any]) -> str:
    import envpool

    lines = [
        "# Collection on other discrete envs (experiments/benchmarks/envs.py)",
        "",
        f"Machine: {res['machine']}; gymnasium {gym.__version__}, envpool {envpool.__version__}, "
        f"numpy {np.__version__}. {res['reps']} reps alternated, medians. "
        f"Load average at start {res['load_start']}, at end {res['load_end']}. "
        f"Git {res['git']}. {res['date']}.",
        "",
        "| env | sub-envs, EnvPool threads | rl_lab collect (default backend), useful steps/s | EnvPool raw step, "
        "steps/s (the limit) | gymnasium SyncVectorEnv raw, steps/s | rl_lab / EnvPool raw | rl_lab / Sync |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in res["envs"]:
        s = e["steps_per_s"]
        lines.append(
            f"| {e['env_id']} | {e['num_envs']}, {e['threads']} | {s['rl_lab'] / 1e6:.3f}M ({e['backend']}) | "
            f"{s['envpool_raw'] / 1e6:.3f}M | {s['gym_sync_raw'] / 1e6:.3f}M | {e['vs_envpool_raw']:.2f} | "
            f"{e['vs_gym_sync']:.1f}x |"
        )
    lines.append("")
    lines.append(
        "rl_lab's figure counts only the steps of the counted episodes (the idle tail and NEXT_STEP reset steps are "
        "not useful steps) over the whole call, env construction included; the raw figures count every step."
    )
    if "acrobot" in res:
        a = res["acrobot"]

        def row(name: str, key: str) -> str:
            rs = a["runs"][key]
            walls = ", ".join(f"{r['wall_s']:.1f}" for r in rs)
            scores = ", ".join(f"{r['final_score']:.1f}" for r in rs)
            rounds = ", ".join(str(r["rounds"]) for r in rs)
            return f"| {name} | {a['wall_s'][key]:.1f} s | {walls} | {scores} | {rounds} |"

        lines += [
            "",
            f"`rl-lab experiment=acrobot`, wall time with start-up, {len(a['runs']['now'])} alternated runs:",
            "",
            "| version | wall (median) | runs | final greedy 100-episode mean | rounds |",
            "|---|---|---|---|---|",
            row(f"before ({a['before_rev']})", "before"),
            row("now", "now"),
            "",
            f"Speed-up: {a['speedup']:.1f}x.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--envs", default=",".join(EPISODES))
    p.add_argument("--acrobot-before", default=None, help="git revision to time experiment=acrobot against")
    p.add_argument("--acrobot-reps", type=int, default=3)
    args = p.parse_args()
    threads = available_cores()
    git = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "rl_lab"], cwd=REPO, capture_output=True, text=True)
    res: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": git.stdout.strip() + (" (rl_lab/ modified)" if dirty.stdout.strip() else ""),
        "reps": args.reps,
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "envs": [],
    }
    for env_id in args.envs.split(","):
        res["envs"].append(bench_env(env_id, args.num_envs, threads, args.reps))
        print(json.dumps({k: v for k, v in res["envs"][-1].items() if k != "runs"}), flush=True)
    if args.acrobot_before:
        res["acrobot"] = bench_acrobot(args.acrobot_before, args.acrobot_reps)
    res["load_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "envs.json", res)
    md = markdown(res)
    (RESULTS / "envs.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
