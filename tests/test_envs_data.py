"""Environment checks, dataset files, seeds and devices: bad input is a ConfigError naming what to fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rl_lab.collect import collect
from rl_lab.data import Dataset, load_dataset
from rl_lab.envs import env_info, make_vec_env
from rl_lab.errors import ConfigError
from rl_lab.pipeline import BEHAVIOUR, COLLECT, EVAL, RENDER, TRAIN
from rl_lab.utils import derive_seed, resolve_device


@pytest.mark.parametrize(
    "env_id,needle",
    [
        ("NoSuchEnv-v0", "not a registered gymnasium environment"),
        ("CartPol-v1", "Did you mean CartPole-v1"),
        ("rl_lab_test/Continuous-v0", "infinite bounds"),
        ("rl_lab_test/MultiDiscrete-v0", "MultiDiscrete action space"),
        ("rl_lab_test/Image-v0", "image"),
        ("rl_lab_test/Dict-v0", "Dict observation space"),
    ],
)
def test_unsupported_envs_are_refused_clearly(env_id, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        env_info(env_id)
    assert f"env.id={env_id!r}" in str(e.value)


def test_supported_env_info():
    info = env_info("CartPole-v1")
    assert (info.obs_dim, info.n_actions, info.max_episode_steps, info.reward_threshold) == (4, 2, 500, 475.0)
    assert env_info("Acrobot-v1").n_actions == 3


def test_dataset_roundtrip_is_exact_and_atomic(tmp_path):
    venv = make_vec_env("CartPole-v1", 16, 500)
    ds, _ = collect(venv, np.random.default_rng(0), 100, max_steps=500, seed=0, min_score=20)
    ds.meta.update(env_id="CartPole-v1")
    path = ds.save(tmp_path / "dataset.npz")
    back = load_dataset(path)
    assert back.content_hash() == ds.content_hash() and back.meta["env_id"] == "CartPole-v1"
    with np.load(path, allow_pickle=False) as f:  # plain arrays, no pickle needed
        assert f["obs"].dtype == np.float32 and json.loads(str(f["meta"]))["format"] == "rl_lab.dataset/1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.npz"]


def test_bad_dataset_files(tmp_path):
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    good = Dataset(
        np.zeros((2, 4), np.float32),
        np.zeros(2, np.int64),
        np.ones(1),
        np.ones(1, np.int64),
        np.ones(1, bool),
        {"env_id": "CartPole-v1"},
    ).save(tmp_path / "good.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:100])
    for name, needle in (
        ("missing.npz", "no such file"),
        ("garbage.npz", "not a readable"),
        ("foreign.npz", "not a readable"),
        ("truncated.npz", "not a readable"),
    ):
        with pytest.raises(ConfigError, match=needle) as e:
            load_dataset(tmp_path / name)
        assert "collector.dataset=" in str(e.value)


def test_seed_streams_are_disjoint():
    seeds = {
        stage: {derive_seed(0, stage, k) for k in range(50)} for stage in (COLLECT, BEHAVIOUR, TRAIN, EVAL, RENDER)
    }
    everything = set().union(*seeds.values())
    assert len(everything) == 250  # no evaluation seed is ever a collection seed
    assert derive_seed(0, EVAL, 0) != derive_seed(1, EVAL, 0)


def test_device_choice():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device='cuda'.*device=auto"):
            resolve_device("cuda")
