"""The baseline ladder's bookkeeping (experiments/baseline_ladder/run.py) on figures known in advance."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

LADDER = Path(__file__).resolve().parents[1] / "experiments" / "baseline_ladder" / "run.py"
_spec = importlib.util.spec_from_file_location("baseline_ladder", LADDER)
ladder = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ladder  # dataclasses look their module up there
_spec.loader.exec_module(ladder)


def _round(elapsed: float, steps: int, score: float, episodes: int, eval_s: float) -> dict:
    return {
        "elapsed_seconds": elapsed,
        "collect": {"env_steps": steps},
        "eval": {"score_mean": score, "episodes": episodes, "screened": episodes < 100, "seconds": eval_s},
    }


def test_from_metrics_reads_the_solving_round():
    m = {
        "status": "completed",
        "total_seconds": 3.0,
        "solve_seconds": 2.5,
        "eval": {"score_mean": 480.0, "score_std": 1.0, "episodes": 100},
        "rounds": [_round(1.0, 100, 10.0, 10, 0.1), _round(2.5, 200, 480.0, 100, 0.3)],
    }
    r = ladder.from_metrics(m)
    assert (r["t_threshold"], r["steps_to_threshold"], r["rounds_to_threshold"], r["env_steps"]) == (2.5, 300, 2, 300)
    assert r["eval_s_to_threshold"] == pytest.approx(0.4)
    assert [c["screened"] for c in r["curve"]] == [True, False]


def test_from_metrics_not_reached():
    m = {
        "status": "completed",
        "total_seconds": 2.0,
        "solve_seconds": None,
        "eval": {"score_mean": 80.0, "score_std": 1.0, "episodes": 100},
        "rounds": [_round(2.0, 100, 80.0, 100, 0.1)],
    }
    r = ladder.from_metrics(m)
    assert r["t_threshold"] is None and r["steps_to_threshold"] is None


def test_not_reached_counts_as_inf():
    assert ladder.median_inf([1.0, None, None]) == math.inf
    assert ladder.median_inf([1.0, 3.0, None]) == 3.0
    assert ladder.ratio(None, 2.0) == math.inf
    assert ladder.ratio(4.0, None) is None
    assert ladder.ratio(4.0, 2.0) == 2.0


def test_every_env_has_zoo_hyperparameters():
    for env in ladder.ENVS.values():
        for algo in ("ppo", "dqn"):
            assert ladder.ZOO[algo][env.env_id]["n_timesteps"] > 0
