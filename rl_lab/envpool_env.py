"""EnvPool as a gymnasium ``VectorEnv`` with rl_lab's contract: seeded at ``reset``, NEXT_STEP autoreset, ``narrow``.

EnvPool (https://github.com/sail-sg/envpool) steps a batch of C++ environments on its own thread
pool. Its gymnasium API already has NEXT_STEP autoreset (the step after an episode ends returns
the first observation of the next one, reward 0, no flags), but its seed is fixed when the pool
is built (``reset(seed=...)`` is ignored with a warning). This adapter builds the pool in
:meth:`EnvPoolVectorEnv.reset`, so ``reset(seed=s)`` means what it means for gymnasium's vector
envs, and adds :meth:`narrow`: from then on only the kept sub-envs are stepped (EnvPool's
``step(action, env_id)``), each one carrying on exactly as it would have, since every EnvPool
sub-env has its own random generator.

Actions always reach EnvPool as int64 (the ``Discrete`` space's dtype), whatever the caller
stores them in. The single spaces are gymnasium's own (EnvPool's LunarLander, for example,
declares its observation bounds differently); observations come back as EnvPool's float32.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


class EnvPoolVectorEnv(VectorEnv):
    """``num_envs`` EnvPool sub-envs of ``env_id`` (an id from ``envpool.list_all_envs()``)."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        max_episode_steps: int | None,
        num_threads: int,
        single_observation_space: spaces.Space,
        single_action_space: spaces.Space,
    ) -> None:
        self.env_id = env_id
        self.num_envs = self._full_num_envs = int(num_envs)
        self.max_episode_steps = max_episode_steps
        self.num_threads = int(num_threads)
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = batch_space(single_observation_space, self.num_envs)
        self.action_space = batch_space(single_action_space, self.num_envs)
        self._pool: Any = None
        self._ids: np.ndarray | None = None  # the EnvPool env ids still stepped, once narrowed

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """(Re)build the pool with ``seed`` (EnvPool seeds sub-env ``i`` from ``seed + i``) and reset it."""
        import envpool

        self.close()
        kwargs: dict[str, Any] = {}
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = int(self.max_episode_steps)
        with warnings.catch_warnings():  # EnvPool builds float64-bounded Box spaces; gymnasium warns about it
            warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")
            self._pool = envpool.make(
                self.env_id,
                env_type="gymnasium",
                num_envs=self._full_num_envs,
                seed=int(seed or 0) & 0x3FFFFFFF,  # EnvPool takes a C int and adds the env index
                num_threads=self.num_threads,
                **kwargs,
            )
            obs, _ = self._pool.reset()  # the first reset builds EnvPool's spaces
        self.num_envs, self._ids = self._full_num_envs, None
        return obs, {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step the sub-envs still stepped with ``actions`` (one per sub-env, any integer dtype)."""
        a = np.asarray(actions, dtype=self.single_action_space.dtype)
        if self._ids is None:
            obs, reward, terminated, truncated, info = self._pool.step(a)
        else:
            obs, reward, terminated, truncated, info = self._pool.step(a, self._ids)
            if not np.array_equal(info["env_id"], self._ids):  # EnvPool answers a sync step in the order asked
                raise RuntimeError(f"EnvPool returned sub-envs {info['env_id']} for {self._ids}")
        return obs, reward, terminated, truncated, {}

    def narrow(self, keep: Any) -> None:
        """Step only the sub-envs ``keep`` (indices into the current ones, in that order) until the next reset."""
        keep = np.asarray(keep, dtype=np.intp)
        current = self._ids if self._ids is not None else np.arange(self._full_num_envs, dtype=np.int32)
        self._ids = np.ascontiguousarray(current[keep], dtype=np.int32)
        self.num_envs = int(keep.size)

    def close(self, **kwargs: Any) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
