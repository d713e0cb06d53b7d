"""Baseline ladder on CartPole-v1: random -> one-shot recipe -> one-shot %BC -> CEM -> PPO (-> DQN), over seeds.

    python experiments/baseline_ladder/run.py                 # seeds 0 1 2, no DQN (about 7-10 min on 2 cores)
    python experiments/baseline_ladder/run.py --dqn           # also SB3 DQN (about 3 min more per seed, 1 thread)
    python experiments/baseline_ladder/run.py --quick         # seed 0 only, no PPO: a smoke test (results/quick/)
    python experiments/baseline_ladder/run.py --report-only   # rebuild results.md and ladder.png from results.json

Every rung reports the final greedy score (100 episodes), its wall time and the env steps it used.
The rl_lab rungs run the real app (``rl-lab ... hydra.run.dir=<tmp>``) in a subprocess and read its
``metrics.json``; their wall time is ``total_seconds`` (Python/Hydra start-up excluded, evaluation
included). PPO and DQN run in this process; their clock starts right before the model is built
(imports excluded) and stops after the final 100-episode evaluation.

The time-to-solve race compares CEM and PPO per seed: wall time from the start of round 0 / the model
construction to the first greedy evaluation whose mean is >= 475, evaluation time included on both
sides. Results go to ``results/`` (results.json, results.md, ladder.png), each written atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = HERE / "results"
ENV_ID = "CartPole-v1"
SOLVED = 475.0  # CartPole-v1 spec.reward_threshold
PERFECT = 500.0
EVAL_EPISODES = 100  # final greedy evaluation, every rung

RUNGS = ["random", "recipe", "top10", "cem", "ppo", "dqn"]
LABELS = {
    "random": "1. random policy",
    "recipe": "2. one-shot recipe (keep >= 50)",
    "top10": "3. one-shot %BC (top 10%)",
    "cem": "4. CEM (experiment=cem)",
    "ppo": "5. SB3 PPO (Zoo hp, 1e5 steps)",
    "dqn": "6. SB3 DQN (Zoo hp, 5e4 steps)",
}
APP_OVERRIDES = {"recipe": [], "top10": ["experiment=top10"], "cem": ["experiment=cem"]}

# RL Zoo (rl-baselines3-zoo hyperparams/ppo.yml, dqn.yml) settings for CartPole-v1.
PPO_HP = {
    "n_envs": 8,
    "total_timesteps": 100_000,
    "n_steps": 32,
    "batch_size": 256,
    "gae_lambda": 0.8,
    "gamma": 0.98,
    "n_epochs": 20,
    "ent_coef": 0.0,
    "learning_rate": "lin_1e-3",
    "clip_range": "lin_0.2",
}
DQN_HP = {
    "n_envs": 1,
    "total_timesteps": 50_000,
    "learning_rate": 2.3e-3,
    "batch_size": 64,
    "buffer_size": 100_000,
    "learning_starts": 1000,
    "gamma": 0.99,
    "target_update_interval": 10,
    "train_freq": 256,
    "gradient_steps": 128,
    "exploration_fraction": 0.16,
    "exploration_final_eps": 0.04,
    "policy_kwargs": {"net_arch": [256, 256]},
}
SB3_EVAL_EVERY = 10_000  # env steps between the callback's evaluations
SB3_EVAL_EPISODES = 20  # episodes per callback evaluation (deterministic actions)


# --------------------------------------------------------------------------------------------- io
def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then ``os.replace`` it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda p: p.write_text(text))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


# ------------------------------------------------------------------------------------------ rungs
def run_random(seed: int) -> dict[str, Any]:
    """Rung 1: uniform random actions, 100 episodes, with rl_lab's batched evaluator."""
    import numpy as np

    from rl_lab.envs import env_info
    from rl_lab.evaluate import evaluate
    from rl_lab.policy import random_act_fn

    info = env_info(ENV_ID)
    t0 = time.perf_counter()
    rep = evaluate(
        random_act_fn(info.n_actions, np.random.default_rng(seed)),
        ENV_ID,
        EVAL_EPISODES,
        n_actions=info.n_actions,
        num_envs=EVAL_EPISODES,
        max_steps=info.max_episode_steps,
        seed=seed,
        reward_threshold=info.reward_threshold,
    )
    wall = time.perf_counter() - t0
    return {
        "score_mean": float(rep.scores.mean()),
        "score_std": float(rep.scores.std()),
        "wall_s": wall,
        "env_steps": 0,  # nothing is learnt; the evaluation's own steps are below
        "eval_steps": int(rep.lengths.sum()),
    }


def app_command() -> list[str]:
    exe = Path(sys.executable).with_name("rl-lab")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "rl_lab"]


def run_app(rung: str, seed: int, keep: Path | None, threads: int) -> dict[str, Any]:
    """Rungs 2-4: the real ``rl-lab`` app in a subprocess; figures from its metrics.json / eval.json."""
    tmp = None
    if keep is not None:
        run_dir = keep / f"{rung}_seed{seed}"
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        tmp = tempfile.mkdtemp(prefix=f"ladder_{rung}_s{seed}_")
        run_dir = Path(tmp) / "run"
    overrides = [*APP_OVERRIDES[rung], f"seed={seed}", "device=cpu", f"threads={threads}", f"hydra.run.dir={run_dir}"]
    cmd = app_command() + overrides
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        process_s = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
        m = json.loads((run_dir / "metrics.json").read_text())
        ev = json.loads((run_dir / "eval.json").read_text())
        overrides_file = run_dir / ".hydra" / "overrides.yaml"
        resolved = run_dir / ".hydra" / "config.yaml"
        rec: dict[str, Any] = {
            "score_mean": float(ev["score_mean"]),
            "score_std": float(ev["score_std"]),
            "eval_episodes": int(ev["episodes"]),
            "wall_s": float(m["total_seconds"]),
            "process_s": process_s,  # including Python + Hydra start-up and imports
            "env_steps": sum(int(r["collect"]["env_steps"] or 0) for r in m["rounds"]),
            "useful_steps": sum(int(r["collect"]["useful_steps"]) for r in m["rounds"]),
            "rounds": len(m["rounds"]),
            "solve_seconds": m.get("solve_seconds"),
            "command": "rl-lab " + " ".join(o for o in overrides if not o.startswith("hydra.run.dir")),
        }
        if rung == "cem":
            rec.update(cem_curve(m))
            rec["resolved_config"] = resolved.read_text() if resolved.is_file() else None
            rec["cem_yaml"] = (REPO / "configs" / "experiment" / "cem.yaml").read_text()  # as of this run
            rec["git_head"] = git("rev-parse", "--short", "HEAD")
            rec["overrides"] = overrides_file.read_text() if overrides_file.is_file() else None
        return rec
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def cem_curve(m: dict[str, Any]) -> dict[str, Any]:
    """Per-round greedy eval means and elapsed time, and the first round reaching 475 and 500.

    metrics.json has no per-round elapsed field, so the elapsed time at the end of round k is the
    cumulative sum of the rounds' collect + train + eval seconds (it leaves out the small per-round
    overhead of saving datasets, checkpoints and TensorBoard events; ``overhead_s`` measures it at
    the end as ``total_seconds`` minus that sum).
    """
    elapsed = elapsed_no_eval = 0.0
    steps = 0
    curve = []
    for r in m["rounds"]:
        if "elapsed_seconds" in r:  # a per-round elapsed field, if the app records one
            elapsed = float(r["elapsed_seconds"])
        else:
            elapsed += r["collect"]["seconds"] + r["train"]["seconds"] + r["eval"]["seconds"]
        elapsed_no_eval += r["collect"]["seconds"] + r["train"]["seconds"]
        steps += int(r["collect"]["env_steps"] or 0)
        curve.append(
            {
                "round": r["round"],
                "score_mean": r["eval"]["score_mean"],
                "elapsed_s": elapsed,
                "elapsed_no_eval_s": elapsed_no_eval,
                "env_steps": steps,
            }
        )
    out: dict[str, Any] = {
        "curve": curve,
        "elapsed_source": "rounds[].elapsed_seconds (from the start of round 0)"
        if m["rounds"] and "elapsed_seconds" in m["rounds"][0]
        else "cumulative collect+train+eval seconds",
        "overhead_s": float(m["total_seconds"]) - (curve[-1]["elapsed_s"] if curve else 0.0),
    }
    out["t475_sustained_s"] = sustained(curve)
    for name, thr in (("475", SOLVED), ("500", PERFECT)):
        hit = next((c for c in curve if c["score_mean"] >= thr), None)
        out[f"t{name}_s"] = None if hit is None else hit["elapsed_s"]
        out[f"t{name}_no_eval_s"] = None if hit is None else hit["elapsed_no_eval_s"]
        out[f"rounds_to_{name}"] = None if hit is None else hit["round"] + 1
        out[f"steps_to_{name}"] = None if hit is None else hit["env_steps"]
    return out


def sustained(curve: list[dict[str, Any]], thr: float = SOLVED) -> float | None:
    """Elapsed time of the evaluation from which every later one (to the end of the run) is >= ``thr``."""
    t = None
    for c in reversed(curve):
        if c["score_mean"] < thr:
            break
        t = c["elapsed_s"]
    return t


def lin(start: float) -> Callable[[float], float]:
    """The Zoo's ``lin_<start>``: ``start * progress_remaining`` (1 -> 0 over training)."""

    def f(progress_remaining: float) -> float:
        return progress_remaining * start

    return f


def run_sb3(algo: str, seed: int, threads: int) -> dict[str, Any]:
    """Rungs 5-6: SB3 PPO / DQN with the Zoo hyperparameters, an eval callback, a final 100-episode eval."""
    import numpy as np
    import torch
    import torch._dynamo  # noqa: F401  torch.optim imports it on first use (1-3 s): an import, so outside the clock
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from rl_lab.envs import env_info
    from rl_lab.evaluate import evaluate

    torch.set_num_threads(threads)  # the same as the rl-lab rungs get

    class RaceCallback(BaseCallback):
        """EvalCallback-like: every SB3_EVAL_EVERY env steps, SB3_EVAL_EPISODES deterministic episodes."""

        def __init__(self, eval_env: Any, t0: float) -> None:
            super().__init__()
            self.eval_env, self.t0, self.evals, self.eval_s = eval_env, t0, [], 0.0

        def _on_step(self) -> bool:
            freq = max(SB3_EVAL_EVERY // self.training_env.num_envs, 1)
            if self.n_calls % freq == 0:
                te = time.perf_counter()
                mean, std = evaluate_policy(
                    self.model, self.eval_env, n_eval_episodes=SB3_EVAL_EPISODES, deterministic=True
                )
                now = time.perf_counter()
                self.eval_s += now - te
                self.evals.append(
                    {
                        "env_steps": int(self.num_timesteps),
                        "score_mean": float(mean),
                        "score_std": float(std),
                        "elapsed_s": now - self.t0,
                        "elapsed_no_eval_s": now - self.t0 - self.eval_s,
                    }
                )
            return True

    hp = dict(PPO_HP if algo == "ppo" else DQN_HP)
    n_envs, total = hp.pop("n_envs"), hp.pop("total_timesteps")
    env = make_vec_env(ENV_ID, n_envs=n_envs, seed=seed)
    eval_env = make_vec_env(ENV_ID, n_envs=1, seed=seed + 10_000)
    t0 = time.perf_counter()  # right before model construction
    if algo == "ppo":
        hp["learning_rate"] = lin(1e-3)
        hp["clip_range"] = lin(0.2)
        model: Any = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **hp)
    else:
        model = DQN("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **hp)
    cb = RaceCallback(eval_env, t0)
    model.learn(total_timesteps=total, callback=cb)
    learn_s = time.perf_counter() - t0

    info = env_info(ENV_ID)
    rep = evaluate(
        lambda obs: np.asarray(model.predict(obs, deterministic=True)[0]),
        ENV_ID,
        EVAL_EPISODES,
        n_actions=info.n_actions,
        num_envs=EVAL_EPISODES,
        max_steps=info.max_episode_steps,
        seed=seed + 20_000,
        reward_threshold=info.reward_threshold,
    )
    wall = time.perf_counter() - t0
    env.close()
    eval_env.close()
    hit = next((e for e in cb.evals if e["score_mean"] >= SOLVED), None)
    return {
        "score_mean": float(rep.scores.mean()),
        "score_std": float(rep.scores.std()),
        "eval_episodes": EVAL_EPISODES,
        "wall_s": wall,
        "learn_s": learn_s,  # construction + learn(), callback evaluations included
        "callback_eval_s": cb.eval_s,
        "final_eval_s": rep.seconds,
        "env_steps": int(model.num_timesteps),
        "curve": cb.evals,
        "t475_s": None if hit is None else hit["elapsed_s"],
        "t475_sustained_s": sustained(cb.evals),
        "t475_no_eval_s": None if hit is None else hit["elapsed_no_eval_s"],
        "steps_to_475": None if hit is None else hit["env_steps"],
    }


def run_rung(rung: str, seed: int, keep: Path | None, threads: int) -> dict[str, Any]:
    if rung == "random":
        return run_random(seed)
    if rung in APP_OVERRIDES:
        return run_app(rung, seed, keep, threads)
    return run_sb3(rung, seed, threads)


# ---------------------------------------------------------------------------------------- summary
def mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def median_or_none(xs: list[float | None]) -> float | None:
    """Median with 'not reached' (None) counted as +inf; None if the median itself is not reached."""
    vals = sorted(math.inf if x is None else x for x in xs)
    if not vals:
        return None
    m = statistics.median(vals)
    return None if math.isinf(m) else m


def fmt_x(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}x"


def fmt_s(x: float | None, nd: int = 1) -> str:
    return "not reached" if x is None else f"{x:.{nd}f}"


def summarize(runs: list[dict[str, Any]], rungs: list[str], seeds: list[int]) -> dict[str, Any]:
    table = []
    for rung in rungs:
        rs = [r for r in runs if r["rung"] == rung]
        if not rs:
            continue
        sm, ss = mean_std([r["score_mean"] for r in rs])
        wm, ws = mean_std([r["wall_s"] for r in rs])
        em, _ = mean_std([float(r["env_steps"]) for r in rs])
        table.append(
            {
                "rung": rung,
                "n": len(rs),
                "score_mean": sm,
                "score_std": ss,
                "wall_mean": wm,
                "wall_std": ws,
                "env_steps_mean": em,
            }
        )
    race = []
    for seed in seeds:
        cem = next((r for r in runs if r["rung"] == "cem" and r["seed"] == seed), None)
        ppo = next((r for r in runs if r["rung"] == "ppo" and r["seed"] == seed), None)
        if cem is None and ppo is None:
            continue
        row: dict[str, Any] = {"seed": seed}
        if cem is not None:
            row.update(
                cem_t475=cem["t475_s"],
                cem_t475_sustained=cem.get("t475_sustained_s"),
                cem_t475_no_eval=cem["t475_no_eval_s"],
                cem_t500=cem["t500_s"],
                cem_rounds_475=cem["rounds_to_475"],
                cem_steps_475=cem["steps_to_475"],
            )
        if ppo is not None:
            row.update(
                ppo_t475=ppo["t475_s"],
                ppo_t475_sustained=ppo.get("t475_sustained_s"),
                ppo_t475_no_eval=ppo["t475_no_eval_s"],
                ppo_steps_475=ppo["steps_to_475"],
            )
        c, p = row.get("cem_t475"), row.get("ppo_t475")
        row["ratio"] = None if (c is None or p is None) else p / c
        race.append(row)
    keys = ("cem_t475", "cem_t475_sustained", "cem_t475_no_eval", "cem_t500", "ppo_t475", "ppo_t475_sustained")
    med = {k: median_or_none([r.get(k) for r in race]) for k in (*keys, "ppo_t475_no_eval")}

    def ratio(num: str, den: str) -> float | None:
        return med[num] / med[den] if med[num] and med[den] else None

    per_seed = [r["ratio"] for r in race if r.get("ratio") is not None]
    return {
        "table": table,
        "race": race,
        "race_median": med,
        "race_ratio_of_medians": ratio("ppo_t475", "cem_t475"),  # the headline: first eval >= 475 on both sides
        "race_ratio_median_per_seed": statistics.median(per_seed) if per_seed else None,
        "race_ratio_sustained": ratio("ppo_t475_sustained", "cem_t475_sustained"),
        "race_ratio_ppo475_cem500": ratio("ppo_t475", "cem_t500"),
    }


def results_md(res: dict[str, Any]) -> str:
    s = res["summary"]
    loads = [r["load1"] for r in res["runs"]]
    lines = [
        f"# Baseline ladder, {ENV_ID}: results",
        "",
        f"Run {res['started']} to {res['finished']} ({res['elapsed_s'] / 60:.1f} min), seeds {res['seeds']}, "
        f"command `{res['command']}`.",
        f"Machine: {res['machine']['cpus']} CPUs, Python {res['machine']['python']}, "
        + ", ".join(f"{k} {v}" for k, v in res["machine"]["versions"].items())
        + f". Load average (1 min) before the runs: {res['machine']['load_before']}, "
        f"range over the runs {min(loads):.1f} to {max(loads):.1f}. torch threads per run: {res.get('threads')}.",
        "",
        "## Ladder (mean ± std over seeds)",
        "",
        "Final score: greedy, 100 episodes. Wall: rl-lab `total_seconds` (start-up excluded, evaluation included); "
        "SB3: model construction to the end of the final 100-episode evaluation (imports excluded). "
        "Env steps: training env steps (rl-lab: sub-env steps computed while collecting; evaluation not counted).",
        "",
        "| rung | n | final score | wall s | env steps |",
        "|---|---|---|---|---|",
    ]
    for t in s["table"]:
        lines.append(
            f"| {LABELS[t['rung']]} | {t['n']} | {t['score_mean']:.1f} ± {t['score_std']:.1f} | "
            f"{t['wall_mean']:.2f} ± {t['wall_std']:.2f} | {t['env_steps_mean']:,.0f} |"
        )
    lines += [
        "",
        "### Per run",
        "",
        "| rung | seed | final score (± std over episodes) | wall s | env steps | load1 | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        note = ""
        if r["rung"] == "cem":
            note = (
                f"{r['rounds']} rounds; first eval >= 475 after {r['rounds_to_475']} rounds, 500 after "
                f"{r['rounds_to_500']}; "
                f"solve_seconds {fmt_s(r['solve_seconds'], 2)}"
            )
        elif r["rung"] in ("ppo", "dqn"):
            note = (
                f"learn {r['learn_s']:.1f} s (callback evals {r['callback_eval_s']:.1f} s), "
                f"final eval {r['final_eval_s']:.2f} s; first eval >= 475 at {r['steps_to_475']} steps"
            )
        elif r["rung"] in ("recipe", "top10"):
            note = f"process incl. start-up {r['process_s']:.1f} s"
        lines.append(
            f"| {r['rung']} | {r['seed']} | {r['score_mean']:.1f} ± {r['score_std']:.1f} | {r['wall_s']:.2f} | "
            f"{r['env_steps']:,} | {r['load1']} | {note} |"
        )
    if s["race"]:
        med = s["race_median"]
        lines += [
            "",
            "## Time-to-solve race: CEM vs PPO",
            "",
            "Wall seconds from the start of round 0 (CEM, metrics.json timing) or right before model construction "
            "(PPO) to the first greedy evaluation with mean >= 475: CEM evaluates 100 episodes after every round, "
            "PPO 20 episodes every 10k steps (SB3 `evaluate_policy`, deterministic). Evaluation time is included; "
            "the 'no eval' columns subtract it.",
            "",
            "| seed | CEM first >= 475 | CEM >= 475 from then on | CEM to 500 | CEM rounds / env steps to 475 | "
            "PPO first >= 475 | PPO >= 475 from then on | PPO env steps to 475 | PPO/CEM | CEM to 475, no eval | "
            "PPO to 475, no eval |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in s["race"]:
            ratio = row.get("ratio")
            lines.append(
                f"| {row['seed']} | {fmt_s(row.get('cem_t475'), 2)} | {fmt_s(row.get('cem_t475_sustained'), 2)} | "
                f"{fmt_s(row.get('cem_t500'), 2)} | {row.get('cem_rounds_475')} / {row.get('cem_steps_475') or 0:,} | "
                f"{fmt_s(row.get('ppo_t475'))} | {fmt_s(row.get('ppo_t475_sustained'))} | "
                f"{row.get('ppo_steps_475') or 0:,} | {fmt_x(ratio)} | "
                f"{fmt_s(row.get('cem_t475_no_eval'), 2)} | {fmt_s(row.get('ppo_t475_no_eval'))} |"
            )
        rom = s["race_ratio_of_medians"]
        lines.append(
            f"| **median** | **{fmt_s(med['cem_t475'], 2)}** | {fmt_s(med['cem_t475_sustained'], 2)} | "
            f"{fmt_s(med['cem_t500'], 2)} | | **{fmt_s(med['ppo_t475'])}** | {fmt_s(med['ppo_t475_sustained'])} | | "
            f"**{fmt_x(rom)}** | {fmt_s(med['cem_t475_no_eval'], 2)} | {fmt_s(med['ppo_t475_no_eval'])} |"
        )
        verdict = "n/a" if rom is None else ("met" if rom >= 20 else "NOT met")
        lines += [
            "",
            f"Headline, PPO/CEM as the ratio of the medians of the first evaluation >= 475: **{fmt_x(rom)}**; "
            f"target CEM <= 1/20 of PPO (>= 20x): **{verdict}**.",
            f"Other readings: median of the per-seed ratios {fmt_x(s['race_ratio_median_per_seed'])}; "
            f"'>= 475 from then on' (every later evaluation also >= 475) {fmt_x(s['race_ratio_sustained'])}; "
            f"PPO's first 475 against CEM's 500 {fmt_x(s['race_ratio_ppo475_cem500'])}.",
            "CEM's evaluation is 100 episodes, PPO's 20: a 20-episode mean crosses 475 more easily. "
            "CEM stops at its first 500, so its 'from then on' window ends there; PPO's runs to 1e5 steps.",
        ]
        cem = [r for r in res["runs"] if r["rung"] == "cem"]
        if cem:
            src = cem[0]["elapsed_source"]
            oh = ", ".join(f"{r['overhead_s']:.2f}" for r in cem)
            lines += [
                "",
                f"CEM elapsed time per round comes from metrics.json's {src}"
                + (
                    " (metrics.json has no per-round elapsed field); it leaves out per-round saving/logging, "
                    f"which over the whole run was total_seconds minus that sum = {oh} s per seed."
                    if "cumulative" in src
                    else "."
                ),
            ]
    cem = [r for r in res["runs"] if r["rung"] == "cem"]
    if cem and cem[0].get("resolved_config"):

        def unseeded(r: dict[str, Any]) -> str:
            return "\n".join(x for x in (r.get("resolved_config") or "").splitlines() if not x.startswith("seed:"))

        same = all(unseeded(r) == unseeded(cem[0]) for r in cem)
        heads = sorted({str(r.get("git_head")) for r in cem})
        lines += [
            "",
            "## CEM config used (resolved, seed " + str(cem[0]["seed"]) + ")",
            "",
            (
                "All CEM runs used this config (apart from the seed)"
                if same
                else "WARNING: the CEM runs used DIFFERENT configs (configs/experiment/cem.yaml changed meanwhile); "
                "see results.json runs[].resolved_config"
            )
            + f"; git HEAD at the CEM runs: {', '.join(heads)}.",
            "",
            "```yaml",
            cem[0]["resolved_config"].rstrip(),
            "```",
        ]
    return "\n".join(lines) + "\n"


COLORS = {
    "random": "tab:gray",
    "recipe": "tab:blue",
    "top10": "tab:cyan",
    "cem": "tab:red",
    "ppo": "tab:green",
    "dqn": "tab:purple",
}
MARKERS = ["o", "s", "^", "D", "v"]


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5))
    seen: set[str] = set()
    for r in res["runs"]:
        rung, seed = r["rung"], r["seed"]
        c = COLORS[rung]
        if r.get("curve"):  # learning curve: eval mean vs elapsed wall time
            xs = [max(p["elapsed_s"], 1e-3) for p in r["curve"]]
            ax.plot(xs, [p["score_mean"] for p in r["curve"]], color=c, alpha=0.3, lw=1)
        ax.scatter(
            max(r["wall_s"], 1e-3),
            r["score_mean"],
            color=c,
            marker=MARKERS[res["seeds"].index(seed) % 5 if seed in res["seeds"] else 0],
            s=60,
            edgecolor="k",
            zorder=3,
            label=LABELS[rung] if rung not in seen else None,
        )
        seen.add(rung)
        ax.annotate(
            f"{rung} s{seed}",
            (max(r["wall_s"], 1e-3), r["score_mean"]),
            textcoords="offset points",
            xytext=(6, 6 - 9 * (res["seeds"].index(seed) % 3 if seed in res["seeds"] else 0)),
            fontsize=7,
        )
        if r.get("t475_s") is not None:
            ax.scatter(r["t475_s"], SOLVED, color=c, marker="x", s=50, zorder=4)
    ax.axhline(SOLVED, color="k", ls=":", lw=0.8)
    ax.text(0.01, SOLVED + 5, "solved (475)", fontsize=8, transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    ax.set_xlabel("wall time, s (log; start-up and imports excluded, evaluation included)")
    ax.set_ylabel(f"greedy score, mean of {EVAL_EPISODES} episodes")
    ax.set_ylim(0, 530)
    ax.set_title(
        f"{ENV_ID} baseline ladder, seeds {res['seeds']}: final score vs wall time\n"
        "markers: final 100-episode score per seed (o 1st seed, □ 2nd, △ 3rd); x: first eval >= 475;\n"
        "lines: eval curves (CEM: 100 episodes per round; SB3: 20 episodes every 10k steps)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, dpi=130, format="png"))
    plt.close(fig)


def git(*args: str) -> str | None:
    """A read-only git query (rev-parse, status); None if git is unavailable."""
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("torch", "gymnasium", "numpy", "stable-baselines3", "hydra-core", "rl-lab"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None

    dirty = git("status", "--porcelain", "--", "rl_lab", "configs")
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "git_head": git("rev-parse", "--short", "HEAD"),
        "lib_or_configs_modified": bool(dirty),
        "load_before": load1(),
    }


def write_outputs(res: dict[str, Any], out: Path) -> None:
    res["summary"] = summarize(res["runs"], res["rungs"], res["seeds"])
    write_text(out / "results.json", json.dumps(res, indent=2) + "\n")
    if res["runs"]:
        write_text(out / "results.md", results_md(res))
        plot(res, out / "ladder.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (--quick: 0)")
    ap.add_argument("--dqn", action="store_true", help="add SB3 DQN (about 3 min per seed at 1 thread)")
    ap.add_argument("--quick", action="store_true", help="one seed, no PPO: a smoke test")
    ap.add_argument("--rungs", nargs="+", choices=RUNGS, default=None, help="run only these rungs")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default: results/ next to run.py; --quick: results/quick/)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for every rung (rl-lab threads=N; SB3 torch.set_num_threads). Default 1: on a shared, "
        "loaded 2-core machine 2 threads made small-model torch 10-15x slower",
    )
    ap.add_argument("--keep-runs", action="store_true", help="keep the rl-lab run dirs under <out>/runs/")
    ap.add_argument("--report-only", action="store_true", help="rebuild results.md and ladder.png from results.json")
    args = ap.parse_args()
    out: Path = (args.out or (RESULTS / "quick" if args.quick else RESULTS)).resolve()

    if args.report_only:
        res = json.loads((out / "results.json").read_text())
        write_outputs(res, out)
        print((out / "results.md").read_text())
        return

    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    rungs = args.rungs or [r for r in RUNGS if (r != "dqn" or args.dqn) and not (args.quick and r == "ppo")]
    keep = out / "runs" if args.keep_runs else None
    sys.path.insert(0, str(REPO))  # rl_lab, if the venv lacks the editable install
    res: dict[str, Any] = {
        "env_id": ENV_ID,
        "command": " ".join(["python experiments/baseline_ladder/run.py", *sys.argv[1:]]),
        "seeds": seeds,
        "rungs": rungs,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "hyperparameters": {
            "ppo": PPO_HP,
            "dqn": DQN_HP,
            "sb3_eval_every": SB3_EVAL_EVERY,
            "sb3_eval_episodes": SB3_EVAL_EPISODES,
        },
        "threads": args.threads,
        "runs": [],
    }
    t_all = time.perf_counter()
    # Seed-major order: all rungs of one seed back to back, so a noisy patch hits one seed, not one method.
    for seed in seeds:
        for rung in rungs:
            log(f"{rung} seed {seed} ...")
            load = load1()
            rec = run_rung(rung, seed, keep, args.threads)
            rec.update(rung=rung, seed=seed, load1=load)
            res["runs"].append(rec)
            extra = f", t475 {fmt_s(rec.get('t475_s'), 2)} s" if "t475_s" in rec else ""
            log(
                f"{rung} seed {seed}: score {rec['score_mean']:.1f}, wall {rec['wall_s']:.2f} s, "
                f"env steps {rec['env_steps']:,}{extra}"
            )
            res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
            res["elapsed_s"] = time.perf_counter() - t_all
            write_outputs(res, out)  # a snapshot after every run
    print(
        f"\n{(out / 'results.md').read_text()}\nwrote {out}/results.json, results.md, ladder.png "
        f"in {res['elapsed_s'] / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
