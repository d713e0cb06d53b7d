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
    for name, env in ladder.ENVS.items():
        algos = ("sac",) if name == "pendulum" else ("ppo", "dqn")
        for algo in algos:
            assert ladder.ZOO[algo][env.env_id]["n_timesteps"] > 0
        assert [r for r in ladder.rungs_for(env) if r in ladder.SB3_RUNGS] == list(algos)


def test_pendulum_races_cem_against_sac_at_minus_200():
    env = ladder.ENVS["pendulum"]
    assert ladder.rungs_for(env) == ["random", "cem", "sac"]
    assert ladder.env_threshold(env) == -200.0  # Pendulum-v1's spec has no reward_threshold
    assert ladder.env_threshold(ladder.ENVS["cartpole"]) == 475.0  # the spec's, where there is one


def test_the_random_rung_plays_box_actions_in_the_bounds():
    r = ladder.run_random(ladder.ENVS["pendulum"], 0, -200.0)
    assert -1400 < r["score_mean"] < -1000 and r["t_threshold"] is None  # uniform torque: about -1,225


def test_a_rung_the_env_lacks_is_refused(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["run.py", "--env", "pendulum", "--rungs", "ppo", "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit) as e:
        ladder.main()
    assert e.value.code == 2
    assert "--env pendulum has no rung ppo" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
