"""The collector: exact episode budget, NEXT_STEP bookkeeping, first step kept, filters, reference equality."""

from __future__ import annotations

import numpy as np
import pytest

from rl_lab.collect import collect
from rl_lab.envs import make_vec_env
from rl_lab.policy import random_act_fn


def parity_behaviour(obs: np.ndarray) -> np.ndarray:
    """Action = parity of the step index, so every recorded pair can be checked."""
    return (obs[:, 0].astype(np.int64) % 2).astype(np.int64)


def split_episodes(ds):
    lens = ds.episode_lengths[ds.kept]
    bounds = np.r_[0, np.cumsum(lens)]
    return [(ds.obs[a:b], ds.actions[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@pytest.mark.parametrize("num_envs", [1, 3, 16])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_fixed_length_env_keeps_exactly_the_expected_episodes(num_envs, chunk):
    venv = make_vec_env("rl_lab_test/FixedLength-v0", num_envs, max_steps=50)
    ds, stats = collect(venv, parity_behaviour, 101, max_steps=50, seed=3, min_score=10, chunk=chunk)
    assert ds.episode_returns.shape == (101,)
    assert np.all(ds.episode_lengths >= 1)
    np.testing.assert_array_equal(ds.episode_returns, ds.episode_lengths)  # score == length in this env
    np.testing.assert_array_equal(ds.kept, ds.episode_returns >= 10)
    assert ds.samples == ds.episode_lengths[ds.kept].sum()
    assert stats.useful_steps == ds.episode_lengths.sum()
    for obs, actions in split_episodes(ds):
        length = int(obs[0, 1])
        np.testing.assert_array_equal(obs[:, 0], np.arange(length))  # first step present, no reset rows
        np.testing.assert_array_equal(obs[:, 1], length)  # one episode only
        np.testing.assert_array_equal(actions, np.arange(length) % 2)  # action paired with its own obs


def test_max_steps_truncates():
    venv = make_vec_env("rl_lab_test/FixedLength-v0", 4, max_steps=5)
    ds, _ = collect(venv, parity_behaviour, 40, max_steps=5, seed=0, min_score=1)
    assert ds.episode_lengths.max() == 5
    assert ds.kept.all()


def test_top_fraction_keeps_the_best_share_with_ties_to_the_first_started():
    venv = make_vec_env("rl_lab_test/FixedLength-v0", 8, max_steps=50)
    ds, _ = collect(venv, parity_behaviour, 50, max_steps=50, seed=1, top_fraction=0.2)
    assert ds.kept_episodes == 10
    kept, dropped = ds.episode_returns[ds.kept], ds.episode_returns[~ds.kept]
    assert kept.min() >= dropped.max()
    assert ds.meta["threshold"] == kept.min()
    ties = np.flatnonzero(ds.episode_returns == kept.min())
    assert np.all(np.diff(ds.kept[ties].astype(int)) <= 0)  # kept ties come before dropped ties


def reference_collect(venv, behaviour, episodes, seed, min_score):
    """A slow, obvious implementation of the same rules: per-step Python lists, one env at a time."""
    n = venv.num_envs
    obs, _ = venv.reset(seed=seed)
    env_ep = [e if e < episodes else -1 for e in range(n)]  # episode id per sub-env, -1 = idle
    started = min(n, episodes)
    resetting = [False] * n  # NEXT_STEP: the step after an episode ends only resets
    score = [0.0] * n
    steps: list[list] = [[] for _ in range(episodes)]
    returns: list[float | None] = [None] * episodes
    while any(r is None for r in returns):
        actions = behaviour(np.array(obs, dtype=np.float32))
        for e in range(n):
            if env_ep[e] >= 0 and not resetting[e]:
                steps[env_ep[e]].append((np.array(obs[e]), int(actions[e])))
        obs, reward, term, trunc, _ = venv.step(actions)
        for e in range(n):
            if resetting[e]:
                resetting[e] = False
                continue
            score[e] += float(reward[e])
            if term[e] or trunc[e]:
                resetting[e] = True
                if env_ep[e] >= 0:
                    returns[env_ep[e]] = score[e]
                    env_ep[e] = started if started < episodes else -1
                    started = min(started + 1, episodes)
                score[e] = 0.0
    r = np.array(returns)
    kept = r >= min_score
    obs_out = [o for i in range(episodes) if kept[i] for o, _ in steps[i]]
    act_out = [a for i in range(episodes) if kept[i] for _, a in steps[i]]
    return r, kept, np.array(obs_out, dtype=np.float32).reshape(-1, 4), np.array(act_out, dtype=np.int64)


@pytest.mark.parametrize("num_envs", [1, 5, 64])
def test_matches_a_simple_reference_implementation(num_envs):
    episodes, seed = 300, 11
    ref = reference_collect(
        make_vec_env("CartPole-v1", num_envs, 500),
        random_act_fn(2, np.random.default_rng(5)),
        episodes,
        seed,
        30,
    )
    ds, _ = collect(
        make_vec_env("CartPole-v1", num_envs, 500),
        random_act_fn(2, np.random.default_rng(5)),
        episodes,
        max_steps=500,
        seed=seed,
        min_score=30,
    )
    np.testing.assert_array_equal(ds.episode_returns, ref[0])
    np.testing.assert_array_equal(ds.kept, ref[1])
    np.testing.assert_array_equal(ds.obs, ref[2])
    np.testing.assert_array_equal(ds.actions, ref[3])


def test_same_seed_same_data_other_seed_differs():
    def run(seed):
        venv = make_vec_env("CartPole-v1", 32, 500)
        ds, _ = collect(venv, np.random.default_rng(seed), 200, max_steps=500, seed=seed, min_score=30)
        return ds

    a, b, c = run(0), run(0), run(1)
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != c.content_hash()


def test_random_cartpole_statistics_match_the_known_figures():
    """10,000 random CartPole-v1 games: mean score about 22, a few percent reach 50 (anchors)."""
    venv = make_vec_env("CartPole-v1", 1000, 500)
    ds, stats = collect(venv, np.random.default_rng(0), 10_000, max_steps=500, seed=0, min_score=50)
    assert 21 < ds.episode_returns.mean() < 23.5
    assert 300 < ds.kept_episodes < 450
    assert abs(ds.action_balance(2)[1] - 0.5) < 0.02
    assert stats.env_steps - stats.useful_steps < 0.5 * stats.env_steps  # idle tail is bounded


@pytest.mark.parametrize("behaviour", ["generator", "act_fn"])
@pytest.mark.parametrize("num_envs, episodes", [(64, 300), (500, 500), (1000, 3000)])
def test_narrowing_idle_sub_envs_changes_nothing(behaviour, num_envs, episodes):
    """rl_lab's CartPole drops idle sub-envs at the tail (narrow); gymnasium's steps them all. Same data."""
    import gymnasium as gym

    def run(venv):
        rng = np.random.default_rng(4)
        act = rng if behaviour == "generator" else random_act_fn(2, rng)
        return collect(venv, act, episodes, max_steps=500, seed=9, min_score=25)

    native, native_stats = run(make_vec_env("CartPole-v1", num_envs, 500, precision="float64"))
    plain, plain_stats = run(gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point"))
    assert native_stats.env_steps < plain_stats.env_steps  # idle sub-envs were dropped
    np.testing.assert_array_equal(native.episode_returns, plain.episode_returns)
    np.testing.assert_array_equal(native.episode_lengths, plain.episode_lengths)
    np.testing.assert_array_equal(native.obs, plain.obs)
    np.testing.assert_array_equal(native.actions, plain.actions)
    assert native.kept_episodes > 0


def test_top_fraction_never_keeps_episodes_tied_with_the_worst_score():
    """Sparse rewards (Acrobot's -500 when it never swings up): the share stops at the episodes that beat the floor."""
    from rl_lab.collect import _select

    returns = np.array([-500.0] * 8 + [-400.0, -300.0])
    kept, threshold = _select(returns, None, 0.5)
    np.testing.assert_array_equal(kept, returns > -500)
    assert threshold == -400
    returns = np.array([1.0, 2.0, 3.0, 3.0, 4.0])  # the share ends above the floor: ties as usual, started first
    kept, threshold = _select(returns, None, 0.4)
    np.testing.assert_array_equal(kept, [False, False, True, False, True])
    kept, _ = _select(returns, None, 1.0)  # everything asked for: the floor is kept too
    assert kept.all()
