"""rl_lab's stages against faithful baselines, side by side, in one command.

    python experiments/benchmarks/run.py [--reps 5] [--quick] [--stages collect,memory,eval,train,e2e]

Every comparison runs in this one process (end to end and memory: in subprocesses started from
it) and alternates the contenders (A, B, A, B, ...), so that a noisy neighbour hurts both alike.
Each row reports the median, the min-max range and the ratio of the medians. The baselines are
not taken from rl_lab: the blog's collection loop and network come from ``seed_script.py`` (the
end-to-end baseline, so both use one definition), the rest is written here. Writes ``results/results.json``
and ``results/results.md`` atomically and prints the same markdown table. See README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import io
import json
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from seed_script import initial_population, neural_network_model, play, train_model  # the baselines, written once
from torch import nn

from rl_lab.app import setup_job
from rl_lab.collect import collect
from rl_lab.config import Config, EnvConfig, TrainerConfig
from rl_lab.envs import make_vec_env
from rl_lab.evaluate import evaluate
from rl_lab.policy import MLPPolicy, act_fn
from rl_lab.train import fit, split
from rl_lab.utils import atomic_write

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = HERE / "results"
ENV_ID = "CartPole-v1"
EPISODES = 10_000
MAX_STEPS = 500
MIN_SCORE = 50.0
HIDDEN = [128, 256, 512, 256, 128]
RAW_ENV_STEPS = 400_000  # raw stepping: a little more than the env steps rl_lab's collector computes
DEFAULT_NUM_ENVS, DEFAULT_PRECISION = EnvConfig().num_envs, EnvConfig().precision
# (num_envs, precision) of the collection runs: rl_lab's default first (it carries the targets), then extras:
# float64 (bit for bit gymnasium's arithmetic), and fewer / more sub-envs.
COLLECT_SETUPS = (
    (DEFAULT_NUM_ENVS, DEFAULT_PRECISION),
    (DEFAULT_NUM_ENVS, "float64"),
    (1000, DEFAULT_PRECISION),
    (10_000, DEFAULT_PRECISION),
)

Row = dict[str, Any]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stats(values: list[float]) -> dict[str, Any]:
    v = [float(x) for x in values]
    return {"median": float(np.median(v)), "min": min(v), "max": max(v), "values": v}


def alternate(contenders: list[tuple[str, Callable[[int], dict[str, Any]]]], reps: int) -> dict[str, list[dict]]:
    """Run ``fn(rep)`` of every contender in turn, ``reps`` times (A, B, A, B, ...). Each returns a dict."""
    out: dict[str, list[dict]] = {name: [] for name, _ in contenders}
    for rep in range(reps):
        for name, fn in contenders:
            gc.collect()
            out[name].append(fn(rep))
    return out


def fmt_seconds(s: dict[str, Any]) -> str:
    return f"{_num(s['median'])} s ({_num(s['min'])}–{_num(s['max'])})"


def fmt_rate(s: dict[str, Any], unit: str = "steps/s") -> str:
    return f"{_si(s['median'])} {unit} ({_si(s['min'])}–{_si(s['max'])})"


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def _si(x: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def row(stage: str, rl: str, base: str, ratio: float | None, ratio_text: str, target: str, met: bool | None) -> Row:
    return {
        "stage": stage,
        "rl_lab": rl,
        "baseline": base,
        "ratio": ratio,
        "ratio_text": ratio_text,
        "target": target,
        "met": met,
    }


def speedup_row(stage: str, rl_t: dict[str, Any], base_t: dict[str, Any], target: float | None) -> Row:
    """A time comparison: the ratio of the medians (baseline / rl_lab), and the best-of ratio (min / min).

    ``met`` needs both to reach the target: on a shared machine a burst of load in some repetitions can
    inflate the ratio of the medians, and the fastest repetition of each contender is the least disturbed.
    """
    ratio = base_t["median"] / rl_t["median"]
    best = base_t["min"] / rl_t["min"]
    return row(
        stage,
        fmt_seconds(rl_t),
        fmt_seconds(base_t),
        ratio,
        f"{ratio:.1f}x faster (best-of {best:.1f}x)",
        "—" if target is None else f">= {target:g}x",
        None if target is None else (ratio >= target and best >= target),
    ) | {"ratio_best": best}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = dirty = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        # Only what is measured counts (this folder is untracked while it is being written).
        measured = ["rl_lab", "configs", "pyproject.toml"]
        cmd = ["git", "status", "--porcelain", "--", *measured]
        status = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        dirty = bool(status.stdout.strip())
    except OSError:
        pass
    digest = hashlib.sha256()
    for f in sorted((REPO / "rl_lab").glob("*.py")):
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,  # uncommitted changes in rl_lab/, configs/ or pyproject.toml
        "rl_lab_sources_sha256": digest.hexdigest(),  # the rl_lab/*.py that were measured
    }


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def torch_probe(calls: int = 500) -> dict[str, float]:
    """Milliseconds per batch-1 argmax forward of the recipe MLP at 1 thread and at all cores' threads.

    A contention gauge: on a quiet machine the two are close; when other processes keep the cores
    busy, every multi-threaded op waits for a descheduled OpenMP worker and the second figure blows up.
    """
    threads = torch.get_num_threads()
    model = MLPPolicy(4, 2, HIDDEN, "relu", 0.2).eval()
    x = torch.zeros(1, 4)
    out: dict[str, float] = {}
    try:
        for th in dict.fromkeys((1, os.cpu_count() or 1)):
            torch.set_num_threads(th)
            with torch.no_grad():
                for _ in range(50):
                    model(x)
                t0 = time.perf_counter()
                for _ in range(calls):
                    model(x).argmax(1)
                out[f"ms_per_forward_{th}_threads"] = (time.perf_counter() - t0) / calls * 1e3
    finally:
        torch.set_num_threads(threads)
    return out


def gemm_peak(n: int = 512, calls: int = 30) -> float:
    """This machine's fp32 GEMM rate in GFLOP/s at the current torch threads: the best of ``calls`` n x n matmuls."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(5):
        torch.mm(a, b)
    best = math.inf
    for _ in range(calls):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def mlp_forward_flops(sizes: list[int]) -> int:
    """Multiply-adds x 2 of one sample through Linear layers of the given widths (activations and biases ignored)."""
    return sum(2 * a * b for a, b in zip(sizes, sizes[1:], strict=False))


def peak_row(stage: str, flops: float, rl_t: dict[str, Any], peak: float) -> Row:
    """rl_lab's arithmetic rate against the machine's own limit (GEMM peak at the same threads)."""
    rate = flops / rl_t["median"] / 1e9
    best = flops / rl_t["min"] / 1e9
    return row(
        stage,
        f"{rate:.1f} GFLOP/s ({flops / 1e9:.1f} GFLOP in {rl_t['median']:.3g} s)",
        f"GEMM peak {peak:.1f} GFLOP/s",
        rate / peak,
        f"{rate / peak:.0%} of peak (best-of {best / peak:.0%})",
        "—",
        None,
    ) | {"ratio_best": best / peak}


# --------------------------------------------------------------------------------------------------
# 1. collection
# --------------------------------------------------------------------------------------------------


def seed_loop_collect(seed: int, episodes: int = EPISODES) -> tuple[np.ndarray, np.ndarray, int]:
    """The blog's loop, ``seed_script.initial_population``: one ``gym.make`` env, ``random.randrange``
    actions, a list append per step, every step recorded, ``env.reset()`` per game, games scoring
    >= 50 kept with one-hot targets. Its three summary prints go nowhere. Returns ``(X, y, steps)``.
    """
    random.seed(seed)
    env = gym.make(ENV_ID)
    with contextlib.redirect_stdout(io.StringIO()):
        x, y, steps = initial_population(env, seed, games=episodes)
    env.close()
    return x, y, steps


def rl_lab_collect(
    seed: int, num_envs: int, precision: str = DEFAULT_PRECISION, episodes: int = EPISODES
) -> dict[str, Any]:
    t0 = time.perf_counter()
    venv = make_vec_env(ENV_ID, num_envs, MAX_STEPS, precision=precision)
    ds, st = collect(venv, np.random.default_rng(seed), episodes, max_steps=MAX_STEPS, seed=seed, min_score=MIN_SCORE)
    seconds = time.perf_counter() - t0
    venv.close()
    return {
        "seconds": seconds,
        "useful_steps": st.useful_steps,
        "env_steps": st.env_steps,
        "useful_steps_per_s": st.useful_steps / seconds,
        "samples": ds.samples,
        "kept_episodes": ds.kept_episodes,
    }


def raw_stepping(venv: Any, num_envs: int, seed: int, env_steps: int = RAW_ENV_STEPS) -> dict[str, Any]:
    """Step a vector env with precomputed random actions, recording nothing. Times reset + steps."""
    calls = max(1, env_steps // num_envs)
    actions = np.random.default_rng(seed).integers(0, 2, size=(calls, num_envs))
    t0 = time.perf_counter()
    venv.reset(seed=seed)
    for a in actions:
        venv.step(a)
    seconds = time.perf_counter() - t0
    venv.close()
    return {"seconds": seconds, "env_steps": calls * num_envs, "steps_per_s": calls * num_envs / seconds}


def gym_raw(seed: int, num_envs: int) -> dict[str, Any]:
    venv = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point")
    return raw_stepping(venv, num_envs, seed)


def fast_raw(seed: int, num_envs: int, precision: str = DEFAULT_PRECISION) -> dict[str, Any]:
    venv = make_vec_env(ENV_ID, num_envs, MAX_STEPS, precision=precision)
    assert type(venv).__name__ == "FastCartPoleVectorEnv", type(venv)
    return raw_stepping(venv, num_envs, seed)


def bench_collection(
    reps: int, setups: tuple[tuple[int, str], ...] = COLLECT_SETUPS
) -> tuple[list[Row], dict[str, Any]]:
    """The first (num_envs, precision) setup is rl_lab's default and carries the targets; the others are extras."""

    def seed_loop(rep: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        x, _, steps = seed_loop_collect(rep)
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "useful_steps": steps, "useful_steps_per_s": steps / seconds, "samples": len(x)}

    contenders: list[tuple[str, Callable[[int], dict[str, Any]]]] = [("seed_loop", seed_loop)]
    for n in dict.fromkeys(n for n, _ in setups):
        contenders.append((f"gym_raw_N{n}", lambda rep, n=n: gym_raw(rep, n)))
    for n, prec in setups:
        contenders += [
            (f"rl_lab_N{n}_{prec}", lambda rep, n=n, prec=prec: rl_lab_collect(rep, n, prec)),
            (f"fast_raw_N{n}_{prec}", lambda rep, n=n, prec=prec: fast_raw(rep, n, prec)),
        ]
    log("collection: warm-up (one untimed call each, seed loop on 1,000 games)")
    seed_loop_collect(12345, episodes=1000)
    for _name, fn in contenders[1:]:
        fn(12345)
    log(f"collection: {reps} reps x {len(contenders)} contenders, alternating")
    runs = alternate(contenders, reps)

    base_t = stats([r["seconds"] for r in runs["seed_loop"]])
    base_sps = stats([r["useful_steps_per_s"] for r in runs["seed_loop"]])
    rows: list[Row] = []
    for i, (n, prec) in enumerate(setups):
        what = f"N={n}, {prec}" + (" (rl_lab's default)" if i == 0 else " (extra)")
        rl = runs[f"rl_lab_N{n}_{prec}"]
        rl_t = stats([r["seconds"] for r in rl])
        rl_sps = stats([r["useful_steps_per_s"] for r in rl])
        raw_sps = stats([r["steps_per_s"] for r in runs[f"gym_raw_N{n}"]])
        fast_sps = stats([r["steps_per_s"] for r in runs[f"fast_raw_N{n}_{prec}"]])
        util = rl_sps["median"] / raw_sps["median"]
        util_best = rl_sps["max"] / raw_sps["max"]
        rows.append(
            speedup_row(
                f"collect 10k random episodes, {what} vs seed loop (time)", rl_t, base_t, 100 if i == 0 else None
            )
        )
        rows.append(
            row(
                f"collect, {what}: rl_lab useful steps/s vs gym CartPoleVectorEnv raw steps/s",
                fmt_rate(rl_sps),
                fmt_rate(raw_sps),
                util,
                f"{util:.2f} of raw (best-of {util_best:.2f})",
                ">= 0.6" if i == 0 else "—",
                (util >= 0.6 and util_best >= 0.6) if i == 0 else None,
            )
            | {"ratio_best": util_best}
        )
        fast_ratio = fast_sps["median"] / raw_sps["median"]
        rows.append(
            row(
                f"raw stepping, N={n} (extra): rl_lab FastCartPoleVectorEnv ({prec}) vs gym CartPoleVectorEnv",
                fmt_rate(fast_sps),
                fmt_rate(raw_sps),
                fast_ratio,
                f"{fast_ratio:.2f}x",
                "—",
                None,
            )
        )
    rows.insert(
        0,
        row(
            "collect: seed loop throughput (for reference)",
            "—",
            fmt_rate(base_sps),
            None,
            "—",
            "—",
            None,
        ),
    )
    summary = {name: {k: stats([r[k] for r in rs]) for k in rs[0]} for name, rs in runs.items()}
    return rows, {"reps": reps, "runs": runs, "summary": summary}


# --------------------------------------------------------------------------------------------------
# 2. collection memory
# --------------------------------------------------------------------------------------------------


def bench_memory(episodes: int = 1_000_000) -> tuple[list[Row], dict[str, Any]]:
    log(f"memory: {episodes:,} random episodes in a child process")
    child = [
        sys.executable,
        str(HERE / "memory_child.py"),
        "--episodes",
        str(episodes),
        "--num-envs",
        str(DEFAULT_NUM_ENVS),
    ]
    # Started through a shell that forks it (rather than exec'ing it): Linux carries the high-water RSS of
    # the process that exec's into a new program over into ru_maxrss, and a child spawned straight from this
    # (300+ MB) process would report this process's peak, not its own. A small sh in between resets it.
    cmd = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *child]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_seconds"] = wall
    peak, base = res["peak_rss_mb"], res["rss_after_imports_mb"]
    rows = [
        row(
            f"collection memory: {episodes:,} episodes, >= 50 filter (peak RSS; baseline = RSS after imports)",
            f"{peak:.0f} MB (VmHWM {res['vm_hwm_mb']:.0f} MB; {res['samples']:,} samples kept, {res['seconds']:.1f} s)",
            f"{base:.0f} MB",
            peak - base,
            f"+{peak - base:.0f} MB over imports",
            "<= 600 MB",
            peak <= 600,
        )
    ]
    return rows, res


# --------------------------------------------------------------------------------------------------
# 3. evaluation
# --------------------------------------------------------------------------------------------------


def pd_actions(obs: np.ndarray) -> np.ndarray:
    """The PD controller ``a = int(theta + 0.5 * theta_dot > 0)``, batched."""
    return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)


def one_env_eval(policy: nn.Module, episodes: int, seed: int) -> dict[str, Any]:
    """``seed_script.play``: one ``gym.make`` env, one forward per step on a batch of 1 (no_grad, eval mode, argmax)."""
    t0 = time.perf_counter()
    env = gym.make(ENV_ID)
    with contextlib.redirect_stdout(io.StringIO()):
        res = play(env, policy, games=episodes, seed=seed)
    env.close()
    return {"seconds": time.perf_counter() - t0, **res}


def batched_eval(policy: MLPPolicy, episodes: int, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    rep = evaluate(act_fn(policy), ENV_ID, episodes, n_actions=2, num_envs=100, max_steps=None, seed=seed)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "steps": int(rep.lengths.sum()),
        "score_mean": float(rep.scores.mean()),
        "score_min": float(rep.scores.min()),
    }


def surviving_policy(seed: int, eval_seed: int, episodes: int, max_epochs: int = 10) -> tuple[MLPPolicy, dict]:
    """The recipe's MLP, trained by rl_lab.train.fit to imitate the PD controller until it scores 500 everywhere.

    Data: rl_lab's collector with a PD behaviour that takes a random action 20% of the time
    (so the data also covers recoveries), labelled with the PD controller's action.
    """
    rng = np.random.default_rng(seed)

    def noisy_pd(obs: np.ndarray) -> np.ndarray:
        a = pd_actions(obs)
        flip = rng.random(a.shape[0]) < 0.2
        return np.where(flip, rng.integers(0, 2, a.shape[0]), a)

    venv = make_vec_env(ENV_ID, 100, MAX_STEPS)
    ds, _ = collect(venv, noisy_pd, 100, max_steps=MAX_STEPS, seed=seed, min_score=0)
    venv.close()
    labels = pd_actions(ds.obs)
    torch.manual_seed(seed)
    policy = MLPPolicy(4, 2, HIDDEN, "relu", 0.2)
    info: dict[str, Any] = {"samples": ds.samples, "epochs": 0}
    first = 3  # it usually balances after 3 epochs: check from there on, one epoch at a time
    for epoch in range(first - 1, max_epochs):
        cfg = TrainerConfig(epochs=first if epoch == first - 1 else 1, batch_size=512, lr=3e-3, progress=False)
        res = fit(policy, ds.obs, labels, cfg, seed=seed + epoch)
        info.update(epochs=epoch + 1, val_accuracy=res.final["val/accuracy"])
        b = batched_eval(policy, episodes, eval_seed)
        if b["score_min"] < 500:
            continue
        o = one_env_eval(policy, episodes, eval_seed)
        info.update(batched_min=b["score_min"], one_env_min=o["score_min"])
        if o["score_min"] >= 500:
            return policy, info
    raise RuntimeError(f"the PD-imitating MLP did not reach 500 on all {episodes} episodes: {info}")


def bench_evaluation(reps: int, episodes: int = 100, seed: int = 7) -> tuple[list[Row], dict[str, Any]]:
    log("evaluation: training the recipe MLP to imitate a PD controller (untimed)")
    policy, info = surviving_policy(seed=0, eval_seed=seed, episodes=episodes)
    msg = (
        f"evaluation: policy verified: 500 on all {episodes} episodes, batched (min {info['batched_min']:g}) and "
        f"one-env (min {info['one_env_min']:g}), after {info['epochs']} epoch(s) on {info['samples']:,} PD samples"
    )
    log(msg)
    print(msg, flush=True)
    log(f"evaluation: {reps} reps x 2 contenders, alternating")
    runs = alternate(
        [
            ("rl_lab_batched", lambda rep: batched_eval(policy, episodes, seed)),
            ("one_env_loop", lambda rep: one_env_eval(policy, episodes, seed)),
        ],
        reps,
    )
    for name, rs in runs.items():
        if min(r["score_min"] for r in rs) < 500:
            raise RuntimeError(f"{name}: an episode ended before 500 steps during timing: {rs}")
    rl_t = stats([r["seconds"] for r in runs["rl_lab_batched"]])
    base_t = stats([r["seconds"] for r in runs["one_env_loop"]])
    rows = [
        speedup_row(
            f"evaluate {episodes} episodes x 500 steps, recipe MLP: batched (100 envs) vs one env, batch-1 forward",
            rl_t,
            base_t,
            20,
        )
    ]
    steps = runs["rl_lab_batched"][0]["steps"]
    flops = steps * mlp_forward_flops([4, *HIDDEN, 2])
    peak = gemm_peak()
    rows.append(peak_row("evaluate: rl_lab's forward passes vs this machine's fp32 GEMM peak", flops, rl_t, peak))
    return rows, {"reps": reps, "policy": info, "runs": runs, "verification": msg, "gemm_peak_gflops": peak}


# --------------------------------------------------------------------------------------------------
# 4. training
# --------------------------------------------------------------------------------------------------


def recipe_dataset(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    venv = make_vec_env(ENV_ID, DEFAULT_NUM_ENVS, MAX_STEPS)
    ds, _ = collect(venv, np.random.default_rng(seed), EPISODES, max_steps=MAX_STEPS, seed=seed, min_score=MIN_SCORE)
    venv.close()
    return ds.obs, ds.actions


def plain_mlp(seed: int) -> nn.Module:
    """The recipe's MLP as the seed script builds it, with rl_lab's initial weights for ``seed`` (same init per rep)."""
    torch.manual_seed(seed)
    init = MLPPolicy(4, 2, HIDDEN, "relu", 0.2).state_dict()
    model = neural_network_model(input_size=4)
    model.load_state_dict({k.removeprefix("net."): v for k, v in init.items()})
    return model


def plain_train(
    obs: np.ndarray, actions: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, seed: int, epochs: int = 5
) -> dict[str, Any]:
    """``seed_script.train_model``: DataLoader(TensorDataset), Adam, CrossEntropyLoss, per-epoch validation.

    The model is the recipe's MLP written the plain way, ``nn.Sequential`` of ``nn.Linear``, ``nn.ReLU``
    and ``nn.Dropout(0.2)``, starting from the same initial weights as rl_lab's for this seed.
    """
    model = plain_mlp(seed)
    t0 = time.perf_counter()
    _, figures = train_model(
        obs[train_idx], actions[train_idx], model, epochs, validation=(obs[val_idx], actions[val_idx]), verbose=False
    )
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "val_accuracy": figures["val_accuracy"], "train_loss": figures["train_loss"]}


def rl_lab_train(obs: np.ndarray, actions: np.ndarray, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = MLPPolicy(4, 2, HIDDEN, "relu", 0.2)
    t0 = time.perf_counter()
    res = fit(model, obs, actions, TrainerConfig(progress=False), seed=seed)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "val_accuracy": res.final["val/accuracy"], "train_loss": res.final["train/loss"]}


def bench_training(reps: int) -> tuple[list[Row], dict[str, Any]]:
    obs, actions = recipe_dataset(0)
    n = len(actions)
    cfg = TrainerConfig(progress=False)
    threads = torch.get_num_threads()
    log(f"training: {n:,} samples (recipe dataset, seed 0), torch threads {threads}; {reps} reps x 2, alternating")

    def plain(rep: int) -> dict[str, Any]:
        train_idx, val_idx = split(n, cfg.val_fraction, rep)  # the same split fit() draws for this seed
        return plain_train(obs, actions, train_idx, val_idx, rep, cfg.epochs)

    runs = alternate([("rl_lab_fit", lambda rep: rl_lab_train(obs, actions, rep)), ("plain_loop", plain)], reps)
    rl_t = stats([r["seconds"] for r in runs["rl_lab_fit"]])
    base_t = stats([r["seconds"] for r in runs["plain_loop"]])
    rl_acc = stats([r["val_accuracy"] for r in runs["rl_lab_fit"]])
    base_acc = stats([r["val_accuracy"] for r in runs["plain_loop"]])
    diff = rl_acc["median"] - base_acc["median"]
    # "within noise": the difference of the medians is no larger than the wider of the two seed-to-seed ranges
    # (and 0.02 at least, since a handful of seeds on ~2.3k validation samples cannot resolve less).
    noise = max(rl_acc["max"] - rl_acc["min"], base_acc["max"] - base_acc["min"], 0.02)
    rows = [
        speedup_row(
            f"train recipe MLP, 5 epochs, batch 64, {n:,} samples ({threads} torch threads): fit() vs plain DataLoader",
            rl_t,
            base_t,
            2,
        ),
        row(
            "train: final validation accuracy (same split, same init per rep)",
            f"{rl_acc['median']:.3f} ({rl_acc['min']:.3f}–{rl_acc['max']:.3f})",
            f"{base_acc['median']:.3f} ({base_acc['min']:.3f}–{base_acc['max']:.3f})",
            diff,
            f"Δ {diff:+.3f}",
            f"|Δ| <= noise ({noise:.3f})",
            abs(diff) <= noise,
        ),
    ]
    # Forward and backward cost about 3 forwards (the backward computes two products per Linear).
    trained = len(split(n, cfg.val_fraction, 0)[0])
    flops = 3 * cfg.epochs * trained * mlp_forward_flops([4, *HIDDEN, 2])
    peak = gemm_peak()
    rows.append(peak_row("train: fit()'s arithmetic vs this machine's fp32 GEMM peak", flops, rl_t, peak))
    return rows, {
        "reps": reps,
        "samples": n,
        "torch_threads": threads,
        "runs": runs,
        "noise": noise,
        "gemm_peak_gflops": peak,
    }


# --------------------------------------------------------------------------------------------------
# 5. end to end
# --------------------------------------------------------------------------------------------------


def run_rl_lab_cli(rep: int) -> dict[str, Any]:
    exe = shutil.which("rl-lab", path=str(Path(sys.executable).parent)) or shutil.which("rl-lab")
    if exe is None:
        raise RuntimeError("the rl-lab console script is not installed (pip install -e .)")
    with tempfile.TemporaryDirectory(prefix="rl_lab_bench_") as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([exe, f"hydra.run.dir={tmp}"], capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"rl-lab failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        metrics = json.loads((Path(tmp) / "metrics.json").read_text())
    return {
        "seconds": wall,
        "score_mean": metrics["eval"]["score_mean"],
        "collect_s": metrics["collect"]["seconds"],
        "train_s": metrics["train"]["seconds"],
        "eval_s": metrics["eval"]["seconds"],
        "total_s_in_process": metrics["total_seconds"],
    }


def run_seed_script(rep: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE / "seed_script.py"), "--seed", "0"], capture_output=True, text=True, cwd=REPO
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"seed_script.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    m = re.search(r"Average Score:\s*([0-9.]+)", proc.stdout)
    bal = re.search(r"choice 0: .*", proc.stdout)
    threads = re.search(r"torch threads: (\d+)", proc.stdout)
    return {
        "seconds": wall,
        "torch_threads": int(threads.group(1)) if threads else None,  # torch's default: the script sets none
        "score_mean": float(m.group(1)) if m else float("nan"),
        "balance": bal.group(0) if bal else None,
    }


def bench_end_to_end(reps: int) -> tuple[list[Row], dict[str, Any]]:
    log(f"end to end: {reps} reps x 2 subprocesses (rl-lab, seed_script.py), alternating")
    runs = alternate([("rl_lab_cli", run_rl_lab_cli), ("seed_script", run_seed_script)], reps)
    rl_t = stats([r["seconds"] for r in runs["rl_lab_cli"]])
    base_t = stats([r["seconds"] for r in runs["seed_script"]])
    ratio = rl_t["median"] / base_t["median"]
    best = rl_t["min"] / base_t["min"]
    rows = [
        row(
            "end to end: `rl-lab` (default run) vs seed_script.py, wall incl. start-up",
            fmt_seconds(rl_t),
            fmt_seconds(base_t),
            ratio,
            f"{ratio:.2f}x the script's wall (best-of {best:.2f}x)",
            "<= 0.5x",
            ratio <= 0.5 and best <= 0.5,
        )
        | {"ratio_best": best}
    ]
    rl_scores = [r["score_mean"] for r in runs["rl_lab_cli"]]
    seed_scores = [r["score_mean"] for r in runs["seed_script"]]
    rows.append(
        row(
            "end to end: eval score (rl-lab: 100 episodes; script: 10 games; info)",
            f"{np.median(rl_scores):.1f} ({min(rl_scores):g}–{max(rl_scores):g})",
            f"{np.median(seed_scores):.1f} ({min(seed_scores):g}–{max(seed_scores):g})",
            None,
            "—",
            "—",
            None,
        )
    )
    return rows, {"reps": reps, "runs": runs}


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def markdown(rows: list[Row], info: dict[str, Any]) -> str:
    m = info["machine"]
    lines = [
        "# rl_lab benchmarks",
        "",
        f"Run {info['started']} → {info['finished']} ({info['wall_seconds']:.0f} s), command: `{info['command']}`.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {m['torch']} "
        f"({m['torch_threads']} thread(s): {info['threads_source']}), gymnasium {m['gymnasium']}, numpy {m['numpy']}. "
        f"Load average (1/5/15 min) at start {info['loadavg_start']}, at end {info['loadavg_end']}. "
        f"Git {str(m['git_commit'])[:12]}{' with uncommitted changes in rl_lab/configs' if m['git_dirty'] else ''} "
        f"(rl_lab/*.py sha256 {m['rl_lab_sources_sha256'][:12]}).",
        "",
        "Medians with (min–max) over the repetitions; contenders alternated in one process; "
        "ratio = ratio of the medians, and in brackets the best-of ratio (fastest repetition of each). "
        "A target counts as met only when both ratios meet it.",
        "",
        "| stage | rl_lab | baseline | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "—" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['stage']} | {r['rl_lab']} | {r['baseline']} | {r['ratio_text']} | {r['target']} | {met} |")
    probes = [
        f"{when}: " + ", ".join(f"{v:.2f} ms at {k.split('_')[3]} thread(s)" for k, v in info[f"probe_{when}"].items())
        for when in ("start", "end")
        if f"probe_{when}" in info
    ]
    lines += ["", "Contention probe, batch-1 forward of the recipe MLP: " + "; ".join(probes) + "."]
    notes = info.get("notes") or []
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


STAGES = ("collect", "memory", "eval", "train", "e2e")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions of collect/eval/train (default 5)")
    parser.add_argument("--e2e-reps", type=int, default=3, help="repetitions of the end-to-end runs (default 3)")
    parser.add_argument("--quick", action="store_true", help="2 reps (1 end to end): a smoke run, not a claim")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default results/)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: what rl_lab.app.setup_job sets)"
    )
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s) {sorted(unknown)}; choose from {STAGES}")
    reps = 2 if args.quick else args.reps
    e2e_reps = 1 if args.quick else args.e2e_reps
    if reps < 1 or e2e_reps < 1:
        parser.error("--reps and --e2e-reps must be >= 1")

    # Torch threads exactly as the app sets them: its own setup_job on the default config.
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        setup_job(Config())
    started = datetime.now(UTC)
    t_start = time.perf_counter()
    info: dict[str, Any] = {
        "command": " ".join(["python experiments/benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": machine(),
        "loadavg_start": loadavg(),
        "reps": reps,
        "e2e_reps": e2e_reps,
        "quick": args.quick,
        "stages": stages,
        "threads_source": "--threads" if args.threads else "set by rl_lab.app.setup_job(Config()), as rl-lab does",
        "probe_start": torch_probe(),
    }
    log(f"machine: {info['machine']['cpu']}, {info['machine']['cores']} cores, load {info['loadavg_start']}")
    rows: list[Row] = []
    details: dict[str, Any] = {}
    benches = {
        "collect": lambda: bench_collection(reps),
        "memory": bench_memory,
        "eval": lambda: bench_evaluation(reps),
        "train": lambda: bench_training(reps),
        "e2e": lambda: bench_end_to_end(e2e_reps),
    }
    for name in STAGES:
        if name not in stages:
            continue
        t0 = time.perf_counter()
        stage_rows, detail = benches[name]()
        detail["stage_seconds"] = time.perf_counter() - t0
        log(f"{name}: done in {detail['stage_seconds']:.0f} s")
        rows += stage_rows
        details[name] = detail

    info.update(
        finished=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        wall_seconds=time.perf_counter() - t_start,
        loadavg_end=loadavg(),
        probe_end=torch_probe(),
    )
    notes = []
    one_minute = [la[0] for la in (info["loadavg_start"], info["loadavg_end"]) if la]
    if max(one_minute, default=0) > (os.cpu_count() or 1):
        notes.append(
            f"The 1-minute load average exceeded the {os.cpu_count()} cores (other jobs on the machine): "
            "absolute times are inflated; the alternation keeps the ratios fairer than the absolute figures."
        )
    cores = os.cpu_count() or 1
    for when in ("start", "end"):
        p = info[f"probe_{when}"]
        if cores > 1 and p[f"ms_per_forward_{cores}_threads"] > 2 * p["ms_per_forward_1_threads"]:
            notes.append(
                f"Contention probe ({when}): a batch-1 forward of the recipe MLP took "
                f"{p[f'ms_per_forward_{cores}_threads']:.2f} ms at {cores} torch threads vs "
                f"{p['ms_per_forward_1_threads']:.2f} ms at 1 thread: the cores were shared by other processes; "
                "multi-threaded torch work (the seed script's training and evaluation) ran slower than on a quiet "
                "machine."
            )
    info["notes"] = notes
    md = markdown(rows, info)
    full = set(stages) == set(STAGES)
    stem = "results" if full else "results_partial"
    write_text(args.out / f"{stem}.json", json.dumps(_jsonable({**info, "rows": rows, "details": details}), indent=2))
    write_text(args.out / f"{stem}.md", md)
    print(md)
    log(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
