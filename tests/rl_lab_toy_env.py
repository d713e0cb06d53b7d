"""A custom env shipped with the tests, for ``env.id=rl_lab_toy_env:Toy-v0`` (gymnasium's ``module:id`` form).

Importing this module registers ``Toy-v0``: 10 steps, observation ``[t / 10, target]``, reward 1
when the action equals ``target`` (drawn at reset), so random play scores about 5 and the best
policy 10.
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
