"""Baseline ladder, per env: random -> one-shot recipe -> %BC -> CEM (rl_lab) against SB3 PPO, DQN (SAC on Pendulum).

    python experiments/baseline_ladder/run.py --env cartpole                      # every rung but DQN, seeds 0 1 2
    python experiments/baseline_ladder/run.py --env acrobot --rungs cem ppo --seeds 0 1 2 3 4
    python experiments/baseline_ladder/run.py --env lunarlander --rungs cem ppo --max-minutes 20
    python experiments/baseline_ladder/run.py --env pendulum --seeds 0 1 2 3 4 --max-minutes 8   # random, CEM, SAC
    python experiments/baseline_ladder/run.py --env acrobot --report-only         # rebuild results.md, ladder.png

The headline is a race: TIME TO THRESHOLD, the wall seconds from the start of training to the first
greedy 100-episode evaluation whose mean reaches the env spec's ``reward_threshold`` (CartPole-v1 475,
Acrobot-v1 -100, LunarLander-v3 200; Pendulum-v1, which has none, -200), evaluation time included on both sides.

- rl_lab rungs run the real CLI in a subprocess (``rl-lab experiment=... stop_score=<threshold> seed=S
  threads=1 hydra.run.dir=...``) and read its metrics.json: ``solve_seconds`` (from the start of round 0),
  ``rounds[].elapsed_seconds`` and ``rounds[].eval``. Nothing of the pipeline is re-implemented here.
- SB3 rungs (written once, generic over the env through ``ENVS``) train with the RL Zoo hyperparameters;
  at the first rollout boundary after every ``eval_every`` env steps the policy plays 100 greedy episodes
  through ``rl_lab.evaluate.evaluate`` (the evaluator rl_lab's own rounds use, on the same env backend),
  observations normalised by VecNormalize's frozen statistics where the Zoo sets ``normalize``. The clock
  starts right before the model is built. Training stops at the first evaluation at or above the
  threshold (as rl_lab's ``stop_score`` does), at the Zoo budget, or at ``--max-minutes``.

Results go to ``results/<env>/`` (results.json, results.md, ladder.png), rewritten atomically after every run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import rl_lab
from rl_lab.utils import atomic_path, derive_seed

HERE = Path(__file__).resolve().parent
ROOT = Path(rl_lab.__file__).resolve().parents[1]  # the rl_lab checkout that runs (a snapshot worktree, maybe)
EVAL_EPISODES = 100
EVAL_STREAM = 7  # derive_seed stream of the SB3 evaluations
RUNGS = ["random", "recipe", "top10", "cem", "ppo", "dqn", "sac"]
SB3_RUNGS = ("ppo", "dqn", "sac")
LABELS = {
    "random": "random policy",
    "recipe": "one-shot recipe (keep >= 50)",
    "top10": "one-shot %BC (top 10%)",
    "cem": "CEM (rl_lab rounds)",
    "ppo": "SB3 PPO (Zoo hp)",
    "dqn": "SB3 DQN (Zoo hp)",
    "sac": "SB3 SAC (Zoo hp)",
}
COLORS = {
    "random": "tab:gray",
    "recipe": "tab:blue",
    "top10": "tab:cyan",
    "cem": "tab:red",
    "ppo": "tab:green",
    "dqn": "tab:purple",
    "sac": "tab:orange",
}


@dataclass(frozen=True)
class EnvSetup:
    """One env of the ladder: the rl-lab overrides of each rung and how the SB3 rungs are evaluated."""

    env_id: str
    app: dict[str, list[str]]  # rung -> rl-lab overrides (stop_score, seed, threads and the run dir are added)
    eval_every: int  # SB3: env steps between greedy 100-episode evaluations (taken at rollout boundaries)
    target: float  # the goal for the SB3 baseline's median time over CEM's (issue 13; 1.0: just faster)
    threshold: float | None = None  # None: the env spec's reward_threshold (Pendulum has none)


ENVS = {
    "cartpole": EnvSetup(
        "CartPole-v1", {"recipe": [], "top10": ["experiment=top10"], "cem": ["experiment=cem"]}, 5_000, 20.0
    ),
    "acrobot": EnvSetup(
        "Acrobot-v1",
        {"recipe": ["env=acrobot"], "top10": ["env=acrobot", "experiment=top10"], "cem": ["experiment=acrobot"]},
        10_000,
        10.0,
    ),
    "lunarlander": EnvSetup(
        "LunarLander-v3",
        {
            "recipe": ["env=lunarlander"],
            "top10": ["env=lunarlander", "experiment=top10"],
            "cem": ["experiment=lunarlander"],
        },
        25_000,
        3.0,
    ),
    # Box actions: issue 14's race is CEM against SAC, so the one-shot rungs are not set up here. Pendulum's
    # spec has no reward_threshold: -200 is issue 14's goal (RL Zoo: SAC -157, PPO -172, ARS -213).
    "pendulum": EnvSetup("Pendulum-v1", {"cem": ["experiment=pendulum"]}, 2_000, 1.0, threshold=-200.0),
}
ZOO = yaml.safe_load((HERE / "zoo.yml").read_text())  # the RL Zoo's PPO, DQN and SAC hyperparameters per env id


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# ------------------------------------------------------------------------------------- rl_lab rungs
def run_random(env: EnvSetup, seed: int, threshold: float) -> dict[str, Any]:
    """Uniform random actions, 100 episodes, through rl_lab's evaluator."""
    import numpy as np

    from rl_lab.envs import env_info
    from rl_lab.evaluate import evaluate
    from rl_lab.policy import random_act_fn

    info = env_info(env.env_id)
    rep = evaluate(
        random_act_fn(info.action, np.random.default_rng(seed)),  # Box: uniform in the bounds
        env.env_id,
        EVAL_EPISODES,
        n_actions=info.n_actions,
        num_envs=EVAL_EPISODES,
        max_steps=info.max_episode_steps,
        seed=seed,
        action=info.action,
    )
    score = float(rep.scores.mean())
    return {
        "score_mean": score,
        "score_std": float(rep.scores.std()),
        "wall_s": rep.seconds,
        "env_steps": 0,
        "t_threshold": rep.seconds if score >= threshold else None,
        "curve": [],
    }


def run_app(rung: str, env: EnvSetup, seed: int, threshold: float, args: argparse.Namespace) -> dict[str, Any]:
    """The real ``rl-lab`` CLI in a subprocess; every figure comes from its metrics.json."""
    keep = args.out / "runs" if args.keep_runs else None
    tmp = None if keep else tempfile.mkdtemp(prefix=f"ladder_{rung}_s{seed}_")
    run_dir = keep / f"{rung}_seed{seed}" if keep else Path(tmp) / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = [*env.app[rung], f"stop_score={threshold:g}", f"seed={seed}", "device=cpu", f"threads={args.threads}"]
    cmd = [str(Path(sys.executable).with_name("rl-lab")), *overrides, f"hydra.run.dir={run_dir}"]
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        capped = False
        try:
            output, _ = proc.communicate(timeout=args.max_minutes * 60 if args.max_minutes else None)
        except subprocess.TimeoutExpired:  # SIGINT: rl-lab saves metrics.json (status "interrupted") and exits
            capped = True
            proc.send_signal(signal.SIGINT)
            output, _ = proc.communicate()
        rec: dict[str, Any] = {
            "command": "rl-lab " + " ".join(overrides),
            "process_s": time.perf_counter() - t0,
            "capped": capped,
        }
        metrics = run_dir / "metrics.json"
        if not metrics.is_file() or (proc.returncode != 0 and not capped):
            last = [x for x in output.strip().splitlines() if x.strip()][-1:] or [f"exit {proc.returncode}"]
            return {**rec, "error": last[0].strip()[:400], "exit_code": proc.returncode}
        rec.update(from_metrics(json.loads(metrics.read_text())))
        config = run_dir / ".hydra" / "config.yaml"
        rec["resolved_config"] = config.read_text() if config.is_file() else None
        return rec
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def from_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """Time to threshold, the eval curve, env steps and the final score from an rl-lab metrics.json."""
    curve, steps, eval_s = [], 0, 0.0
    for r in m["rounds"]:
        steps += int(r["collect"]["env_steps"] or 0)
        eval_s += float(r["eval"]["seconds"])
        curve.append(
            {
                "elapsed_s": r["elapsed_seconds"],
                # evaluator.early_exit stopped it once the threshold was out of reach: no score to plot
                "score_mean": None if r["eval"].get("cut_step") is not None else r["eval"]["score_mean"],
                "cut_step": r["eval"].get("cut_step"),
                "env_steps": steps,
                "episodes": r["eval"]["episodes"],
                "screened": r["eval"].get("screened", False),
                "eval_s_so_far": eval_s,
            }
        )
    solve = m.get("solve_seconds")
    hit = next((c for c in curve if solve is not None and c["elapsed_s"] >= solve - 1e-9), None)
    return {
        "score_mean": m["eval"]["score_mean"],
        "score_std": m["eval"]["score_std"],
        "final_eval_episodes": m["eval"]["episodes"],
        "wall_s": m["total_seconds"],
        "env_steps": steps,
        "rounds": len(m["rounds"]),
        "status": m["status"],
        "t_threshold": solve,
        "steps_to_threshold": hit and hit["env_steps"],
        "rounds_to_threshold": hit and curve.index(hit) + 1,
        "eval_s_to_threshold": hit and hit["eval_s_so_far"],
        "curve": curve,
    }


# ---------------------------------------------------------------------------------------- SB3 rungs
def lin(start: float) -> Any:
    """The Zoo's ``lin_<start>``: ``start * progress_remaining`` (1 -> 0 over training)."""
    return lambda progress_remaining: progress_remaining * start


def rungs_for(env: EnvSetup) -> list[str]:
    """The rungs that run on ``env``: random, its rl-lab rungs, and the SB3 algorithms the Zoo has for it."""
    return [r for r in RUNGS if r == "random" or r in env.app or (r in SB3_RUNGS and env.env_id in ZOO.get(r, {}))]


def env_threshold(env: EnvSetup) -> float:
    """The race's threshold: the setup's own, else the env spec's reward_threshold."""
    from rl_lab.envs import env_info

    threshold = env.threshold if env.threshold is not None else env_info(env.env_id).reward_threshold
    if threshold is None:
        raise SystemExit(f"{env.env_id} has no spec.reward_threshold: give its EnvSetup a threshold")
    return float(threshold)


def run_sb3(algo: str, env: EnvSetup, seed: int, threshold: float, args: argparse.Namespace) -> dict[str, Any]:
    """SB3 PPO, DQN or SAC with the Zoo hyperparameters, a greedy 100-episode evaluation every ``eval_every`` steps."""
    import numpy as np
    import torch
    import torch._dynamo  # noqa: F401  torch.optim imports it on first use (2-3 s): an import, kept off the clock
    from stable_baselines3 import DQN, PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from rl_lab.envs import env_info
    from rl_lab.evaluate import evaluate

    torch.set_num_threads(args.threads)
    info = env_info(env.env_id)
    hp = dict(ZOO[algo][env.env_id])
    n_envs, budget, normalize = hp.pop("n_envs", 1), int(hp.pop("n_timesteps")), hp.pop("normalize", False)
    hp.update({k: lin(float(v[4:])) for k, v in hp.items() if isinstance(v, str) and v.startswith("lin_")})
    venv = make_vec_env(env.env_id, n_envs=n_envs, seed=seed)
    if normalize:  # the Zoo's normalize: true, with the algorithm's gamma for the reward statistics
        venv = VecNormalize(venv, gamma=hp.get("gamma", 0.99))
    cap_s = args.max_minutes * 60 if args.max_minutes else math.inf

    class GreedyEval(BaseCallback):
        """At a rollout boundary (the policy just trained) past each ``eval_every`` steps: 100 greedy episodes."""

        def __init__(self, t0: float) -> None:
            super().__init__()
            self.t0, self.next_at, self.curve, self.eval_s = t0, env.eval_every, [], 0.0
            self.solved = self.capped = self.trained = False  # trained: since the last evaluation

        def act(self, obs: np.ndarray) -> np.ndarray:
            if normalize:  # VecNormalize's running statistics, frozen: normalize_obs does not update them
                obs = venv.normalize_obs(obs)
            return np.asarray(self.model.predict(obs, deterministic=True)[0])

        def greedy_eval(self) -> float:
            rep = evaluate(
                self.act,
                env.env_id,
                EVAL_EPISODES,
                n_actions=info.n_actions,
                num_envs=EVAL_EPISODES,
                max_steps=info.max_episode_steps,
                seed=derive_seed(seed, EVAL_STREAM, len(self.curve)),
                action=info.action,
            )
            self.eval_s += rep.seconds
            self.trained = False
            mean = float(rep.scores.mean())
            self.curve.append(
                {
                    "elapsed_s": time.perf_counter() - self.t0,
                    "score_mean": mean,
                    "score_std": float(rep.scores.std()),
                    "env_steps": int(self.num_timesteps),
                    "episodes": EVAL_EPISODES,
                    "eval_s_so_far": self.eval_s,
                }
            )
            return mean

        def _on_rollout_start(self) -> None:
            if self.num_timesteps >= self.next_at:
                self.next_at += env.eval_every * (1 + (self.num_timesteps - self.next_at) // env.eval_every)
                self.solved = self.greedy_eval() >= threshold

        def _on_step(self) -> bool:
            self.capped = time.perf_counter() - self.t0 > cap_s
            return not self.capped and not (self.solved and not args.full_budget)

        def _on_rollout_end(self) -> None:
            self.trained = True  # SB3 trains after every rollout (DQN: once past learning_starts)

        def _on_training_end(self) -> None:
            if self.trained or not self.curve:
                self.greedy_eval()  # the policy as training left it

    t0 = time.perf_counter()  # right before the model is built
    cls = {"ppo": PPO, "dqn": DQN, "sac": SAC}[algo]
    model = cls("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **hp)
    cb = GreedyEval(t0)
    model.learn(total_timesteps=budget, callback=cb)
    wall = time.perf_counter() - t0
    venv.close()
    hit = next((c for c in cb.curve if c["score_mean"] >= threshold), None)
    last = cb.curve[-1]
    return {
        "score_mean": last["score_mean"],
        "score_std": last["score_std"],
        "final_eval_episodes": EVAL_EPISODES,
        "wall_s": wall,
        "env_steps": int(model.num_timesteps),
        "budget": budget,
        "capped": cb.capped,
        "t_threshold": hit and hit["elapsed_s"],
        "steps_to_threshold": hit and hit["env_steps"],
        "eval_s_to_threshold": hit and hit["eval_s_so_far"],
        "evals": len(cb.curve),
        "curve": cb.curve,
    }


def run_rung(rung: str, env: EnvSetup, seed: int, threshold: float, args: argparse.Namespace) -> dict[str, Any]:
    if rung == "random":
        return run_random(env, seed, threshold)
    if rung in SB3_RUNGS:
        return run_sb3(rung, env, seed, threshold, args)
    return run_app(rung, env, seed, threshold, args)


# -------------------------------------------------------------------------------------------- summary
def median_inf(xs: list[float | None]) -> float:
    """Median with 'not reached' (None) as +inf."""
    return statistics.median([math.inf if x is None else x for x in xs]) if xs else math.nan


def bootstrap_ratio(num: list[float], den: list[float], n: int = 10_000) -> tuple[float, float]:
    """5th and 95th percentiles of median(num)/median(den), both resampled independently (seeded)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = np.median(rng.choice(np.array(num), size=(n, len(num))), axis=1)
    b = np.median(rng.choice(np.array(den), size=(n, len(den))), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = a / b
    return float(np.percentile(r, 5)), float(np.percentile(r, 95))


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    thr, runs = res["threshold"], [r for r in res["runs"] if "error" not in r]
    methods = {}
    for rung in res["rungs"]:
        rs = [r for r in runs if r["rung"] == rung]
        if not rs:
            continue
        ts = [r.get("t_threshold") for r in rs]
        scores = [r["score_mean"] for r in rs]
        methods[rung] = {
            "n": len(rs),
            "reached": sum(t is not None for t in ts),
            "t_median": median_inf(ts),
            "t_min": min((t for t in ts if t is not None), default=None),
            "t_max": max(math.inf if t is None else t for t in ts),
            "score_mean": statistics.fmean(scores),
            "score_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "wall_median": statistics.median(r["wall_s"] for r in rs),
            "env_steps_mean": statistics.fmean(r["env_steps"] for r in rs),
            "steps_to_threshold_median": median_inf([r.get("steps_to_threshold") for r in rs]),
        }
    races = {}
    for base in SB3_RUNGS:
        if "cem" not in methods or base not in methods:
            continue
        t = {(r["rung"], r["seed"]): r.get("t_threshold") for r in runs}
        seeds = [s for s in res["seeds"] if ("cem", s) in t and (base, s) in t]
        per_seed = {s: ratio(t[(base, s)], t[("cem", s)]) for s in seeds}
        cem_t = [math.inf if t[("cem", s)] is None else t[("cem", s)] for s in seeds]
        base_t = [math.inf if t[(base, s)] is None else t[(base, s)] for s in seeds]
        finite = [x for x in per_seed.values() if x is not None and math.isfinite(x)]
        races[base] = {
            "ratio_of_medians": ratio(methods[base]["t_median"], methods["cem"]["t_median"]),
            "per_seed": per_seed,
            "per_seed_min": min(finite, default=None),
            "per_seed_max": max(finite, default=None),
            "bootstrap_90": bootstrap_ratio(base_t, cem_t) if any(map(math.isfinite, cem_t)) else None,
            "target": ENVS[res["env"]].target,
        }
    return {"threshold": thr, "methods": methods, "races": races}


def ratio(num: float | None, den: float | None) -> float | None:
    """``num / den`` with None as 'not reached' (+inf); None when the denominator never reached it."""
    num = math.inf if num is None else num
    if den is None or not math.isfinite(den) or den <= 0:
        return None
    return num / den


def fmt_s(x: float | None, capped: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isinf(x)):
        return "capped, not reached" if capped else "not reached"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_x(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.1f}x"


# ------------------------------------------------------------------------------------------- reports
def results_md(res: dict[str, Any]) -> str:
    s, env, thr = res["summary"], ENVS[res["env"]], res["threshold"]
    mach = res["machine"]
    loads = [r["load1"] for r in res["runs"]]
    out = [
        f"# Baseline ladder, {env.env_id}: time to threshold ({thr:g})",
        "",
        f"`{res['command']}`, {res['started']} to {res.get('finished', '?')} UTC "
        f"({res.get('elapsed_s', 0) / 60:.1f} min), seeds {res['seeds']}.",
        f"Machine: {mach['cpu_model']}, {mach['cores']} cores, load average (1 min) {mach['load_before']} before, "
        f"{min(loads, default=0):.2f} to {max(loads, default=0):.2f} over the runs, {mach.get('load_after', '?')} "
        f"after; torch threads per run {res['threads']}; Python {mach['python']}, "
        + ", ".join(f"{k} {v}" for k, v in mach["versions"].items())
        + f"; rl_lab from {mach['rl_lab_path']} at git {mach['git_head']}"
        + (" (rl_lab/ or configs/ modified)" if mach["modified"] else "")
        + ".",
        "",
        "Time to threshold: wall seconds from the start of training (rl_lab: round 0; SB3: model construction) "
        f"to the first greedy {EVAL_EPISODES}-episode evaluation with mean >= {thr:g}, evaluation included. "
        "rl_lab evaluates after every round (rounds that 10 screening episodes rule out report the screen "
        "instead, where the experiment sets `evaluator.screen_episodes`, and an evaluation stops as soon as "
        "its mean provably cannot reach the threshold, where it sets `evaluator.early_exit`: only a round that "
        f"may reach it plays all {EVAL_EPISODES} episodes); SB3 every {env.eval_every:,} env steps "
        "(at the next rollout boundary). Both through `rl_lab.evaluate.evaluate`, the same env backend.",
        "",
        "## Race",
        "",
    ]
    rungs = [r for r in res["rungs"] if r in s["methods"]]
    header = ["seed", *(LABELS[r] for r in rungs), *(f"{b.upper()}/CEM" for b in s["races"])]
    out += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    by = {(r["rung"], r["seed"]): r for r in res["runs"]}
    for seed in [s for s in res["seeds"] if any(k[1] == s for k in by)]:
        cells = []
        for rung in rungs:
            r = by.get((rung, seed))
            if r is None:
                cells.append("")
            elif "error" in r:
                cells.append("failed")
            else:
                extra = f" ({r['rounds_to_threshold']} rounds)" if r.get("rounds_to_threshold") else ""
                steps = f", {r['steps_to_threshold']:,} steps" if r.get("steps_to_threshold") else ""
                cells.append(fmt_s(r.get("t_threshold"), r.get("capped", False)) + extra + steps)
        cells += [fmt_x(race["per_seed"].get(seed)) for race in s["races"].values()]
        out.append(f"| {seed} | " + " | ".join(cells) + " |")
    med = [fmt_s(s["methods"][r]["t_median"]) for r in rungs]
    med += [fmt_x(race["ratio_of_medians"]) for race in s["races"].values()]
    out.append("| **median** | " + " | ".join(f"**{x}**" for x in med) + " |")
    out.append("")
    for base, race in s["races"].items():
        lo, hi = race["bootstrap_90"] or (None, None)
        rom = race["ratio_of_medians"]
        cem = s["methods"]["cem"]
        verdict = "met" if rom is not None and rom >= race["target"] else "NOT met"
        if rom is None:
            verdict += f" (CEM reached the threshold on {cem['reached']} of {cem['n']} seeds)"
        spread = (
            ""
            if rom is None
            else (
                f" (bootstrap 90% interval {fmt_x(lo)} to {fmt_x(hi)}; per-seed ratios {fmt_x(race['per_seed_min'])} "
                f"to {fmt_x(race['per_seed_max'])})"
            )
        )
        out.append(
            f"- {base.upper()}/CEM, ratio of the median times: **{fmt_x(rom)}**{spread}; "
            f"target >= {race['target']:g}x: **{verdict}**."
        )
    out += ["- 'not reached' counts as +inf in the medians; 'capped' runs hit `--max-minutes`.", ""]
    out += [
        "## Every method",
        "",
        "| method | reached | time to threshold, median (min to max) | final score, mean ± std over seeds | "
        "wall s (median) | env steps (mean) | env steps to threshold (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for rung, m in s["methods"].items():
        spread = f" ({fmt_s(m['t_min'])} to {fmt_s(m['t_max'])})" if m["reached"] and m["n"] > 1 else ""
        out.append(
            f"| {LABELS[rung]} | {m['reached']}/{m['n']} | {fmt_s(m['t_median'])}{spread} | "
            f"{m['score_mean']:.1f} ± {m['score_std']:.1f} | {m['wall_median']:.1f} | "
            f"{m['env_steps_mean']:,.0f} | {fmt_steps(m['steps_to_threshold_median'])} |"
        )
    out += [
        "",
        "Final score: the last greedy evaluation of the run (100 episodes; the one that reached the threshold "
        "when a run stopped there). Env steps: training env steps (evaluation steps not counted).",
        "",
        "## Per run",
        "",
        "| method | seed | final score | wall s | env steps | of which evaluation, s (to threshold) | load1 | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        if "error" in r:
            out.append(f"| {r['rung']} | {r['seed']} | | | | | {r['load1']} | failed: {r['error']} |")
            continue
        note = r.get("command", "")
        if r["rung"] in SB3_RUNGS:
            note = f"{r['evals']} evaluations, budget {r['budget']:,} steps" + (", capped" if r["capped"] else "")
        elif r.get("rounds"):
            note = f"`{note}`, {r['rounds']} rounds, status {r['status']}" + (", capped" if r.get("capped") else "")
        ev = r.get("eval_s_to_threshold")
        out.append(
            f"| {r['rung']} | {r['seed']} | {r['score_mean']:.1f} ± {r['score_std']:.1f} | {r['wall_s']:.2f} | "
            f"{r['env_steps']:,} | {'' if ev is None else f'{ev:.2f}'} | {r['load1']} | {note} |"
        )
    hp = {k: v for k, v in res["hyperparameters"].items() if k in res["rungs"]}
    if hp:
        out += ["", "## SB3 hyperparameters (RL Zoo)", ""]
        out += [f"- {k.upper()}: `{json.dumps(v)}`" for k, v in hp.items()]
    cem = next((r for r in res["runs"] if r["rung"] == "cem" and r.get("resolved_config")), None)
    if cem:
        out += [
            "",
            f"## rl_lab CEM config (resolved, seed {cem['seed']})",
            "",
            "```yaml",
            cem["resolved_config"].rstrip(),
            "```",
        ]
    return "\n".join(out) + "\n"


def fmt_steps(x: float) -> str:
    return "not reached" if math.isinf(x) else f"{x:,.0f}"


def plot(res: dict[str, Any], path: Path) -> None:
    """Score against wall time, one curve per method (a thin line per seed); x marks the threshold crossing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thr = res["threshold"]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    labelled: set[str] = set()
    for r in res["runs"]:
        if "error" in r:
            continue
        rung, c = r["rung"], COLORS[r["rung"]]
        label = LABELS[rung] if rung not in labelled else None
        labelled.add(rung)
        pts = r.get("curve") or [{"elapsed_s": r["wall_s"], "score_mean": r["score_mean"], "episodes": 100}]
        pts = [p for p in pts if p["score_mean"] is not None]  # rounds cut short (evaluator.early_exit) have none
        xs = [max(p["elapsed_s"], 1e-2) for p in pts]
        ys = [p["score_mean"] for p in pts]
        ax.plot(xs, ys, color=c, lw=1.2, alpha=0.7, marker="o", ms=2.5, label=label)
        screened = [(x, y) for x, y, p in zip(xs, ys, pts, strict=True) if p.get("screened")]
        if screened:
            ax.scatter(*zip(*screened, strict=True), facecolor="white", edgecolor=c, s=14, zorder=3)
        if r.get("t_threshold") is not None:
            ax.scatter([max(r["t_threshold"], 1e-2)], [thr], color=c, marker="x", s=60, zorder=4)
    ax.axhline(thr, color="k", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("wall time from the start of training, s (log; evaluation included)")
    ax.set_ylabel(f"greedy evaluation mean ({EVAL_EPISODES} episodes)")
    ax.set_title(
        f"{ENVS[res['env']].env_id}, seeds {res['seeds']}: score against wall time (x: first >= {thr:g};\n"
        "hollow: rounds a 10-episode screen ruled out; rounds stopped once out of reach are left out;\n"
        "single points: one-shot rungs)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def cmd(*c: str) -> str | None:
        try:
            return subprocess.run(c, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    model = next(
        (ln.split(":", 1)[1].strip() for ln in (cmd("lscpu") or "").splitlines() if ln.startswith("Model name")),
        platform.processor(),
    )
    versions = {}
    for pkg in ("torch", "gymnasium", "numpy", "stable-baselines3", "envpool", "hydra-core"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    # the rl_lab that the rl-lab subprocess imports (same interpreter, environment and cwd)
    child = cmd(sys.executable, "-c", "import rl_lab; print(rl_lab.__file__)")
    if child and Path(child).resolve() != Path(rl_lab.__file__).resolve():
        raise SystemExit(f"the rl-lab subprocess would import {child}, this process {rl_lab.__file__}")
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "rl_lab_path": str(ROOT),
        "git_head": cmd("git", "rev-parse", "--short", "HEAD"),
        "modified": bool(cmd("git", "status", "--porcelain", "--", "rl_lab", "configs")),
        "load_before": round(os.getloadavg()[0], 2),
    }


def write_outputs(res: dict[str, Any], out: Path) -> None:
    res["summary"] = summarize(res)
    write_text(out / "results.json", json.dumps(res, indent=2, default=str) + "\n")
    if res["runs"]:
        write_text(out / "results.md", results_md(res))
        plot(res, out / "ladder.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", choices=sorted(ENVS), default="cartpole")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rungs", nargs="+", choices=RUNGS, default=None, help="default: every rung of the env but DQN")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default results/<env>/)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (rl-lab threads=N; SB3 torch)")
    ap.add_argument("--max-minutes", type=float, default=None, help="wall-time cap per run (then: not reached)")
    ap.add_argument("--full-budget", action="store_true", help="SB3: train on past the threshold to the Zoo budget")
    ap.add_argument("--keep-runs", action="store_true", help="keep the rl-lab run dirs under <out>/runs/")
    ap.add_argument("--report-only", action="store_true", help="rebuild results.md and ladder.png from results.json")
    args = ap.parse_args()
    args.out = (args.out or HERE / "results" / args.env).resolve()
    if args.report_only:
        res = json.loads((args.out / "results.json").read_text())
        write_outputs(res, args.out)
        print((args.out / "results.md").read_text())
        return

    env = ENVS[args.env]
    args.rungs = args.rungs or [r for r in rungs_for(env) if r != "dqn"]
    threshold = env_threshold(env)
    unsupported = [r for r in args.rungs if r not in rungs_for(env)]
    if unsupported:
        ap.error(f"--env {args.env} has no rung {', '.join(unsupported)}; its rungs: {' '.join(rungs_for(env))}")
    res: dict[str, Any] = {
        "env": args.env,
        "env_id": env.env_id,
        "threshold": threshold,
        "command": " ".join(["python experiments/baseline_ladder/run.py", *sys.argv[1:]]),
        "seeds": args.seeds,
        "rungs": args.rungs,
        "threads": args.threads,
        "max_minutes": args.max_minutes,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": machine_info(),
        "hyperparameters": {
            **{a: ZOO[a][env.env_id] for a in SB3_RUNGS if env.env_id in ZOO.get(a, {})},
            "eval_every": env.eval_every,
        },
        "runs": [],
    }
    t_all = time.perf_counter()
    for seed in args.seeds:  # seed-major: a noisy patch of the shared machine hits one seed, not one method
        for rung in args.rungs:
            log(f"{args.env} {rung} seed {seed} ...")
            load = round(os.getloadavg()[0], 2)
            rec = run_rung(rung, env, seed, threshold, args)
            rec.update(rung=rung, seed=seed, load1=load)
            res["runs"].append(rec)
            log(
                f"{rung} seed {seed}: "
                + (
                    f"FAILED {rec['error']}"
                    if "error" in rec
                    else f"time to {threshold:g}: {fmt_s(rec.get('t_threshold'), rec.get('capped', False))}, "
                    f"final {rec['score_mean']:.1f}, wall {rec['wall_s']:.1f} s, {rec['env_steps']:,} steps"
                )
            )
            res.update(
                finished=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                elapsed_s=time.perf_counter() - t_all,
                load_after=round(os.getloadavg()[0], 2),
            )
            res["machine"]["load_after"] = res["load_after"]
            write_outputs(res, args.out)
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
