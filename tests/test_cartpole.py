"""FastCartPoleVectorEnv must be bitwise identical to gymnasium's CartPoleVectorEnv."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.vector import AutoresetMode

from rl_lab.cartpole import FastCartPoleVectorEnv

OUTPUT_NAMES = ("obs", "reward", "terminated", "truncated")


def _assert_same(expected: tuple[Any, ...], actual: tuple[Any, ...], where: str) -> None:
    """Assert that the arrays of two ``reset`` or ``step`` results are equal bit for bit (infos are ignored)."""
    assert len(actual) == len(expected), f"{where}: {len(actual)} outputs != gymnasium's {len(expected)}"
    num_arrays = 1 if len(expected) == 2 else 4  # reset: (obs, info); step: (obs, reward, term, trunc, info)
    for name, exp, act in zip(OUTPUT_NAMES[:num_arrays], expected, actual, strict=False):
        assert act.dtype == exp.dtype, f"{where}: {name} dtype {act.dtype} != gymnasium's {exp.dtype}"
        assert act.shape == exp.shape, f"{where}: {name} shape {act.shape} != gymnasium's {exp.shape}"
        if not np.array_equal(act, exp):
            bad = np.flatnonzero(np.asarray(act != exp).reshape(len(exp), -1).any(axis=1))
            raise AssertionError(
                f"{where}: {name} diverged from gymnasium in {bad.size} env(s), first env {bad[0]}: "
                f"{act[bad[0]]!r} != {exp[bad[0]]!r}"
            )
        # array_equal treats -0.0 == 0.0; bitwise identity also means the same signed zeros.
        assert np.ascontiguousarray(act).tobytes() == np.ascontiguousarray(exp).tobytes(), (
            f"{where}: {name} equal in value but not bit for bit (signed zeros?)"
        )


def _compare_rollout(
    num_envs: int,
    seed: int,
    num_steps: int,
    env_kwargs: dict[str, Any] | None = None,
    policy: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    configure: Callable[[Any], None] | None = None,
    reset_options: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Step both environments with the same actions; compare every output at every step.

    Returns:
        counts of terminations, truncations and autoreset steps, so tests can check they covered them.
    """
    env_kwargs = env_kwargs or {}
    reference = CartPoleVectorEnv(num_envs=num_envs, **env_kwargs)
    fast = FastCartPoleVectorEnv(num_envs=num_envs, **env_kwargs)
    if configure is not None:
        configure(reference)
        configure(fast)
    expected = reference.reset(seed=seed, options=reset_options)
    actual = fast.reset(seed=seed, options=reset_options)
    _assert_same(expected, actual, f"num_envs={num_envs} seed={seed} reset")

    rng = np.random.default_rng([seed, num_envs])
    random_actions = rng.integers(0, 2, size=(num_steps, num_envs)) if policy is None else None
    obs = expected[0]
    terminated = truncated = autoresets = 0
    for t in range(num_steps):
        action = random_actions[t] if random_actions is not None else policy(obs, rng)
        autoresets += np.count_nonzero(reference.prev_done)  # envs that this step resets
        expected = reference.step(action)
        actual = fast.step(action)
        _assert_same(expected, actual, f"num_envs={num_envs} seed={seed} step {t}")
        # The float64 state too: a last-bit difference there would take many steps to show in float32.
        assert fast.state.tobytes() == reference.state.tobytes(), (
            f"num_envs={num_envs} seed={seed} step {t}: float64 state diverged from gymnasium "
            f"in envs {np.flatnonzero((fast.state != reference.state).any(axis=0))[:10]}"
        )
        obs = expected[0]
        terminated += np.count_nonzero(expected[2])
        truncated += np.count_nonzero(expected[3])
    return {"terminated": terminated, "truncated": truncated, "autoresets": autoresets}


@pytest.mark.parametrize("num_envs", [1, 7, 256])
@pytest.mark.parametrize("seed", [0, 1, 123])
def test_bitwise_identical_random_actions(num_envs: int, seed: int) -> None:
    counts = _compare_rollout(num_envs, seed, num_steps=2000)
    # Random actions end an episode after about 20 steps: thousands of autoresets for 256 envs.
    assert counts["terminated"] >= 40 * num_envs
    assert counts["autoresets"] >= 40 * num_envs


@pytest.mark.parametrize("num_envs", [1, 7, 256])
def test_bitwise_identical_with_truncation(num_envs: int) -> None:
    counts = _compare_rollout(num_envs, seed=5, num_steps=600, env_kwargs={"max_episode_steps": 20})
    assert counts["truncated"] > 0
    assert counts["terminated"] > 0


@pytest.mark.parametrize("num_envs", [1, 7, 256])
def test_bitwise_identical_sutton_barto_reward(num_envs: int) -> None:
    counts = _compare_rollout(num_envs, seed=7, num_steps=600, env_kwargs={"sutton_barto_reward": True})
    assert counts["terminated"] > 0


def test_bitwise_identical_long_episodes_truncated_at_500() -> None:
    """A balancing policy keeps poles up until the default 500-step truncation."""

    def balance(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        action = (obs[:, 2] + 0.3 * obs[:, 3] + 0.01 * obs[:, 1] > 0).astype(np.int64)
        flip = rng.random(len(obs)) < 0.05
        return np.where(flip, 1 - action, action)

    counts = _compare_rollout(64, seed=11, num_steps=1200, policy=balance)
    assert counts["truncated"] > 0


def test_bitwise_identical_semi_implicit_euler_custom_bounds_and_physics() -> None:
    def configure(env: Any) -> None:
        env.kinematics_integrator = "semi-implicit euler"
        env.gravity = 3.7
        env.force_mag = 7.5

    counts = _compare_rollout(33, seed=3, num_steps=400, configure=configure, reset_options={"low": -0.2, "high": 0.15})
    assert counts["autoresets"] > 0


def test_action_dtypes_and_lists_match() -> None:
    """bool, small-int and list actions give the same results as int64 ones in gymnasium."""
    reference, fast = CartPoleVectorEnv(num_envs=5), FastCartPoleVectorEnv(num_envs=5)
    _assert_same(reference.reset(seed=1), fast.reset(seed=1), "reset")
    rng = np.random.default_rng(0)
    for t in range(200):
        action = rng.integers(0, 2, size=5)
        fast_action: Any = [action.astype(np.bool_), action.astype(np.uint8), action.astype(np.int32), action.tolist()][
            t % 4
        ]
        _assert_same(reference.step(action), fast.step(fast_action), f"step {t}")


def test_reset_without_seed_mid_run_continues_the_same_stream() -> None:
    reference, fast = CartPoleVectorEnv(num_envs=9), FastCartPoleVectorEnv(num_envs=9)
    _assert_same(reference.reset(seed=42), fast.reset(seed=42), "first reset")
    rng = np.random.default_rng(42)
    for t in range(300):
        if t == 150:
            _assert_same(reference.reset(), fast.reset(), "reset at step 150")
        action = rng.integers(0, 2, size=9)
        _assert_same(reference.step(action), fast.step(action), f"step {t}")


def test_reset_seed_is_deterministic_and_seed_dependent() -> None:
    env = FastCartPoleVectorEnv(num_envs=16)
    first = env.reset(seed=2024)[0].copy()  # copy: the returned array is reused by the next call
    env.step(np.ones(16, dtype=np.int64))
    again = env.reset(seed=2024)[0].copy()
    other = env.reset(seed=2025)[0].copy()
    assert first.dtype == np.float32 and first.shape == (16, 4)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_spaces_and_metadata_match_gymnasium() -> None:
    for num_envs in (1, 7):
        reference, fast = CartPoleVectorEnv(num_envs=num_envs), FastCartPoleVectorEnv(num_envs=num_envs)
        assert fast.single_observation_space == reference.single_observation_space
        assert fast.observation_space == reference.observation_space
        assert fast.single_action_space == reference.single_action_space
        assert fast.action_space == reference.action_space
        assert fast.num_envs == reference.num_envs == num_envs
    assert FastCartPoleVectorEnv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert FastCartPoleVectorEnv.metadata["render_fps"] == CartPoleVectorEnv.metadata["render_fps"]


def test_returned_buffers_are_reused_and_do_not_alias_the_state() -> None:
    """Documented behaviour: each call returns the same arrays; writing to them changes nothing."""
    reference, fast = CartPoleVectorEnv(num_envs=4), FastCartPoleVectorEnv(num_envs=4)
    reference.reset(seed=0)
    obs0 = fast.reset(seed=0)[0]
    action = np.array([0, 1, 1, 0])
    first = fast.step(action)
    second = fast.step(action)
    assert all(np.shares_memory(a, b) for a, b in zip(first[:4], second[:4], strict=True))
    assert np.shares_memory(obs0, first[0])
    for out in second[:4]:
        out[...] = 0  # scribbling on the outputs must not change the simulation
    reference.step(action)
    reference.step(action)
    _assert_same(reference.step(action), fast.step(action), "step after writing to the outputs")


def test_errors() -> None:
    with pytest.raises(ValueError, match="does not render"):
        FastCartPoleVectorEnv(num_envs=2, render_mode="rgb_array")
    env = FastCartPoleVectorEnv(num_envs=3)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(3, dtype=np.int64))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(4, dtype=np.int64))
    with pytest.raises(TypeError, match="integer"):
        env.step(np.zeros(3, dtype=np.float32))
    with pytest.raises(NotImplementedError):
        env.render()


def test_narrow_keeps_the_chosen_envs_running_as_before_until_reset() -> None:
    """The kept sub-envs carry on bit for bit as in the full env (until their next autoreset); reset restores all."""
    full, narrow = FastCartPoleVectorEnv(num_envs=40), FastCartPoleVectorEnv(num_envs=40)
    full.reset(seed=3)
    narrow.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(12):
        a = rng.integers(0, 2, size=40)
        full.step(a)
        narrow.step(a)
    keep = np.flatnonzero(~full.prev_done)[::3]  # no autoreset pending: their next draws are not shared
    narrow.narrow(keep)
    assert narrow.num_envs == keep.size
    assert narrow.action_space.shape == (keep.size,) and narrow.observation_space.shape == (keep.size, 4)
    ended = np.zeros(keep.size, dtype=bool)
    for step in range(200):
        a = rng.integers(0, 2, size=40)
        f_obs, f_rew, f_term, f_trunc, _ = full.step(a)
        n_obs, n_rew, n_term, n_trunc, _ = narrow.step(a[keep])
        live = ~ended  # compare each kept env up to and including the step it ends
        for name, f, n in (("obs", f_obs, n_obs), ("reward", f_rew, n_rew), ("term", f_term, n_term)):
            np.testing.assert_array_equal(n[live], f[keep][live], err_msg=f"{name} at step {step}")
        np.testing.assert_array_equal(n_trunc[live], f_trunc[keep][live])
        ended |= n_term | n_trunc
    assert ended.all()
    obs, _ = narrow.reset(seed=5)
    assert narrow.num_envs == 40 and obs.shape == (40, 4)
    np.testing.assert_array_equal(obs, CartPoleVectorEnv(num_envs=40).reset(seed=5)[0])


def test_float32_kernel_is_the_same_physics_to_float32_rounding() -> None:
    """dtype=float32: from the same state, every step agrees with gymnasium's float64 step to float32 rounding."""
    reference = CartPoleVectorEnv(num_envs=256)
    fast = FastCartPoleVectorEnv(num_envs=256, dtype=np.float32)
    reference.reset(seed=1)
    fast.reset(seed=1)
    rng = np.random.default_rng(2)
    flips = steps = 0
    for _ in range(400):
        fast.state = reference.state.astype(np.float32)  # the same starting point every step
        fast.steps[...] = reference.steps
        fast.prev_done[...] = reference.prev_done
        action = rng.integers(0, 2, size=256)
        exp_obs, exp_rew, exp_term, exp_trunc, _ = reference.step(action)
        obs, rew, term, trunc, _ = fast.step(action)
        assert obs.dtype == np.float32 and fast.state.dtype == np.float32
        np.testing.assert_allclose(obs, exp_obs, rtol=2e-6, atol=2e-7)
        np.testing.assert_array_equal(rew, exp_rew)
        np.testing.assert_array_equal(trunc, exp_trunc)
        flips += np.count_nonzero(term != exp_term)  # only a state within rounding of a threshold can flip
        steps += np.count_nonzero(exp_term)
    assert steps > 3000 and flips <= 2


def test_float32_random_episodes_mostly_end_at_the_same_step() -> None:
    """Short random episodes: the float32 kernel's drift rarely reaches a termination decision."""
    lengths = {}
    for dtype in (np.float64, np.float32):
        env = FastCartPoleVectorEnv(num_envs=500, dtype=dtype)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        first_end = np.zeros(500, dtype=np.int64)
        for t in range(1, 200):
            _, _, term, trunc, _ = env.step(rng.integers(0, 2, size=500))
            first_end = np.where((first_end == 0) & (term | trunc), t, first_end)
        lengths[dtype] = first_end
    assert (lengths[np.float64] > 0).all()
    assert np.mean(lengths[np.float32] == lengths[np.float64]) >= 0.98
