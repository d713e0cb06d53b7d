"""Full episodes in the dataset (rewards, terminations, final observations), and Minari export / import."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from rl_lab.collect import collect
from rl_lab.data import DATASET_FORMAT, Dataset, load_dataset
from rl_lab.envs import envpool_ids, make_vec_env
from rl_lab.errors import ConfigError
from rl_lab.policy import random_act_fn

HAS_MINARI = importlib.util.find_spec("minari") is not None and importlib.util.find_spec("h5py") is not None
NEEDS_MINARI = pytest.mark.skipif(not HAS_MINARI, reason="minari / h5py not installed (the minari extra)")
THETA = 12 * 2 * math.pi / 360  # CartPole's pole-angle limit


def parity_behaviour(obs: np.ndarray) -> np.ndarray:
    return (obs[:, 0].astype(np.int64) % 2).astype(np.int64)


def episode_bounds(ds: Dataset) -> np.ndarray:
    return np.r_[0, np.cumsum(ds.episode_lengths[ds.kept])]


def check_rewards_sum_to_returns(ds: Dataset) -> None:
    assert ds.has_transitions
    assert ds.rewards.shape == ds.actions.shape and ds.rewards.dtype == np.float64
    assert ds.terminated.shape == (ds.kept_episodes,) and ds.terminated.dtype == bool
    assert ds.final_obs.shape == (ds.kept_episodes, ds.obs.shape[1]) and ds.final_obs.dtype == np.float32
    bounds = episode_bounds(ds)
    sums = [float(np.cumsum(ds.rewards[a:b])[-1]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    np.testing.assert_array_equal(sums, ds.episode_returns[ds.kept])  # in step order: the collector's own sum


# ----------------------------------------------------------------------------------- full episodes


@pytest.mark.parametrize("num_envs", [1, 3, 16])
@pytest.mark.parametrize("chunk", [1, 7, 64])
@pytest.mark.parametrize("max_steps", [50, 5])
def test_fixed_length_env_records_rewards_terminations_and_final_obs(num_envs, chunk, max_steps):
    """FixedLength: obs = [t, L], reward 1, terminated at t == L; truncated at max_steps when L is longer."""
    venv = make_vec_env("rl_lab_test/FixedLength-v0", num_envs, max_steps=max_steps)
    ds, _ = collect(venv, parity_behaviour, 101, max_steps=max_steps, seed=3, min_score=3, chunk=chunk)
    check_rewards_sum_to_returns(ds)
    np.testing.assert_array_equal(ds.rewards, 1.0)
    bounds = episode_bounds(ds)
    for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        length, n = int(ds.obs[a, 1]), b - a
        assert n == min(length, max_steps)
        assert bool(ds.terminated[j]) == (length <= max_steps)  # ends by termination unless truncated first
        np.testing.assert_array_equal(ds.final_obs[j], [n, length])  # the obs its last step returned
    if max_steps == 50:
        assert ds.terminated.all()
    else:
        assert not ds.terminated.all() and ds.terminated.any()


@pytest.mark.parametrize("behaviour", ["generator", "act_fn"])
@pytest.mark.parametrize("rule", [{"min_score": 25}, {"top_fraction": 0.3}])
def test_cartpole_transitions_are_the_same_with_narrowing(behaviour, rule):
    """Narrowed native CartPole vs gymnasium's CartPoleVectorEnv stepping every sub-env: same transitions."""

    def run(venv):
        rng = np.random.default_rng(4)
        act = rng if behaviour == "generator" else random_act_fn(2, rng)
        return collect(venv, act, 1500, max_steps=500, seed=9, **rule)[0]

    native = run(make_vec_env("CartPole-v1", 500, 500, precision="float64"))
    plain = run(gym.make_vec("CartPole-v1", num_envs=500, vectorization_mode="vector_entry_point"))
    for name in ("obs", "actions", "rewards", "terminated", "final_obs"):
        np.testing.assert_array_equal(getattr(native, name), getattr(plain, name), err_msg=name)
    check_rewards_sum_to_returns(native)
    lengths = native.episode_lengths[native.kept]
    np.testing.assert_array_equal(native.terminated, lengths < 500)
    final = native.final_obs.astype(np.float64)
    assert np.all((np.abs(final[:, 0]) > 2.4) | (np.abs(final[:, 2]) > THETA))  # the pole fell or the cart left
    last = native.obs[episode_bounds(native)[1:] - 1].astype(np.float64)
    assert np.all((np.abs(last[:, 0]) <= 2.4) & (np.abs(last[:, 2]) <= THETA))  # the last input was still alive


@pytest.mark.parametrize(
    "backend", ["native", pytest.param("envpool", marks=pytest.mark.skipif(envpool_ids() is None, reason="no envpool"))]
)
def test_cartpole_truncation_is_recorded(backend):
    """max_steps=20: episodes that reach it are truncated, unless their 20th step also terminated them."""
    venv = make_vec_env("CartPole-v1", 32, 20, backend=backend)
    ds, _ = collect(venv, np.random.default_rng(0), 300, max_steps=20, seed=1, top_fraction=1.0)
    check_rewards_sum_to_returns(ds)
    lengths = ds.episode_lengths[ds.kept]
    final = ds.final_obs.astype(np.float64)
    fell = (np.abs(final[:, 0]) > 2.4) | (np.abs(final[:, 2]) > THETA)
    if backend == "native":  # gymnasium's rule: a step that both ends the episode and hits the limit terminates it
        np.testing.assert_array_equal(ds.terminated, fell)
    else:  # EnvPool reports such a step as truncated only: what the env said is recorded, not re-derived
        np.testing.assert_array_equal(ds.terminated, fell & (lengths < 20))
    assert np.all(ds.terminated[lengths < 20]) and not np.all(ds.terminated[lengths == 20])


@pytest.mark.parametrize("env_id,episodes", [("CartPole-v1", 20), ("Acrobot-v1", 2), ("LunarLander-v3", 6)])
def test_transitions_are_gymnasiums_bit_for_bit(env_id, episodes):
    """One gymnasium sub-env: rewards, flags and final observations are what gymnasium.make(id) replays."""
    limit = gym.spec(env_id).max_episode_steps
    venv = make_vec_env(env_id, 1, limit, backend="gymnasium")
    ds, _ = collect(venv, np.random.default_rng(3), episodes, max_steps=limit, seed=3, top_fraction=1.0)
    venv.close()
    check_rewards_sum_to_returns(ds)
    env = gym.make(env_id)
    obs, _ = env.reset(seed=3)
    bounds = episode_bounds(ds)
    for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        for i in range(a, b):
            np.testing.assert_array_equal(ds.obs[i], obs.astype(np.float32))
            obs, reward, term, trunc, _ = env.step(np.int64(ds.actions[i]))
            assert ds.rewards[i] == reward
            assert (term or trunc) == (i == b - 1)
        assert bool(ds.terminated[j]) == bool(term) and (term or trunc)
        np.testing.assert_array_equal(ds.final_obs[j], obs.astype(np.float32))
        obs, _ = env.reset()
    env.close()


def test_old_dataset_files_still_load(tmp_path):
    """A dataset.npz written before the transition arrays existed loads, without them; new files round-trip."""
    venv = make_vec_env("CartPole-v1", 16, 500)
    ds, _ = collect(venv, np.random.default_rng(0), 100, max_steps=500, seed=0, min_score=20)
    ds.meta.update(env_id="CartPole-v1")
    old = tmp_path / "old.npz"
    meta = json.dumps({"format": DATASET_FORMAT, **ds.meta}, sort_keys=True)
    old_names = ("obs", "actions", "episode_returns", "episode_lengths", "kept")
    np.savez_compressed(old, meta=np.array(meta), **{k: getattr(ds, k) for k in old_names})  # the old writer
    back = load_dataset(old)
    assert not back.has_transitions and back.rewards is None and back.terminated is None and back.final_obs is None
    np.testing.assert_array_equal(back.obs, ds.obs)
    np.testing.assert_array_equal(back.actions, ds.actions)
    assert back.meta["env_id"] == "CartPole-v1"

    new = load_dataset(ds.save(tmp_path / "new.npz"))
    assert new.has_transitions and new.content_hash() == ds.content_hash() != back.content_hash()
    for name in ("rewards", "terminated", "final_obs"):
        np.testing.assert_array_equal(getattr(new, name), getattr(ds, name))
    with np.load(tmp_path / "new.npz") as f:
        bad = {k: f[k] for k in f.files}
    bad["final_obs"] = bad["final_obs"][:-1]
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ConfigError, match="inconsistent shapes"):
        load_dataset(tmp_path / "bad.npz")


# ----------------------------------------------------------------------------------- Minari


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def cartpole_dataset(tmp_path, episodes=200, min_score=30):
    venv = make_vec_env("CartPole-v1", 32, 500)
    ds, _ = collect(venv, np.random.default_rng(0), episodes, max_steps=500, seed=5, min_score=min_score)
    ds.meta.update(env_id="CartPole-v1", round=0, behaviour="random")
    return ds, ds.save(tmp_path / "dataset.npz")


@NEEDS_MINARI
def test_export_reads_back_the_same_episodes(tmp_path, minari_root):
    import minari

    from rl_lab.minari_io import main

    ds, path = cartpole_dataset(tmp_path)
    assert main([str(path), "--id", "test/cartpole-v0", "--author", "rl_lab tests"]) == 0
    md = minari.load_dataset("test/cartpole-v0")
    assert md.total_episodes == ds.kept_episodes and md.total_steps == ds.samples
    assert md.env_spec.id == "CartPole-v1" and md.env_spec.max_episode_steps == 500
    bounds = episode_bounds(ds)
    for j, ep in enumerate(md.iterate_episodes()):
        a, b = bounds[j], bounds[j + 1]
        np.testing.assert_array_equal(ep.observations, np.concatenate([ds.obs[a:b], ds.final_obs[j : j + 1]]))
        np.testing.assert_array_equal(ep.actions, ds.actions[a:b])
        np.testing.assert_array_equal(ep.rewards, ds.rewards[a:b])
        np.testing.assert_array_equal(ep.terminations, np.arange(b - a) == b - a - 1)  # CartPole: all fell
        assert not ep.truncations.any()
        assert ep.rewards.sum() == ds.episode_returns[ds.kept][j]
    meta = md.storage.metadata
    rl = meta["rl_lab"]
    assert (rl["min_score"], rl["top_fraction"], rl["seed"], rl["env_id"]) == (30, None, 5, "CartPole-v1")
    assert rl["episodes"] == 200 and rl["kept_episodes"] == ds.kept_episodes
    assert rl["dataset_sha256"] == ds.content_hash() and rl["max_steps"] == 500
    assert "min_score=30" in meta["algorithm_name"] and "seed 5" in meta["description"]
    assert meta["author"] == {"rl_lab tests"}


@NEEDS_MINARI
def test_export_keeps_truncations_and_the_step_limit(tmp_path, minari_root):
    import minari

    from rl_lab.minari_io import export_minari

    venv = make_vec_env("CartPole-v1", 16, 20)
    ds, _ = collect(venv, np.random.default_rng(0), 100, max_steps=20, seed=1, top_fraction=1.0)
    ds.meta.update(env_id="CartPole-v1")
    export_minari(ds, "short-v1")
    md = minari.load_dataset("short-v1")
    assert md.env_spec.max_episode_steps == 20  # the collection's limit, not CartPole's 500
    ends = [(bool(ep.terminations[-1]), bool(ep.truncations[-1])) for ep in md.iterate_episodes()]
    assert ends == [(bool(t), not t) for t in ds.terminated] and (False, True) in ends


@NEEDS_MINARI
def test_export_bad_input_exits_2_with_one_message(tmp_path, minari_root):
    ds, path = cartpole_dataset(tmp_path, episodes=50, min_score=10)
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    old = tmp_path / "old.npz"
    meta = json.dumps({"format": DATASET_FORMAT, "env_id": "CartPole-v1"})
    np.savez(old, meta=np.array(meta), **{k: getattr(ds, k) for k in ("obs", "actions", "episode_returns",
                                                                       "episode_lengths", "kept")})  # fmt: skip

    def export(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "rl_lab.minari_io", *map(str, args)], capture_output=True, text=True, timeout=120
        )
        return proc.returncode, proc.stdout, proc.stderr

    rc, out, err = export(path, "--id", "test/cp-v0")
    assert rc == 0 and "collector.dataset=minari:test/cp-v0" in out, err
    for args, needle in [
        ((tmp_path / "missing.npz", "--id", "test/cp-v1"), "no such file"),
        ((tmp_path / "garbage.npz", "--id", "test/cp-v1"), "not a readable rl_lab dataset"),
        ((path, "--id", "test/cp-v0"), "already exists"),
        ((path, "--id", "no version"), "not a Minari dataset id"),
        ((path, "--id", "test/cp"), "not a Minari dataset id"),
        ((old, "--id", "test/cp-v2"), "older rl_lab"),
    ]:
        rc, out, err = export(*args)
        assert rc == 2, (args, err)
        assert needle in err and err.startswith("rl-lab-export: ") and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (minari_root / "test" / "cp-v1").exists() and not (minari_root / "test" / "cp-v2").exists()


@NEEDS_MINARI
def test_import_trains_on_a_minari_dataset_with_rl_labs_filter(tmp_path, minari_root):
    import rl_lab
    from rl_lab.minari_io import export_minari, load_minari

    ds, _ = cartpole_dataset(tmp_path, episodes=300, min_score=20)
    export_minari(ds, "test/cartpole-v0")
    back = load_minari("minari:test/cartpole-v0", env_id="CartPole-v1", min_score=20, top_fraction=None)
    for name in ("obs", "actions", "rewards", "terminated", "final_obs"):  # the same episodes, all kept again
        np.testing.assert_array_equal(getattr(back, name), getattr(ds, name), err_msg=name)
    np.testing.assert_array_equal(back.episode_returns, ds.episode_returns[ds.kept])

    top = load_minari("minari:test/cartpole-v0", env_id="CartPole-v1", min_score=None, top_fraction=0.25)
    r = ds.episode_returns[ds.kept]
    assert top.kept_episodes == round(0.25 * r.size)
    assert top.meta["threshold"] == np.sort(r)[::-1][top.kept_episodes - 1]
    assert top.samples == int(top.episode_lengths[top.kept].sum())

    out = tmp_path / "run"
    m = rl_lab.run(
        [
            "collector.dataset=minari:test/cartpole-v0",
            "collector.min_score=40",
            "trainer.epochs=1",
            "evaluator.episodes=3",
            "policy.hidden_sizes=[16]",
        ],
        out_dir=out,
    )
    assert m["status"] == "completed" and m["collect"]["episodes"] == ds.kept_episodes
    assert m["collect"]["kept_episodes"] == int((r >= 40).sum()) and m["collect"]["threshold"] >= 40
    saved = load_dataset(out / "dataset.npz")
    assert saved.meta["behaviour"] == "minari:test/cartpole-v0" and saved.has_transitions
    assert m["train"]["samples"] <= saved.samples == int(ds.episode_lengths[ds.kept][r >= 40].sum())


@NEEDS_MINARI
def test_import_errors_are_clear(tmp_path, minari_root):
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    import rl_lab
    from rl_lab.minari_io import export_minari

    ds, _ = cartpole_dataset(tmp_path, episodes=50, min_score=10)
    export_minari(ds, "test/cartpole-v0")
    rng = np.random.default_rng(0)
    buffers = [
        EpisodeBuffer(
            observations=rng.normal(size=(6, 3)).astype(np.float32),
            actions=rng.uniform(-2, 2, size=(5, 1)).astype(np.float32),
            rewards=rng.normal(size=5),
            terminations=np.zeros(5, bool),
            truncations=np.r_[np.zeros(4, bool), True],
        )
    ]
    with pytest.warns(UserWarning):
        minari.create_dataset_from_buffers("test/pendulum-v0", buffers, env="Pendulum-v1", algorithm_name="x")

    def error(*overrides):
        with pytest.raises(ConfigError) as e:
            rl_lab.run(list(overrides), out_dir=tmp_path / "run")
        return str(e.value)

    msg = error("collector.dataset=minari:test/nope-v0")
    assert "no local Minari dataset 'test/nope-v0'" in msg and str(minari_root) in msg and "test/cartpole-v0" in msg
    msg = error("collector.dataset=minari:test/cartpole-v0", "env.id=Acrobot-v1")
    assert "'CartPole-v1'" in msg and "env.id='Acrobot-v1'" in msg and "set env.id=CartPole-v1" in msg
    msg = error("collector.dataset=minari:test/pendulum-v0")  # Box actions are learnt, but on their own env
    assert "env 'Pendulum-v1'" in msg and "set env.id=Pendulum-v1" in msg
    msg = error("collector.dataset=minari:test/cartpole")  # no -vN
    assert "not a Minari dataset id" in msg
    msg = error("collector.dataset=minari:test/cartpole-v0", "collector.min_score=1000")
    assert "none of the" in msg and "collector.top_fraction" in msg


@NEEDS_MINARI
def test_box_actions_export_and_import_round_trip(tmp_path, minari_root):
    """Pendulum-v1's float actions: exported as Minari reads them, imported back into a run unchanged."""
    import minari

    import rl_lab
    from rl_lab.data import load_dataset
    from rl_lab.minari_io import main

    venv = make_vec_env("Pendulum-v1", 8, 200, backend="gymnasium")
    ds, _ = collect(venv, np.random.default_rng(0), 16, max_steps=200, seed=5, top_fraction=0.25)
    venv.close()
    ds.meta.update(env_id="Pendulum-v1", round=0, behaviour="random")
    path = ds.save(tmp_path / "dataset.npz")
    assert main([str(path), "--id", "test/pendulum-box-v0"]) == 0
    md = minari.load_dataset("test/pendulum-box-v0")
    assert md.total_episodes == 4 and md.total_steps == 800
    first = next(iter(md.iterate_episodes()))
    assert first.actions.shape == (200, 1)
    np.testing.assert_array_equal(first.actions, ds.actions[:200])
    rl_lab.run(
        ["env.id=Pendulum-v1", "collector.dataset=minari:test/pendulum-box-v0", "collector.min_score=null",
         "collector.top_fraction=1.0", "trainer.epochs=1", "evaluator.episodes=2", "env.num_envs=2"],
        out_dir=tmp_path / "run",
    )  # fmt: skip
    back = load_dataset(tmp_path / "run" / "dataset.npz")
    assert back.actions.dtype == np.float32
    np.testing.assert_array_equal(back.actions, ds.actions)
    np.testing.assert_array_equal(back.obs, ds.obs)
