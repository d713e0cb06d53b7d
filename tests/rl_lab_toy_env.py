"""A custom env shipped with the tests, for ``env.id=rl_lab_toy_env:Toy-v0`` (gymnasium's ``module:id`` form).

Importing this module registers ``Toy-v0``: 10 steps, observation ``[t / 10, target]``, reward 1
when the action equals ``target`` (drawn at reset), so random play scores about 5 and the best
policy 10. It also registers ``ToyBox-v0``, a continuous-action env whose best action is known
(:class:`ToyBoxEnv`).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ToyEnv(gym.Env):
    metadata = {"render_modes": [], "render_fps": 10}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0, 1, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.target = 0, int(self.np_random.integers(0, 2))
        return self._obs(), {}

    def _obs(self):
        return np.array([self.t / 10, self.target], dtype=np.float32)

    def step(self, action):
        reward = float(int(action) == self.target)
        self.t += 1
        return self._obs(), reward, False, self.t >= 10, {}


if "Toy-v0" not in gym.registry:
    gym.register("Toy-v0", entry_point=ToyEnv, max_episode_steps=10)


class ToyBoxEnv(gym.Env):
    """``ToyBox-v0``: continuous actions whose best value is known.

    10 steps; the observation is ``[t / 10, x, y]`` with ``x, y`` drawn uniformly in ``[-0.8, 0.8]``
    at every step; actions live in ``Box([-1, 0], [1, 4])``; the best action is ``(x, 2 + 2 y)``
    and the reward is ``-(|a0 - x| + |a1 - (2 + 2 y)| / 2)`` (each error in half-ranges). Uniform
    random play scores about -12 an episode (the best of 300 about -6.4) and the best policy 0.
    """

    metadata = {"render_modes": [], "render_fps": 10}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1, 1, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 4.0], np.float32))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.xy = self.np_random.uniform(-0.8, 0.8, size=2)
        return self._obs(), {}

    def _obs(self):
        return np.array([self.t / 10, *self.xy], dtype=np.float32)

    @staticmethod
    def best_action(obs: np.ndarray) -> np.ndarray:
        """The action that earns reward 0, for observations ``(B, 3)``."""
        return np.stack([obs[:, 1], 2 + 2 * obs[:, 2]], axis=1).astype(np.float32)

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        x, y = (float(v) for v in self._obs()[1:])  # the float32 values the policy saw
        reward = -(abs(a[0] - x) + abs(a[1] - (2 + 2 * y)) / 2)
        self.t += 1
        self.xy = self.np_random.uniform(-0.8, 0.8, size=2)
        return self._obs(), float(reward), False, self.t >= 10, {}


if "ToyBox-v0" not in gym.registry:
    gym.register("ToyBox-v0", entry_point=ToyBoxEnv, max_episode_steps=10)
