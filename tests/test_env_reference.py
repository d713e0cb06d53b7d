"""Every named env, on every backend that runs it, against gymnasium's own env played in a plain loop.

- In distribution: the mean return and the mean length of random-policy episodes from rl_lab's
  collector and from ``gymnasium.make(id)`` stepped with int64 actions agree within 5 standard
  errors of their difference (plus 1e-9 for envs whose random episodes are all alike). The
  episode counts are large enough that the uint8-action bug (MountainCar episodes of 14-33 steps
  instead of 200, LunarLander means near -2,200 instead of -200) is far outside it: the test of
  the test below feeds uint8 actions to gymnasium and checks that the tolerance rejects them.
- Exactly: on the gymnasium backend with one sub-env, the dataset's observations, actions,
  returns and lengths are what replaying its actions in ``gymnasium.make(id)`` reset with the same
  seed gives, bit for bit.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from conftest import agree, rl_lab_random

from rl_lab.collect import collect
from rl_lab.envs import envpool_ids, make_vec_env, resolve_backend

# env id -> random episodes per side (enough for a standard error far below the uint8 bug's shift)
EPISODES = {"CartPole-v1": 400, "Acrobot-v1": 60, "MountainCar-v0": 60, "LunarLander-v3": 300}
HAS_ENVPOOL = envpool_ids() is not None


NEEDS_ENVPOOL = pytest.mark.skipif(not HAS_ENVPOOL, reason="envpool not installed")
CASES = [
    pytest.param(env_id, backend, marks=[NEEDS_ENVPOOL] if backend == "envpool" else [])
    for env_id in EPISODES
    for backend in (["native"] if env_id == "CartPole-v1" else []) + ["envpool", "gymnasium"]
]


def plain_loop(env_id: str, episodes: int, seed: int, action_dtype=np.int64) -> tuple[np.ndarray, np.ndarray]:
    """Random episodes of ``gymnasium.make(id)``, one after the other: (returns, lengths)."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    n = int(env.action_space.n)
    returns, lengths = [], []
    env.reset(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the uint8 case overflows, as the old bug did
        for _ in range(episodes):
            total, steps, done = 0.0, 0, False
            while not done:
                _, r, term, trunc, _ = env.step(np.array(rng.integers(0, n)).astype(action_dtype))
                total, steps, done = total + float(r), steps + 1, term or trunc
            returns.append(total)
            lengths.append(steps)
            env.reset()
    env.close()
    return np.array(returns), np.array(lengths, dtype=np.float64)


_reference: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def reference(env_id: str) -> tuple[np.ndarray, np.ndarray]:
    if env_id not in _reference:
        _reference[env_id] = plain_loop(env_id, EPISODES[env_id], seed=12345)
    return _reference[env_id]


@pytest.mark.parametrize("env_id,backend", CASES)
def test_random_episodes_match_gymnasium_in_distribution(env_id, backend):
    assert resolve_backend(env_id, backend) == backend
    ds = rl_lab_random(env_id, backend, EPISODES[env_id], num_envs=32, seed=7)
    ref_returns, ref_lengths = reference(env_id)
    returns, lengths = ds.episode_returns, ds.episode_lengths.astype(np.float64)
    assert agree(returns, ref_returns), (returns.mean(), ref_returns.mean())
    assert agree(lengths, ref_lengths), (lengths.mean(), ref_lengths.mean())
    assert ds.samples == int(ds.episode_lengths.sum())  # every step of every episode recorded


@pytest.mark.parametrize("env_id", ["MountainCar-v0", "LunarLander-v3"])
def test_the_tolerance_catches_uint8_actions(env_id):
    """The test of the test: uint8 actions wrap around in these envs, and the check above sees it."""
    ref_returns, ref_lengths = reference(env_id)
    bad_returns, bad_lengths = plain_loop(env_id, EPISODES[env_id], seed=99, action_dtype=np.uint8)
    assert not (agree(bad_returns, ref_returns) and agree(bad_lengths, ref_lengths))


@pytest.mark.parametrize("env_id", list(EPISODES))
def test_gymnasium_backend_is_gymnasium_bit_for_bit(env_id):
    """One sub-env: its episodes are gymnasium.make(id)'s, reset with the same seed, replaying the same actions."""
    episodes = {"CartPole-v1": 20, "Acrobot-v1": 3, "MountainCar-v0": 3, "LunarLander-v3": 10}[env_id]
    ds = rl_lab_random(env_id, "gymnasium", episodes, num_envs=1, seed=3)
    env = gym.make(env_id)
    obs, _ = env.reset(seed=3)
    row = 0
    for k in range(episodes):
        total, length = 0.0, int(ds.episode_lengths[k])
        for i in range(length):
            np.testing.assert_array_equal(ds.obs[row + i], obs.astype(np.float32))
            obs, r, term, trunc, _ = env.step(np.int64(ds.actions[row + i]))
            total += float(r)
            assert (term or trunc) == (i == length - 1)
        assert total == ds.episode_returns[k]
        row += length
        obs, _ = env.reset()
    assert row == ds.samples
    env.close()


@pytest.mark.skipif(not HAS_ENVPOOL, reason="envpool not installed")
@pytest.mark.parametrize("env_id", ["Acrobot-v1", "LunarLander-v3"])
def test_envpool_is_deterministic_and_narrowing_changes_nothing(env_id):
    """Same seed, same data; the idle tail dropped by narrow() gives the data of stepping every sub-env."""
    a = rl_lab_random(env_id, "envpool", 40, num_envs=16, seed=5)
    b = rl_lab_random(env_id, "envpool", 40, num_envs=16, seed=5)
    assert a.content_hash() == b.content_hash()
    limit = gym.spec(env_id).max_episode_steps
    venv = make_vec_env(env_id, 16, limit, backend="envpool", num_threads=1)
    venv.narrow = None  # type: ignore[assignment]  # the collector then steps every sub-env to the end
    c, _ = collect(venv, np.random.default_rng(5), 40, max_steps=limit, seed=5, top_fraction=1.0)
    venv.close()
    assert c.content_hash() == a.content_hash()


class ActionTypeSpy(gym.Env):
    """Records the type of every action it receives."""

    seen: set = set()

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 1, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        ActionTypeSpy.seen.add(np.asarray(action).dtype)
        return np.zeros(1, np.float32), 1.0, False, False, {}


gym.register("rl_lab_test/ActionTypeSpy-v0", entry_point=ActionTypeSpy, max_episode_steps=5)


def test_actions_reach_the_env_as_the_spaces_dtype():
    from rl_lab.evaluate import evaluate

    ActionTypeSpy.seen.clear()
    venv = make_vec_env("rl_lab_test/ActionTypeSpy-v0", 4, 5)
    collect(venv, np.random.default_rng(0), 8, max_steps=5, seed=0, top_fraction=0.5)  # stored as uint8
    evaluate(
        lambda o: np.zeros(o.shape[0], np.uint8),
        "rl_lab_test/ActionTypeSpy-v0",
        4,
        n_actions=3,
        num_envs=2,
        max_steps=5,
        seed=0,
    )
    assert ActionTypeSpy.seen == {np.dtype(np.int64)}
