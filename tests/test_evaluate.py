"""The batched evaluator: exact per-env budgets, statistics, action balance."""

from __future__ import annotations

import numpy as np
import pytest

from rl_lab.evaluate import evaluate, per_env_budgets


def always(action):
    return lambda obs: np.full(obs.shape[0], action, dtype=np.int64)


@pytest.mark.parametrize("episodes,num_envs", [(10, 3), (7, 7), (5, 16), (100, 8)])
def test_per_env_budget_is_exact(episodes, num_envs):
    budgets = per_env_budgets(episodes, min(num_envs, episodes))
    assert budgets.sum() == episodes and budgets.max() - budgets.min() <= 1
    report = evaluate(
        always(0), "rl_lab_test/FixedLength-v0", episodes, n_actions=2, num_envs=num_envs, max_steps=None, seed=0
    )
    assert report.scores.size == episodes
    np.testing.assert_array_equal(report.scores, report.lengths)  # score == length in this env
    assert report.action_counts.sum() == report.lengths.sum()  # reset steps are not counted


def test_constant_policy_action_balance():
    report = evaluate(
        always(0), "CartPole-v1", 10, n_actions=2, num_envs=4, max_steps=None, seed=0, reward_threshold=475.0
    )
    assert report.summary()["action_balance"] == [1.0, 0.0]
    assert report.action_counts[1] == 0
    s = report.summary()
    assert s["success_rate"] == 0.0 and s["score_max"] < 20  # always pushing left fails fast
    assert set(s) >= {
        "env_id",
        "episodes",
        "score_mean",
        "score_std",
        "score_min",
        "score_median",
        "score_max",
        "success_rate",
        "length_mean",
        "action_counts",
        "action_balance",
        "scores",
    }


def test_a_balancing_controller_survives_to_the_limit():
    def pd(obs):  # a known good CartPole controller: push towards where the pole falls
        return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)

    report = evaluate(pd, "CartPole-v1", 20, n_actions=2, num_envs=20, max_steps=None, seed=1, reward_threshold=475)
    assert report.scores.min() == 500.0
    assert report.summary()["success_rate"] == 1.0


def test_truncation_and_same_seed_same_scores():
    a = evaluate(always(1), "rl_lab_test/FixedLength-v0", 12, n_actions=2, num_envs=5, max_steps=4, seed=3)
    b = evaluate(always(1), "rl_lab_test/FixedLength-v0", 12, n_actions=2, num_envs=5, max_steps=4, seed=3)
    assert a.scores.max() <= 4
    np.testing.assert_array_equal(a.scores, b.scores)
