"""Environment construction and space checks.

rl_lab learns a classifier from observations to actions, so it accepts any gymnasium environment
with a ``Discrete`` action space and a flat ``Box`` observation space, and refuses anything else
with a clear message. Vector envs use gymnasium 1.x NEXT_STEP autoreset (the step after an episode
ends is a reset step): the collector and the evaluator rely on it and check it.

CartPole runs on :class:`rl_lab.cartpole.FastCartPoleVectorEnv`, the same dynamics as gymnasium's
native ``CartPoleVectorEnv`` computed in place (bit-identical, verified in tests); other ids use
gymnasium's own native vector env when it has one and ``SyncVectorEnv`` otherwise.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from rl_lab.errors import ConfigError

CARTPOLE_ENTRY_POINT = "gymnasium.envs.classic_control.cartpole:CartPoleEnv"


@dataclass(frozen=True)
class EnvInfo:
    """What the rest of rl_lab needs to know about an environment."""

    id: str
    obs_dim: int
    n_actions: int
    max_episode_steps: int | None  # the env's own limit (spec), None if it has none
    reward_threshold: float | None  # spec.reward_threshold ("solved"), None if it has none
    render_fps: float


def _spec(env_id: str) -> gym.envs.registration.EnvSpec:
    try:
        return gym.spec(env_id)
    except gym.error.Error as e:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"env.id={env_id!r} is not a registered gymnasium environment ({e}).{hint} "
            "Use an id from gymnasium's registry, e.g. env.id=CartPole-v1 or env.id=Acrobot-v1."
        ) from None


def check_spaces(env_id: str, obs_space: spaces.Space, act_space: spaces.Space) -> tuple[int, int]:
    """Return ``(obs_dim, n_actions)``, or raise :class:`ConfigError` for unsupported spaces."""
    if not isinstance(act_space, spaces.Discrete):
        kind = "continuous (Box)" if isinstance(act_space, spaces.Box) else type(act_space).__name__
        raise ConfigError(
            f"env.id={env_id!r} has a {kind} action space {act_space}, but rl_lab learns a classifier over a "
            "Discrete action space. Pick an environment with discrete actions (CartPole-v1, Acrobot-v1, "
            "MountainCar-v0, LunarLander-v3), or a discretized version of this one."
        )
    if not isinstance(obs_space, spaces.Box):
        raise ConfigError(
            f"env.id={env_id!r} has a {type(obs_space).__name__} observation space {obs_space}; rl_lab needs a flat "
            "Box (a vector of numbers). Flatten it with gymnasium.wrappers.FlattenObservation in a registered "
            "variant of the env, or pick an env with vector observations."
        )
    if len(obs_space.shape) != 1:
        raise ConfigError(
            f"env.id={env_id!r} has observations of shape {obs_space.shape} (an image or a matrix); rl_lab's MLP "
            "needs a flat vector observation (shape (n,)). Pick an env with vector observations, or register a "
            "variant that flattens or encodes them."
        )
    return int(obs_space.shape[0]), int(act_space.n)


def _make_single(env_id: str, **kwargs: object) -> gym.Env:
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"env.id={env_id!r} needs a package that is not installed: {e}") from None


def env_info(env_id: str) -> EnvInfo:
    """Inspect an environment (one throwaway instance) and check that rl_lab supports it."""
    spec = _spec(env_id)
    env = _make_single(env_id)
    try:
        obs_dim, n_actions = check_spaces(env_id, env.observation_space, env.action_space)
        fps = float(env.metadata.get("render_fps") or 30)
    finally:
        env.close()
    return EnvInfo(env_id, obs_dim, n_actions, spec.max_episode_steps, spec.reward_threshold, fps)


def make_vec_env(env_id: str, num_envs: int, max_steps: int | None, *, precision: str = "float32") -> VectorEnv:
    """Build a vector env of ``num_envs`` sub-envs whose episodes are truncated at ``max_steps``.

    Args:
        env_id: a gymnasium id.
        num_envs: number of sub-envs.
        max_steps: truncation limit; ``None`` keeps the env's own.
        precision: arithmetic of rl_lab's native CartPole kernel, ``"float32"`` (faster) or
            ``"float64"`` (gymnasium's CartPoleVectorEnv bit for bit); other envs run gymnasium's code.

    Returns:
        A NEXT_STEP-autoreset vector env (not yet reset).
    """
    spec = _spec(env_id)
    kwargs: dict[str, object] = {}
    if max_steps is not None:
        kwargs["max_episode_steps"] = max_steps
    if spec.entry_point == CARTPOLE_ENTRY_POINT and not spec.kwargs:
        from rl_lab.cartpole import FastCartPoleVectorEnv

        limit = max_steps if max_steps is not None else spec.max_episode_steps
        venv: VectorEnv = FastCartPoleVectorEnv(
            num_envs=num_envs, max_episode_steps=limit or 500, dtype=np.dtype(precision)
        )
    else:
        mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
        try:
            venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kwargs)
        except gym.error.DependencyNotInstalled as e:
            raise ConfigError(f"env.id={env_id!r} needs a package that is not installed: {e}") from None
    check_spaces(env_id, venv.single_observation_space, venv.single_action_space)
    if venv.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP) != AutoresetMode.NEXT_STEP:
        raise ConfigError(f"env.id={env_id!r}: rl_lab needs NEXT_STEP autoreset vector envs (gymnasium's default).")
    return venv


def as_obs_batch(obs: np.ndarray) -> np.ndarray:
    """View a batch of observations as contiguous float32 ``(num_envs, obs_dim)``."""
    return np.ascontiguousarray(obs, dtype=np.float32)
