"""Environment construction, backends and space checks.

rl_lab imitates actions from observations: it accepts any gymnasium environment with a flat ``Box``
observation space and either a ``Discrete`` action space (a classifier) or a flat ``Box`` action
space with finite bounds (a regression, :mod:`rl_lab.actions`), and refuses anything else with a
clear message. Vector envs use gymnasium 1.x NEXT_STEP autoreset (the step after an episode
ends is a reset step): the collector and the evaluator rely on it and check it.

Backends (``env.backend``), the same for collection and evaluation:

- ``native``: :class:`rl_lab.cartpole.FastCartPoleVectorEnv` for CartPole, gymnasium's CartPole
  equations computed in place (``precision=float64``: gymnasium's ``CartPoleVectorEnv`` bit for bit);
- ``envpool``: EnvPool's C++ envs on its own thread pool (:mod:`rl_lab.envpool_env`), for the ids
  it provides (``envpool.list_all_envs()``);
- ``gymnasium``: gymnasium's own env, one per sub-env, in a ``SyncVectorEnv`` (one process) or an
  ``AsyncVectorEnv`` (one sub-process per sub-env), chosen by ``env.vectorization``;
- ``auto`` (the default): ``native`` for CartPole, then ``envpool`` where it has the id and is
  installed, then ``gymnasium``.

Rendering always uses gymnasium's own env (:mod:`rl_lab.render`). Actions reach every backend as
the action space's own dtype (int64 for ``Discrete``, float32 for ``Box``), whatever dtype the caller stores them in.
Custom envs use gymnasium's ``module:id`` form (``env.id=my_package.envs:MyEnv-v0``): the module is
imported first, so that its ``gymnasium.register`` calls run.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass
from functools import cache

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from rl_lab.actions import ActionSpec
from rl_lab.config import BACKENDS
from rl_lab.errors import ConfigError

CARTPOLE_ENTRY_POINT = "gymnasium.envs.classic_control.cartpole:CartPoleEnv"


@dataclass(frozen=True)
class EnvInfo:
    """What the rest of rl_lab needs to know about an environment."""

    id: str
    obs_dim: int
    n_actions: int  # Discrete: the number of actions; Box: the action dimension (the network's output size)
    max_episode_steps: int | None  # the env's own limit (spec), None if it has none
    reward_threshold: float | None  # spec.reward_threshold ("solved"), None if it has none
    render_fps: float
    action: ActionSpec = ActionSpec(n=2)  # the action space (Discrete n, or Box bounds)
    max_step_reward: float | None = None  # an upper bound on any step's reward, where known (max_step_reward)

    @property
    def continuous(self) -> bool:
        """Box actions (a regression head), else Discrete (logits)."""
        return self.action.continuous


def _import_module_part(env_id: str) -> str:
    """Import ``module`` of a ``module:id`` env id (it registers the env); return the registry id."""
    if ":" not in env_id:
        return env_id
    module, _, name = env_id.partition(":")
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"env.id={env_id!r}: the module {module!r} cannot be imported ({e}). In the module:id form the part "
            "before ':' is a Python module that registers the env with gymnasium.register; install its package "
            "(pip install -e <path>) or fix the name."
        ) from None
    return name


def _spec(env_id: str) -> gym.envs.registration.EnvSpec:
    name = _import_module_part(env_id)
    try:
        return gym.spec(name)
    except gym.error.Error as e:
        close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"env.id={env_id!r} is not a registered gymnasium environment ({e}).{hint} "
            "Use an id from gymnasium's registry, e.g. env.id=CartPole-v1 or env.id=Acrobot-v1, or a custom env "
            "as env.id=my_package.my_module:MyEnv-v0 (the module registers it)."
        ) from None


def check_spaces(env_id: str, obs_space: spaces.Space, act_space: spaces.Space) -> tuple[int, ActionSpec]:
    """Return ``(obs_dim, action spec)``, or raise :class:`ConfigError` for unsupported spaces."""
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
    return int(obs_space.shape[0]), action_spec(env_id, act_space)


def action_spec(env_id: str, act_space: spaces.Space) -> ActionSpec:
    """The :class:`ActionSpec` of a ``Discrete(n)`` or flat finite ``Box`` space; anything else is a ConfigError."""
    if isinstance(act_space, spaces.Discrete):
        if act_space.start != 0:
            raise ConfigError(
                f"env.id={env_id!r} has actions {act_space} starting at {act_space.start}; rl_lab needs Discrete(n) "
                "actions 0 .. n-1. Register a variant with start=0."
            )
        return ActionSpec(n=int(act_space.n))
    if isinstance(act_space, spaces.Box):
        if len(act_space.shape) != 1:
            raise ConfigError(
                f"env.id={env_id!r} has Box actions of shape {act_space.shape}; rl_lab's regression head needs a flat "
                "action vector (shape (d,)). Register a variant that flattens the actions with a gymnasium "
                "ActionWrapper."
            )
        if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
            raise ConfigError(
                f"env.id={env_id!r} has Box actions {act_space} with infinite bounds, but rl_lab squashes its mean "
                "action into the bounds (tanh) and draws round 0's actions uniformly inside them, which needs finite "
                "bounds. Register a variant that sets them, e.g. gymnasium.wrappers.ClipAction or RescaleAction "
                "(min_action=-1, max_action=1) around the env, with the range the env really uses."
            )
        if np.any(act_space.high <= act_space.low):
            raise ConfigError(f"env.id={env_id!r} has Box actions {act_space} with an empty range (high <= low).")
        return ActionSpec.box(act_space.low, act_space.high)
    kind = type(act_space).__name__
    raise ConfigError(
        f"env.id={env_id!r} has a {kind} action space {act_space}; rl_lab supports Discrete(n) actions (a "
        "classifier) and flat Box actions with finite bounds (a regression). For MultiDiscrete, register a variant "
        "that maps it to one Discrete (the product of the sizes) or to a Box; for Dict or Tuple actions, flatten "
        "them into a Box with a gymnasium ActionWrapper."
    )


def _missing_dependency(env_id: str, e: Exception) -> ConfigError:
    text = str(e)
    if "box2d" in text.lower():
        fix = (
            "It needs Box2D: install rl_lab's box2d extra, pip install -e '.[box2d]' (or pip install box2d; "
            "a prebuilt wheel, no swig or compiler needed, whatever gymnasium's own hint says)."
        )
    elif "mujoco" in text.lower():
        fix = (
            "It needs MuJoCo: install rl_lab's mujoco extra, pip install -e '.[mujoco]' (or pip install mujoco; "
            "gymnasium's own hint, gymnasium[mujoco], also pulls imageio)."
        )
    else:
        fix = "Install the package it names."
    return ConfigError(f"env.id={env_id!r} needs a package that is not installed ({text}). {fix}")


def _make_single(env_id: str, **kwargs: object) -> gym.Env:
    _import_module_part(env_id)
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise _missing_dependency(env_id, e) from None


def env_info(env_id: str) -> EnvInfo:
    """Inspect an environment (one throwaway instance) and check that rl_lab supports it."""
    spec = _spec(env_id)
    env = _make_single(env_id)
    try:
        obs_dim, action = check_spaces(env_id, env.observation_space, env.action_space)
        fps = float(env.metadata.get("render_fps") or 30)
    finally:
        env.close()
    return EnvInfo(
        env_id, obs_dim, action.dim, spec.max_episode_steps, spec.reward_threshold, fps, action, max_step_reward(spec)
    )


# The most one step can pay, for gymnasium's own envs whose reward is bounded above by their code (checked
# against gymnasium in tests/test_evaluate.py): CartPole pays 1 a step (0 with sutton_barto_reward), Acrobot
# -1 or 0, MountainCar -1, Pendulum minus a cost. Keyed by entry point, so a re-registration of the same class
# shares it. An upper bound is all evaluator.early_exit needs to know that a mean is out of reach.
_MAX_STEP_REWARD: dict[str, float] = {
    CARTPOLE_ENTRY_POINT: 1.0,
    "gymnasium.envs.classic_control.acrobot:AcrobotEnv": 0.0,
    "gymnasium.envs.classic_control.mountain_car:MountainCarEnv": -1.0,
    "gymnasium.envs.classic_control.pendulum:PendulumEnv": 0.0,
}


def max_step_reward(spec: gym.envs.registration.EnvSpec) -> float | None:
    """An upper bound on the reward of any step of ``spec``'s env, or None where rl_lab knows none."""
    entry = spec.entry_point
    return _MAX_STEP_REWARD.get(entry) if isinstance(entry, str) else None


def _is_native_cartpole(spec: gym.envs.registration.EnvSpec) -> bool:
    return spec.entry_point == CARTPOLE_ENTRY_POINT and not spec.kwargs


@cache
def envpool_ids() -> frozenset[str] | None:
    """The ids EnvPool provides, or None when it is not installed."""
    import warnings

    with warnings.catch_warnings():  # importing EnvPool builds float64-bounded spaces, which gymnasium warns about
        warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")
        try:
            import envpool
        except ImportError:
            return None
    return frozenset(envpool.list_all_envs())


# gymnasium's own registrations that carry kwargs (every other id EnvPool shares registers none)
_GYMNASIUM_KWARGS: dict[str, dict[str, object]] = {"LunarLanderContinuous-v3": {"continuous": True}}


def _envpool_has(env_id: str, spec: gym.envs.registration.EnvSpec) -> bool:
    """EnvPool has this id, and the id is gymnasium's own env (not a re-registration with other code)."""
    gymnasium_own = (
        ":" not in env_id
        and isinstance(spec.entry_point, str)
        and spec.entry_point.startswith("gymnasium.envs.")
        and spec.kwargs == _GYMNASIUM_KWARGS.get(env_id, {})
    )
    if not gymnasium_own:  # decided without importing EnvPool (1.8 s)
        return False
    ids = envpool_ids()
    return ids is not None and env_id in ids


def resolve_backend(env_id: str, backend: str = "auto") -> str:
    """The backend that runs ``env_id``: ``native``, ``envpool`` or ``gymnasium`` (see the module doc).

    Raises:
        ConfigError: when the asked backend cannot run this env or is not installed.
    """
    spec = _spec(env_id)
    if backend == "auto":
        if _is_native_cartpole(spec):
            return "native"
        return "envpool" if _envpool_has(env_id, spec) else "gymnasium"
    if backend == "native" and not _is_native_cartpole(spec):
        raise ConfigError(
            f"env.backend=native: rl_lab's own vector env exists for CartPole only, not env.id={env_id!r}. "
            "Use env.backend=auto (EnvPool where it has the env, else gymnasium), envpool or gymnasium."
        )
    if backend == "envpool":
        if envpool_ids() is None:
            raise ConfigError(
                "env.backend=envpool, but EnvPool is not installed. Install rl_lab's envpool extra: "
                "pip install -e '.[envpool]' (or pip install envpool), or use env.backend=auto or gymnasium."
            )
        if not _envpool_has(env_id, spec):
            raise ConfigError(
                f"env.backend=envpool: EnvPool has no env env.id={env_id!r} (envpool.list_all_envs() lists its ids; "
                "a custom or re-registered env is not EnvPool's). Use env.backend=auto or env.backend=gymnasium."
            )
    if backend not in BACKENDS:
        raise ConfigError(f"env.backend={backend!r} is not one of {', '.join(BACKENDS)}. Pick one of those.")
    return backend


def available_cores() -> int:
    """The cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` where that is missing)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def make_vec_env(
    env_id: str,
    num_envs: int,
    max_steps: int | None,
    *,
    backend: str = "auto",
    precision: str = "float32",
    num_threads: int | None = None,
    vectorization: str = "sync",
) -> VectorEnv:
    """Build a vector env of ``num_envs`` sub-envs whose episodes are truncated at ``max_steps``.

    Args:
        env_id: a gymnasium id (or ``module:id``).
        num_envs: number of sub-envs.
        max_steps: truncation limit; ``None`` keeps the env's own.
        backend: ``auto``, ``native``, ``envpool`` or ``gymnasium`` (see the module doc).
        precision: arithmetic of rl_lab's native CartPole kernel, ``"float32"`` (faster) or
            ``"float64"`` (gymnasium's CartPoleVectorEnv bit for bit); other backends ignore it.
        num_threads: EnvPool's worker threads; ``None``: the cores available to this process.
        vectorization: ``sync`` or ``async``: gymnasium's ``SyncVectorEnv`` or ``AsyncVectorEnv``
            (the gymnasium backend only).

    Returns:
        A NEXT_STEP-autoreset vector env (not yet reset).
    """
    spec = _spec(env_id)
    chosen = resolve_backend(env_id, backend)
    if chosen == "native":
        from rl_lab.cartpole import FastCartPoleVectorEnv

        limit = max_steps if max_steps is not None else spec.max_episode_steps
        venv: VectorEnv = FastCartPoleVectorEnv(
            num_envs=num_envs, max_episode_steps=limit or 500, dtype=np.dtype(precision)
        )
    elif chosen == "envpool":
        from rl_lab.envpool_env import EnvPoolVectorEnv

        probe = _make_single(env_id)
        try:
            obs_space, act_space = probe.observation_space, probe.action_space
        finally:
            probe.close()
        check_spaces(env_id, obs_space, act_space)
        limit = max_steps if max_steps is not None else spec.max_episode_steps
        threads = num_threads if num_threads is not None else available_cores()
        venv = EnvPoolVectorEnv(env_id, num_envs, limit, min(threads, num_envs), obs_space, act_space)
    else:
        kwargs: dict[str, object] = {}
        if max_steps is not None:
            kwargs["max_episode_steps"] = max_steps
        _import_module_part(env_id)
        try:
            venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=vectorization, **kwargs)
        except gym.error.DependencyNotInstalled as e:
            raise _missing_dependency(env_id, e) from None
    check_spaces(env_id, venv.single_observation_space, venv.single_action_space)
    if venv.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP) != AutoresetMode.NEXT_STEP:
        raise ConfigError(f"env.id={env_id!r}: rl_lab needs NEXT_STEP autoreset vector envs (gymnasium's default).")
    return venv
