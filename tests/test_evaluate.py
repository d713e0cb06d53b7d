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


# --- evaluator.early_exit: cut an evaluation short once its mean cannot reach a target -----------------


def _erring_controller(seed: int, p: float):
    """The balancing controller, taking the other action with probability ``p``: CartPole scores spread out."""
    rng = np.random.default_rng(seed)

    def act(obs):
        a = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
        return np.where(rng.random(a.shape) < p, 1 - a, a)

    return act


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_a_cut_evaluation_could_not_have_reached_its_target_and_an_uncut_one_is_unchanged(p):
    """Bit for bit the plain evaluation when the target is within reach; a cut one's full mean is below it."""
    kw = dict(n_actions=2, num_envs=100, max_steps=500, seed=4, backend="gymnasium")
    full = evaluate(_erring_controller(0, p), "CartPole-v1", 100, **kw)
    outcomes = []
    for target in (5.0, 50.0, 150.0, 300.0, 475.0, 499.0):
        cut = evaluate(_erring_controller(0, p), "CartPole-v1", 100, cut_below=target, max_step_reward=1.0, **kw)
        if cut.cut_step is None:
            np.testing.assert_array_equal(cut.scores, full.scores)
            np.testing.assert_array_equal(cut.action_counts, full.action_counts)
            assert "cut_step" not in cut.summary()
        else:  # the proof held: the full evaluation's mean is below the target, and below the bound
            assert full.scores.mean() <= cut.score_bound < target
            assert cut.cut_step < full.lengths.max() and cut.lengths.max() <= cut.cut_step
            assert cut.summary()["cut_step"] == cut.cut_step
        outcomes.append(cut.cut_step is not None)
        if full.scores.mean() >= target:
            assert cut.cut_step is None  # a mean that reaches the target is never cut
    assert any(outcomes) and not all(outcomes)


def test_a_hopeless_acrobot_evaluation_stops_soon_after_the_mean_passes_the_target():
    """Acrobot pays -1 a step until it swings up: 100 random episodes are out of reach of -100 after ~100 steps."""

    def random_act(obs):
        return np.random.default_rng(int(obs[0, 0] * 1e6) % 2**32).integers(0, 3, obs.shape[0])

    kw = dict(n_actions=3, num_envs=100, max_steps=500, seed=0, backend="gymnasium")
    cut = evaluate(random_act, "Acrobot-v1", 100, cut_below=-100.0, max_step_reward=0.0, **kw)
    assert cut.cut_step is not None and cut.cut_step <= 104
    assert cut.score_bound < -100 and cut.scores.size == 100  # the started episodes, as they stood
    full = evaluate(random_act, "Acrobot-v1", 100, **kw)
    assert full.scores.mean() <= cut.score_bound


def _ids_of(entry_point: str) -> list[str]:
    import gymnasium as gym

    return sorted(i for i, s in gym.registry.items() if s.entry_point == entry_point and not s.kwargs)


def test_the_known_step_reward_bounds_hold_in_gymnasium_and_envpool():
    """Every bound rl_lab declares, checked against the real envs under random play (and EnvPool's, where installed)."""
    import gymnasium as gym

    from rl_lab.envs import _MAX_STEP_REWARD, envpool_ids, make_vec_env, max_step_reward

    checked = []
    for entry, bound in _MAX_STEP_REWARD.items():
        ids = _ids_of(entry)
        assert ids, entry
        for env_id in ids:
            assert max_step_reward(gym.spec(env_id)) == bound
            env = gym.make(env_id)
            env.action_space.seed(0)
            env.reset(seed=0)
            best = -np.inf
            for _ in range(3000):
                _, r, term, trunc, _ = env.step(env.action_space.sample())
                best = max(best, float(r))
                if term or trunc:
                    env.reset()
            env.close()
            assert best <= bound, (env_id, best, bound)
            checked.append(env_id)
            if envpool_ids() is not None and env_id in envpool_ids():
                venv = make_vec_env(env_id, 16, None, backend="envpool")
                venv.action_space.seed(0)
                venv.reset(seed=0)
                best, resetting = -np.inf, np.zeros(16, dtype=bool)
                for _ in range(600):  # the step after an episode's end only resets it (reward 0): not a step of it
                    _, r, term, trunc, _ = venv.step(venv.action_space.sample())
                    if (~resetting).any():
                        best = max(best, float(np.asarray(r)[~resetting].max()))
                    resetting = np.asarray(term) | np.asarray(trunc)
                venv.close()
                assert best <= bound, (env_id, "envpool", best)
    assert {"CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1"} <= set(checked)
    assert max_step_reward(gym.spec("LunarLander-v3")) is None  # shaped rewards: no bound declared
