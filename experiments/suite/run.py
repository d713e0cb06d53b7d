"""The experiment suite: each ``configs/experiment/<name>.yaml`` over seeds, as a user runs it, re-evaluated fresh.

For every experiment and seed this runs ``rl-lab experiment=<name> seed=<s> threads=1`` in a subprocess
(the CLI a user types), then ``rl-lab-eval checkpoint=<run>/policy.pt`` on 100 episodes that the run never
played (rl-lab-eval's own evaluation seed): the run's final greedy evaluation decided when it stopped
(``stop_score``), so it is the first evaluation to pass, and a fresh one says what the policy really scores.
Writes ``results/<name>.json`` (every figure) and ``results/<name>.md`` (the table the README shows),
rewritten after every seed so a run cut short keeps what it measured.

    python experiments/suite/run.py pendulum --seeds 0 1 2 3 4
    python experiments/suite/run.py acrobot lunarlander --seeds 0 1 2 --set collector.rank_by=advantage --tag adv
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rl_lab.utils import atomic_write

HERE = Path(__file__).resolve().parent


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_seed(name: str, seed: int, extra: list[str], work: Path) -> dict:
    run_dir = work / f"{name}_seed{seed}"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "rl_lab", f"experiment={name}", f"seed={seed}", "threads=1", *extra,
           f"hydra.run.dir={run_dir}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"seed": seed, "error": proc.stderr[-2000:], "returncode": proc.returncode}
    m = json.loads((run_dir / "metrics.json").read_text())
    ev = subprocess.run(
        [sys.executable, "-m", "rl_lab.eval", f"checkpoint={run_dir / 'policy.pt'}", "evaluator.episodes=100",
         "threads=1"],
        capture_output=True, text=True,
    )  # fmt: skip
    fresh = None
    if ev.returncode == 0:
        eval_dirs = sorted((run_dir / "eval").glob("*/eval.json"))
        fresh = json.loads(eval_dirs[-1].read_text())["score_mean"] if eval_dirs else None
    rounds = m["rounds"]
    return {
        "seed": seed,
        "final_mean": m["eval"]["score_mean"],
        "final_std": m["eval"]["score_std"],
        "fresh_mean": fresh,
        "best_round_mean": max(r["eval"]["score_mean"] for r in rounds if not r["eval"].get("screened")),
        "rounds": len(rounds),
        "solve_seconds": m.get("solve_seconds"),
        "total_seconds": m["total_seconds"],
        "process_seconds": wall,
        "env_steps": sum(r["collect"]["env_steps"] or 0 for r in rounds),
        "curve": [(r["elapsed_seconds"], r["eval"]["score_mean"], bool(r["eval"].get("screened"))) for r in rounds],
        "load_before": load,
    }


def markdown(name: str, res: dict) -> str:
    ok = [r for r in res["seeds"] if "error" not in r]
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    lines = [
        f"# `rl-lab experiment={name}`" + (f" ({res['tag']})" if res.get("tag") else ""),
        "",
        f"Command: `{res['command']}`; {res['cpu']}, {os.cpu_count()} cores; git {res['git']}; {res['date']}.",
        f"Extra overrides: `{' '.join(res['extra']) or 'none'}`.",
        "",
        "| seed | final greedy mean ± std (100 ep.) | fresh re-evaluation (100 ep.) | best round | rounds | "
        "solved at (s) | wall s | env steps | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["seeds"]:
        if "error" in r:
            lines.append(f"| {r['seed']} | failed (exit {r['returncode']}) | | | | | | | |")
            continue
        solved = "not reached" if r["solve_seconds"] is None else f"{r['solve_seconds']:.1f}"
        fresh = "n/a" if r["fresh_mean"] is None else f"{r['fresh_mean']:.1f}"
        lines.append(
            f"| {r['seed']} | {r['final_mean']:.1f} ± {r['final_std']:.1f} | {fresh} | {r['best_round_mean']:.1f} | "
            f"{r['rounds']} | {solved} | {r['total_seconds']:.1f} | {r['env_steps']:,} | {r['load_before']:.1f} |"
        )
    if ok:
        fresh = [r["fresh_mean"] for r in ok if r["fresh_mean"] is not None]
        lines += [
            "",
            f"Median over {len(ok)} seeds: final {med([r['final_mean'] for r in ok]):.1f}, fresh "
            f"{med(fresh):.1f}, wall {med([r['total_seconds'] for r in ok]):.1f} s; "
            f"solved {sum(r['solve_seconds'] is not None for r in ok)}/{len(ok)}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiments", nargs="+")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--set", nargs="*", default=[], help="extra rl-lab overrides, e.g. collector.rank_by=advantage")
    ap.add_argument("--tag", default="", help="suffix of the result files (a variant)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout
    with tempfile.TemporaryDirectory(prefix="rl_lab_suite_") as tmp:
        for name in args.experiments:
            stem = name + (f"_{args.tag}" if args.tag else "")
            res = {
                "experiment": name, "tag": args.tag, "extra": args.set, "seeds": [], "cpu": cpu_name(),
                "git": git.strip(), "date": time.strftime("%Y-%m-%d"),
                "command": " ".join(["python experiments/suite/run.py", *sys.argv[1:]]),
            }  # fmt: skip
            for seed in args.seeds:
                r = run_seed(name, seed, args.set, Path(tmp))
                res["seeds"].append(r)
                print(name, json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
                text = json.dumps(res, indent=1)
                atomic_write(args.out / f"{stem}.json", lambda f, t=text: f.write(t.encode()))
                md = markdown(name, res)
                atomic_write(args.out / f"{stem}.md", lambda f, t=md: f.write(t.encode()))


if __name__ == "__main__":
    main()
