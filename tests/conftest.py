"""Shared test fixtures: toy environments whose answers are known in advance, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


class FixedLengthEnv(gym.Env):
    """Each episode lasts L steps, L drawn at reset from 1..19; obs = [step index, L]; reward 1 per step.

    So an episode's score equals its length, the first observation of an episode has step index 0,
    and a recorded (obs, action) pair can be checked against the behaviour that produced it.
    """

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0, 100, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.length = int(self.np_random.integers(1, 20))
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.t, self.length], dtype=np.float32)

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, self.t >= self.length, False, {}


class BestActionEnv(gym.Env):
    """A contextual bandit over 20 steps: reward 1 when the action equals obs[0] > 0.5 (known best action)."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0, 1, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.obs = self.np_random.random(2).astype(np.float32)
        return self.obs, {}

    def step(self, action):
        reward = float(int(action) == int(self.obs[0] > 0.5))
        self.t += 1
        self.obs = self.np_random.random(2).astype(np.float32)
        return self.obs, reward, False, self.t >= 20, {}


class ContinuousEnv(FixedLengthEnv):
    """Same as FixedLengthEnv but with a continuous action space without bounds (must be refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.action_space = spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)


class MultiDiscreteEnv(FixedLengthEnv):
    """A MultiDiscrete action space (must be refused)."""

    def __init__(self, render_mode=None) -> None:
        super().__init__()
        self.action_space = spaces.MultiDiscrete([2, 3])


class ImageEnv(FixedLengthEnv):
    """Image observations (must be refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Box(0, 255, shape=(8, 8, 3), dtype=np.uint8)


class DictEnv(FixedLengthEnv):
    """A Dict observation space (must be refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Dict({"a": spaces.Box(0, 1, shape=(2,))})


for _name, _cls, _limit in (
    ("rl_lab_test/FixedLength-v0", FixedLengthEnv, 50),
    ("rl_lab_test/BestAction-v0", BestActionEnv, 20),
    ("rl_lab_test/Continuous-v0", ContinuousEnv, 50),
    ("rl_lab_test/MultiDiscrete-v0", MultiDiscreteEnv, 50),
    ("rl_lab_test/Image-v0", ImageEnv, 50),
    ("rl_lab_test/Dict-v0", DictEnv, 50),
):
    if _name not in gym.registry:
        gym.register(_name, entry_point=_cls, max_episode_steps=_limit)


def stop_after_epoch(monkeypatch, flag, round_: int = 1, epoch: int = 1) -> None:
    """Make ``pipeline.run`` stop (via ``flag``) once round ``round_`` has checkpointed epoch ``epoch``."""
    import rl_lab.pipeline as pipeline

    real_save = pipeline.save_policy

    def save_policy_then_stop(policy, path, env_id, extra=None):
        out = real_save(policy, path, env_id, extra)
        if (extra or {}).get("round") == round_ and (extra or {}).get("epoch") == epoch:
            flag.stop = True  # fit polls it at the next batch
        return out

    monkeypatch.setattr(pipeline, "save_policy", save_policy_then_stop)


def run_cli(*args: str, cwd: Path, entry: str = "rl_lab", timeout: float = 300, env: dict | None = None):
    """Run ``python -m rl_lab ...`` (or another module) in a subprocess; return the CompletedProcess."""
    full_env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "HYDRA_FULL_ERROR": "0", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR")
    return subprocess.run(
        [sys.executable, "-m", entry, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture
def cli(tmp_path):
    """Run the real CLI inside tmp_path."""

    def _run(*args: str, **kw):
        return run_cli(*args, cwd=tmp_path, **kw)

    return _run


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One torch thread per test process, as every rl-lab job runs (app.setup_job: threads=1).

    pytest -n 2 runs two processes on two cores; with torch's default of one thread per core each,
    small-model training slows down several times over (measured: a 3-round ToyBox test, 51 s -> 2.4 s).
    """
    import torch

    torch.set_num_threads(1)
    yield


def agree(a: np.ndarray, b: np.ndarray, sigmas: float = 5.0) -> bool:
    """Means within ``sigmas`` standard errors of their difference."""
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return bool(abs(a.mean() - b.mean()) <= sigmas * se + 1e-9)


def rl_lab_random(env_id: str, backend: str, episodes: int, num_envs: int, seed: int):
    """Every uniformly random episode rl_lab collects of ``env_id`` on ``backend`` (all kept), at the env's limit."""
    from rl_lab.collect import collect
    from rl_lab.envs import make_vec_env

    limit = gym.spec(env_id).max_episode_steps
    venv = make_vec_env(env_id, num_envs, limit, backend=backend, num_threads=2)
    try:
        ds, _ = collect(venv, np.random.default_rng(seed), episodes, max_steps=limit, seed=seed, top_fraction=1.0)
    finally:
        venv.close()
    return ds
