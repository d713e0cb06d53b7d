"""Box (continuous) action spaces: statistics, refusals, the regression head, data against gymnasium."""

from __future__ import annotations

import logging
import warnings

import gymnasium as gym
import numpy as np
import pytest
import rl_lab_toy_env  # noqa: F401  (registers ToyBox-v0)
import torch
from conftest import agree, rl_lab_random
from gymnasium import spaces

from rl_lab.actions import ActionSpec, BoxStats, format_box_stats
from rl_lab.collect import collect
from rl_lab.config import CollectorConfig, TrainerConfig, _validate_collector
from rl_lab.envs import check_spaces, env_info, envpool_ids, make_vec_env
from rl_lab.errors import ConfigError
from rl_lab.fast_mlp import supports
from rl_lab.policy import MLPPolicy, act_fn, check_head, load_policy, save_policy
from rl_lab.train import fit

HAS_ENVPOOL = envpool_ids() is not None
OBS = spaces.Box(-1, 1, shape=(3,), dtype=np.float32)


# --- statistics on known actions ------------------------------------------------------------------


def test_box_stats_on_known_actions():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 10.0])
    a = np.array([[-2.0, 0.0], [-1.97, 5.0], [0.0, 9.95], [1.0, 10.0], [2.0, 3.0]])
    s = BoxStats.of(a, low, high).summary()
    np.testing.assert_allclose(s["action_mean"], a.mean(axis=0))
    np.testing.assert_allclose(s["action_std"], a.std(axis=0))
    # within 1% of the range from a bound: dim 0 band 0.04 (-2, -1.97, 2); dim 1 band 0.1 (0, 9.95, 10)
    assert s["action_saturation"] == [0.6, 0.6]
    counts = np.array(s["action_histogram"]["counts"])
    assert counts.shape == (2, 20) and counts.sum(axis=1).tolist() == [5, 5]
    assert counts[0, 0] == 2 and counts[0, 19] == 1  # -2 and -1.97 in the first bin; the upper bound in the last
    assert s["action_histogram"]["edges"][1][:3] == [0.0, 0.5, 1.0]
    assert "dim 1: mean +5.590" in format_box_stats(s)


def test_box_stats_streaming_equals_one_batch():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, size=(1000, 3))
    whole = BoxStats.of(a, -np.ones(3), np.ones(3))
    parts = BoxStats(-np.ones(3), np.ones(3))
    for chunk in np.array_split(a, 7):
        part = BoxStats.of(chunk, -np.ones(3), np.ones(3))
        parts.merge(part)
    assert parts.count == 1000
    np.testing.assert_allclose(parts.mean, whole.mean)
    np.testing.assert_allclose(parts.std, whole.std)
    assert (parts.counts == whole.counts).all() and (parts.saturated == whole.saturated).all()


# --- spaces rl_lab refuses, with what to do ---------------------------------------------------------


@pytest.mark.parametrize(
    "space, words",
    [
        (spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32), ["infinite bounds", "RescaleAction"]),
        (spaces.Box(-1, 1, shape=(2, 2), dtype=np.float32), ["shape (2, 2)", "flat action vector"]),
        (spaces.MultiDiscrete([3, 2]), ["MultiDiscrete", "one Discrete"]),
        (spaces.Dict({"a": spaces.Discrete(2)}), ["Dict", "flatten them into a Box"]),
        (spaces.Discrete(3, start=1), ["starting at 1"]),
    ],
)
def test_unsupported_action_spaces_are_refused_with_a_fix(space, words):
    with pytest.raises(ConfigError) as e:
        check_spaces("My-v0", OBS, space)
    assert "env.id='My-v0'" in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_box_and_discrete_specs():
    _, box = check_spaces("X", OBS, spaces.Box(np.array([-1, 0]), np.array([1, 4]), dtype=np.float32))
    assert box.continuous and box.dim == 2 and box.low == (-1.0, 0.0) and box.high == (1.0, 4.0)
    assert box.store_dtype() == np.float32 and box.row_shape() == (2,)
    np.testing.assert_allclose(box.from_unit(box.to_unit(np.array([[0.5, 3.0]]))), [[0.5, 3.0]])
    _, disc = check_spaces("X", OBS, spaces.Discrete(3))
    assert not disc.continuous and disc.dim == 3 and disc.store_dtype() == np.uint8
    info = env_info("Pendulum-v1")
    assert info.continuous and info.n_actions == 1 and info.action.low == (-2.0,) and info.action.high == (2.0,)


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("noise_std", 0.0, "must be a positive number"),
        ("noise_std", -0.1, "must be a positive number"),
        ("noise_std", float("nan"), "must be a positive number"),
        ("noise_decay", 0.0, "outside (0, 1]"),
        ("noise_decay", 1.5, "outside (0, 1]"),
    ],
)
def test_bad_noise_settings_are_refused(key, value, words):
    with pytest.raises(ConfigError) as e:
        _validate_collector(CollectorConfig(**{key: value}))
    assert f"collector.{key}=" in str(e.value) and words in str(e.value)


# --- the regression head ------------------------------------------------------------------------------


def box_policy(hidden=(32, 32), dropout=0.0) -> MLPPolicy:
    torch.manual_seed(0)
    return MLPPolicy(3, 2, list(hidden), "relu", dropout, action_low=[-1.0, 0.0], action_high=[1.0, 4.0])


def test_mean_action_is_inside_the_bounds_and_greedy_acts_it():
    policy = box_policy()
    with torch.no_grad():
        policy.net[-1].bias.copy_(torch.tensor([50.0, -50.0]))  # saturate the tanh both ways
    obs = np.random.default_rng(0).uniform(-1, 1, (8, 3)).astype(np.float32)
    mean = policy.mean_action(torch.from_numpy(obs)).detach().numpy()
    np.testing.assert_allclose(mean, np.tile([1.0, 0.0], (8, 1)), atol=1e-6)
    greedy = act_fn(policy, greedy=True)(obs)
    assert greedy.dtype == np.float32 and greedy.shape == (8, 2)
    np.testing.assert_array_equal(greedy, np.clip(mean, [-1, 0], [1, 4]).astype(np.float32))


def test_random_act_fn_draws_box_actions_uniformly_in_the_bounds():
    from rl_lab.policy import random_act_fn

    spec = ActionSpec.box([-2.0, 0.0], [2.0, 1.0])
    a = random_act_fn(spec, np.random.default_rng(0))(np.zeros((5000, 3), dtype=np.float32))
    assert a.dtype == np.float32 and a.shape == (5000, 2)
    assert (a >= spec.low_array).all() and (a <= spec.high_array).all()
    np.testing.assert_allclose(a.mean(axis=0), [0.0, 0.5], atol=0.05)
    d = random_act_fn(ActionSpec(n=3), np.random.default_rng(0))(np.zeros((100, 3), dtype=np.float32))
    np.testing.assert_array_equal(d, random_act_fn(3, np.random.default_rng(0))(np.zeros((100, 3))))


def test_noisy_behaviour_has_the_asked_spread_in_half_ranges_and_is_clipped():
    policy = box_policy()
    with torch.no_grad():
        policy.net[-1].weight.zero_()
        policy.net[-1].bias.zero_()  # mean action: the middle of the box (0, 2)
    obs = np.zeros((20000, 3), np.float32)
    a = act_fn(policy, greedy=False, rng=np.random.default_rng(1), noise_std=0.2)(obs)
    # half-ranges 1 and 2: standard deviations 0.2 and 0.4
    np.testing.assert_allclose(a.std(axis=0), [0.2, 0.4], rtol=0.03)
    wide = act_fn(policy, greedy=False, rng=np.random.default_rng(1), noise_std=3.0)(obs)
    assert wide.min(axis=0).tolist() == [-1.0, 0.0] and wide.max(axis=0).tolist() == [1.0, 4.0]
    again = act_fn(policy, greedy=False, rng=np.random.default_rng(1), noise_std=0.2)(obs)
    np.testing.assert_array_equal(a, again)  # same rng seed, same actions


def test_box_checkpoint_round_trip_and_head_check(tmp_path):
    policy = box_policy()
    path = save_policy(policy, tmp_path / "policy.pt", "rl_lab_toy_env:ToyBox-v0")
    loaded, _ = load_policy(path)
    assert loaded.continuous and loaded.action == policy.action
    obs = torch.zeros(2, 3)
    assert torch.equal(loaded(obs), policy.eval()(obs))
    check_head(loaded, policy.action, "rl_lab_toy_env:ToyBox-v0", path)  # fits: no error
    with pytest.raises(ConfigError, match="holds a Box head .* but env.id='CartPole-v1' has Discrete actions"):
        check_head(loaded, ActionSpec(n=2), "CartPole-v1", path)
    discrete = MLPPolicy(3, 2, [8])
    with pytest.raises(ConfigError, match="holds a Discrete head .* has Box actions"):
        check_head(discrete, policy.action, "ToyBox-v0", path)


def toy_box_data(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    obs = np.concatenate([rng.uniform(0, 1, (n, 1)), rng.uniform(-0.8, 0.8, (n, 2))], axis=1).astype(np.float32)
    from rl_lab_toy_env import ToyBoxEnv

    return obs, ToyBoxEnv.best_action(obs)


def test_fit_regresses_the_kept_actions():
    obs, actions = toy_box_data()
    policy = box_policy(hidden=(64, 64))
    result = fit(policy, obs, actions, TrainerConfig(epochs=15, lr=3e-3, progress=False), seed=0)
    hist = result.history
    assert "train/accuracy" not in hist[-1] and "val/accuracy" not in hist[-1]
    assert hist[-1]["val/loss"] < 0.1 * hist[0]["train/loss"]
    pred = act_fn(policy)(obs[:500])
    assert np.abs(pred - actions[:500]).mean() < 0.1  # in action units (dim 1 has range 4)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_fast_step_equals_autograd_for_the_box_head(dropout):
    obs, actions = toy_box_data(600)
    cfg = TrainerConfig(epochs=2, batch_size=64, lr=1e-3, progress=False)
    a, b = box_policy(dropout=dropout), box_policy(dropout=dropout)
    assert supports(a)
    fit(a, obs, actions, cfg, seed=3)
    fit(b, obs, actions, TrainerConfig(**{**cfg.__dict__, "fast": False}), seed=3)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


# --- the data, against gymnasium's own env ----------------------------------------------------------------


def test_pendulum_gymnasium_backend_is_gymnasium_bit_for_bit():
    """One sub-env: the float32 actions stored are the ones that, replayed in gymnasium.make, give the data."""
    ds = rl_lab_random("Pendulum-v1", "gymnasium", 3, num_envs=1, seed=3)
    assert ds.actions.dtype == np.float32 and ds.actions.shape == (600, 1)
    assert ds.actions.min() >= -2.0 and ds.actions.max() <= 2.0
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=3)
    row = 0
    for k in range(3):
        total = 0.0
        for i in range(200):
            np.testing.assert_array_equal(ds.obs[row + i], obs.astype(np.float32))
            obs, r, term, trunc, _ = env.step(ds.actions[row + i])
            total += float(r)
        assert trunc and not term and total == ds.episode_returns[k]
        row += 200
        obs, _ = env.reset()
    env.close()


BOX_ENVS = {"Pendulum-v1": 200, "MountainCarContinuous-v0": 40, "LunarLanderContinuous-v3": 200, "Hopper-v5": 300}


def box_reference(env_id, episodes, seed):
    """Uniform random episodes of gymnasium.make(env_id), one after the other: (returns, lengths)."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    env.reset(seed=seed)
    returns, lengths = [], []
    for _ in range(episodes):
        total, steps, done = 0.0, 0, False
        while not done:
            a = (low + rng.random(low.shape, dtype=np.float32) * (high - low)).astype(np.float32)
            _, r, term, trunc, _ = env.step(a)
            total, steps, done = total + float(r), steps + 1, term or trunc
        returns.append(total)
        lengths.append(steps)
        env.reset()
    env.close()
    return np.array(returns), np.array(lengths, dtype=np.float64)


@pytest.mark.skipif(not HAS_ENVPOOL, reason="envpool not installed")
@pytest.mark.parametrize("env_id", list(BOX_ENVS))
def test_box_envs_on_envpool_match_gymnasium_in_distribution_and_are_deterministic(env_id):
    episodes = BOX_ENVS[env_id]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = rl_lab_random(env_id, "envpool", episodes, num_envs=32, seed=5)
        b = rl_lab_random(env_id, "envpool", episodes, num_envs=32, seed=5)
    assert a.content_hash() == b.content_hash()
    ref_returns, ref_lengths = box_reference(env_id, episodes, seed=11)
    assert agree(a.episode_returns, ref_returns), (a.episode_returns.mean(), ref_returns.mean())
    assert agree(a.episode_lengths.astype(np.float64), ref_lengths), (a.episode_lengths.mean(), ref_lengths.mean())
    assert a.samples == int(a.episode_lengths.sum())


@pytest.mark.parametrize("env_id", ["MountainCarContinuous-v0", "LunarLanderContinuous-v3", "Hopper-v5"])
def test_box_envs_gymnasium_backend_is_gymnasium_bit_for_bit(env_id):
    ds = rl_lab_random(env_id, "gymnasium", 2, num_envs=1, seed=3)
    env = gym.make(env_id)
    obs, _ = env.reset(seed=3)
    row = 0
    for k in range(2):
        total, length = 0.0, int(ds.episode_lengths[k])
        for i in range(length):
            np.testing.assert_array_equal(ds.obs[row + i], obs.astype(np.float32))
            obs, r, term, trunc, _ = env.step(ds.actions[row + i])
            total += float(r)
            assert (term or trunc) == (i == length - 1)
        assert total == ds.episode_returns[k]
        row += length
        obs, _ = env.reset()
    env.close()


# --- ranking by advantage over episodes that started alike ----------------------------------------------


def test_start_advantage_keeps_skill_not_lucky_starts():
    """Returns = 100 * start + 1 * skill: the plain ranking keeps good starts, the advantage keeps the skilled."""
    from rl_lab.collect import _select, start_advantage

    rng = np.random.default_rng(0)
    start = rng.uniform(0, 1, size=(2000, 1)).astype(np.float32)
    skill = rng.integers(0, 2, size=2000)
    returns = 100.0 * start[:, 0] + skill
    by_return, _ = _select(returns, None, 0.2)
    by_advantage, threshold = _select(returns, None, 0.2, start_advantage(start, returns, 20))
    assert skill[by_return].mean() < 0.7  # mostly the best starts, skilled or not
    assert skill[by_advantage].mean() > 0.95  # the skilled, from starts all over the range
    assert start[by_advantage, 0].min() < 0.05 and start[by_advantage, 0].max() > 0.95
    assert threshold == returns[by_advantage].min()  # "threshold" stays the lowest kept return


def test_collect_ranks_by_advantage_deterministically():
    venv = make_vec_env("Pendulum-v1", 50, 200, backend="gymnasium")
    kw = dict(max_steps=200, seed=0, top_fraction=0.1, rank_by="advantage", neighbours=10)
    a, _ = collect(venv, np.random.default_rng(0), 200, **kw)
    b, _ = collect(venv, np.random.default_rng(0), 200, **kw)
    venv.close()
    assert a.content_hash() == b.content_hash() and a.kept_episodes == 20
    assert a.meta["rank_by"] == "advantage" and a.meta["neighbours"] == 10
    with pytest.raises(ValueError, match="advantage"):
        collect(make_vec_env("Pendulum-v1", 4, 200), np.random.default_rng(0), 4, max_steps=200, seed=0,
                min_score=-500, rank_by="advantage")  # fmt: skip


def test_advantage_needs_top_fraction():
    with pytest.raises(ConfigError, match="collector.rank_by=advantage ranks episodes for collector.top_fraction"):
        _validate_collector(CollectorConfig(rank_by="advantage"))
    _validate_collector(CollectorConfig(rank_by="advantage", min_score=None, top_fraction=0.1))


# --- whole runs ---------------------------------------------------------------------------------------------


def toybox_config(rounds: int, **collector):
    from rl_lab.config import Config, EnvConfig, EvaluatorConfig, PolicyConfig

    return Config(
        env=EnvConfig(id="rl_lab_toy_env:ToyBox-v0", num_envs=100),
        collector=CollectorConfig(
            **{
                "episodes": 400,
                "min_score": None,
                "top_fraction": 0.1,
                "behaviour": "policy",
                "noise_std": 0.2,
                **collector,
            }
        ),  # fmt: skip
        policy=PolicyConfig(hidden_sizes=[64, 64], dropout=0.0),
        trainer=TrainerConfig(epochs=10, batch_size=64, lr=3e-3, val_fraction=0.1, progress=False),
        evaluator=EvaluatorConfig(episodes=20),
        rounds=rounds,
        seed=0,
    )


def test_rounds_move_the_box_policy_to_the_best_action(tmp_path):
    """ToyBox-v0: random play scores about -12 (the best of 400 random episodes about -6.5); rounds approach 0."""
    from rl_lab.pipeline import run

    metrics = run(toybox_config(rounds=5), tmp_path)
    rounds = metrics["rounds"]
    assert rounds[0]["collect"]["score_max"] > -7.5  # uniform random play in round 0
    assert rounds[0]["collect"]["score_mean"] < -10
    assert rounds[-1]["eval"]["score_mean"] > -2.0, [r["eval"]["score_mean"] for r in rounds]
    assert rounds[-1]["collect"]["score_mean"] > rounds[0]["collect"]["score_mean"] + 5  # noisy policy behaviour
    ev = rounds[-1]["eval"]
    assert "action_balance" not in ev and len(ev["action_mean"]) == 2 and len(ev["action_saturation"]) == 2
    assert 1.5 < ev["action_mean"][1] < 2.5  # the best second action is 2 + 2y, y uniform in [-0.8, 0.8]
    assert sum(ev["action_histogram"]["counts"][0]) == ev["episodes"] * 10
    kept = rounds[-1]["collect"]
    assert len(kept["action_mean"]) == 2 and "action_balance" not in kept
    assert metrics["train"]["train_accuracy"] is None and metrics["train"]["val_loss"] is not None


def test_box_console_names_the_mse_even_without_a_validation_split(tmp_path, caplog):
    from rl_lab.pipeline import run

    cfg = toybox_config(rounds=1, episodes=100)
    cfg.trainer.val_fraction, cfg.trainer.epochs = 0.0, 1
    with caplog.at_level(logging.INFO, logger="rl_lab.pipeline"):
        run(cfg, tmp_path)
    assert "val mse n/a" in caplog.text and "accuracy" not in caplog.text


def test_box_run_is_deterministic_and_resumes_bit_identically(tmp_path, monkeypatch):
    from conftest import stop_after_epoch

    from rl_lab.data import load_dataset
    from rl_lab.pipeline import StopFlag, run

    cfg = toybox_config(rounds=3, noise_decay=0.5)
    full = run(cfg, tmp_path / "a")
    again = run(toybox_config(rounds=3, noise_decay=0.5), tmp_path / "c")
    assert [r["weights_sha256"] for r in full["rounds"]] == [r["weights_sha256"] for r in again["rounds"]]
    ds = load_dataset(tmp_path / "a" / "round_1" / "dataset.npz")
    assert ds.actions.dtype == np.float32 and ds.actions.shape == (ds.samples, 2)
    flag = StopFlag()
    stop_after_epoch(monkeypatch, flag)  # round 1 stops after its first epoch
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "b", stop=flag)
    monkeypatch.undo()
    cfg.resume = str(tmp_path / "b")
    resumed = run(cfg, tmp_path / "b")
    for x, y in zip(full["rounds"], resumed["rounds"], strict=True):
        assert x["dataset_sha256"] == y["dataset_sha256"] and x["weights_sha256"] == y["weights_sha256"]


def test_box_tensorboard_scalars_and_histograms(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rl_lab.pipeline import run

    run(toybox_config(rounds=2), tmp_path)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"histograms": 0}).Reload()
    scalars = set(acc.Tags()["scalars"])
    for name in ("eval/action_mean/0", "eval/action_std/1", "eval/action_saturation/1", "round/action_mean/1"):
        assert name in scalars, name
    assert not any(t.startswith("eval/action_balance") for t in scalars)
    assert {"eval/actions/0", "eval/actions/1"} <= set(acc.Tags()["histograms"])


def test_cli_runs_the_one_shot_recipe_on_pendulum(cli, tmp_path):
    """The issue's command, with a tiny budget: continuous actions from the command line, and rl-lab-eval on them."""
    r = cli(
        "env.id=Pendulum-v1", "collector.min_score=null", "collector.top_fraction=0.1", "collector.episodes=200",
        "env.num_envs=50", "trainer.epochs=1", "evaluator.episodes=5", "hydra.run.dir=run",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "val mse" in out and "dim 0: mean" in out and "at a bound" in out
    import json

    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert ev["env_id"] == "Pendulum-v1" and len(ev["action_mean"]) == 1 and ev["length_mean"] == 200
    report = (tmp_path / "run" / "report.md").read_text()
    assert "validation MSE" in report and "| evaluation | 0 |" in report
    e = cli("checkpoint=run/policy.pt", "evaluator.episodes=3", entry="rl_lab.eval")
    assert e.returncode == 0, e.stderr
    bad = cli("checkpoint=run/policy.pt", "env.id=CartPole-v1", entry="rl_lab.eval")
    assert bad.returncode == 2 and "env.id='CartPole-v1'" in bad.stderr and "Traceback" not in bad.stderr


# --- policy.obs_norm --------------------------------------------------------------------------------------------


def test_standardize_layer_and_checkpoint(tmp_path):
    from rl_lab.policy import Standardize

    obs = np.array([[0.0, -0.07, 5.0], [1.0, 0.07, 5.0]], np.float32)
    policy = MLPPolicy(3, 2, [8], obs_norm=True)
    policy.fit_obs_norm(obs)
    layer = policy.net[0]
    assert isinstance(layer, Standardize)
    np.testing.assert_allclose(layer.mean.numpy(), [0.5, 0.0, 5.0], atol=1e-7)
    np.testing.assert_allclose(layer.std.numpy(), [0.5, 0.07, 1.0], rtol=1e-6)  # a constant feature keeps 1
    np.testing.assert_allclose(layer(torch.from_numpy(obs)).numpy(), [[-1, -1, 0], [1, 1, 0]], atol=1e-5)
    assert not supports(policy)  # trained by plain autograd
    loaded, _ = load_policy(save_policy(policy, tmp_path / "p.pt", "X"))
    assert torch.equal(loaded.net[0].std, layer.std) and loaded.kwargs["obs_norm"]
    np.testing.assert_array_equal(act_fn(loaded)(obs), policy.eval()(torch.from_numpy(obs)).argmax(1).numpy())


def test_obs_norm_takes_round_0s_statistics_and_resumes_bit_identically(tmp_path, monkeypatch):
    from conftest import stop_after_epoch

    from rl_lab.data import load_dataset
    from rl_lab.pipeline import StopFlag, run

    cfg = toybox_config(rounds=2)
    cfg.policy.obs_norm = True
    full = run(cfg, tmp_path / "a")
    ds = load_dataset(tmp_path / "a" / "round_0" / "dataset.npz")
    final, _ = load_policy(tmp_path / "a" / "policy.pt")
    np.testing.assert_allclose(final.net[0].mean.numpy(), ds.obs.mean(axis=0), rtol=1e-5, atol=1e-6)  # warm start
    flag = StopFlag()
    stop_after_epoch(monkeypatch, flag)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "b", stop=flag)
    monkeypatch.undo()
    cfg.resume = str(tmp_path / "b")
    resumed = run(cfg, tmp_path / "b")
    assert [r["weights_sha256"] for r in full["rounds"]] == [r["weights_sha256"] for r in resumed["rounds"]]


def test_noise_decays_per_round_and_a_sampling_evaluation_uses_noise_std(tmp_path, monkeypatch):
    """Round k >= 1 collects with noise_std * noise_decay^(k-1); evaluator.greedy=false adds collector.noise_std."""
    import rl_lab.pipeline as pipeline

    calls = []
    real = pipeline.act_fn

    def spy(policy, greedy=True, temperature=1.0, rng=None, device="cpu", noise_std=0.0):
        calls.append((greedy, noise_std))
        return real(policy, greedy=greedy, temperature=temperature, rng=rng, device=device, noise_std=noise_std)

    monkeypatch.setattr(pipeline, "act_fn", spy)
    cfg = toybox_config(rounds=3, noise_std=0.4, noise_decay=0.5)
    cfg.evaluator.greedy = False
    pipeline.run(cfg, tmp_path)
    # round 0: its evaluation; rounds 1 and 2: the behaviour (0.4, then 0.4 * 0.5), then the evaluation
    assert calls == [(False, 0.4), (False, 0.4), (False, 0.4), (False, 0.2), (False, 0.4)]


# --- policy.box_head=gaussian -------------------------------------------------------------------------------


def gaussian_policy(hidden=(32, 32)) -> MLPPolicy:
    torch.manual_seed(0)
    bounds = {"action_low": [-1.0, 0.0], "action_high": [1.0, 4.0]}
    return MLPPolicy(3, 2, list(hidden), "relu", 0.0, **bounds, box_head="gaussian")


def set_head(policy: MLPPolicy, means: list[float], log_stds: list[float]) -> None:
    """Outputs independent of the observation: the last layer's bias only."""
    with torch.no_grad():
        policy.net[-1].weight.zero_()
        policy.net[-1].bias.copy_(torch.tensor([*means, *log_stds]))


def test_gaussian_head_outputs_means_then_clamped_log_stds():
    from rl_lab.policy import LOG_STD_MAX, LOG_STD_MIN

    policy = gaussian_policy()
    assert policy.gaussian and policy.net[-1].out_features == 4 and policy.kwargs["box_head"] == "gaussian"
    assert "box_head" not in box_policy().kwargs  # a mean head's checkpoints keep the kwargs they had
    set_head(policy, [0.5, -0.5], [-9.0, 3.0])
    means, log_std = MLPPolicy.split(policy(torch.zeros(5, 3)), gaussian=True)
    assert means.shape == log_std.shape == (5, 2)
    np.testing.assert_allclose(means[0].detach().numpy(), [0.5, -0.5])
    np.testing.assert_allclose(log_std[0].detach().numpy(), [LOG_STD_MIN, LOG_STD_MAX])
    expected = [-1.0 + (np.tanh(0.5) + 1.0), (np.tanh(-0.5) + 1.0) * 2.0]  # low + (tanh(u) + 1) / 2 * range
    np.testing.assert_allclose(policy.mean_action(torch.zeros(1, 3)).detach().numpy()[0], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="needs Box actions"):
        MLPPolicy(3, 2, [8], box_head="gaussian")
    with pytest.raises(ValueError, match="unknown box_head"):
        MLPPolicy(3, 2, [8], action_low=[0, 0], action_high=[1, 1], box_head="beta")


def test_gaussian_nll_is_the_normal_log_likelihood():
    from rl_lab.train import box_loss, gaussian_nll, squashed_mse

    gen = torch.Generator().manual_seed(0)
    out = torch.randn(64, 6, generator=gen) * 2.0  # log-stds beyond the clamp included
    target = torch.rand(64, 3, generator=gen) * 2.0 - 1.0
    means, log_std = out[:, :3], out[:, 3:].clamp(-5.0, 1.0)
    reference = -torch.distributions.Normal(torch.tanh(means), log_std.exp()).log_prob(target).mean()
    torch.testing.assert_close(gaussian_nll(out, target), reference)
    assert box_loss(True) is gaussian_nll and box_loss(False) is squashed_mse


def test_gaussian_behaviour_samples_the_learned_std_plus_noise_std_and_greedy_acts_the_mean():
    policy = gaussian_policy()
    set_head(policy, [0.0, 0.0], [np.log(0.12), np.log(0.12)])  # the middle of the box, std 0.12 half ranges
    obs = np.zeros((20000, 3), np.float32)
    own = act_fn(policy, greedy=False, rng=np.random.default_rng(1), noise_std=0.0)(obs)
    np.testing.assert_allclose(own.mean(axis=0), [0.0, 2.0], atol=0.01)
    np.testing.assert_allclose(own.std(axis=0), [0.12, 0.24], rtol=0.03)  # half ranges 1 and 2
    both = act_fn(policy, greedy=False, rng=np.random.default_rng(1), noise_std=0.16)(obs)
    np.testing.assert_allclose(both.std(axis=0), [0.2, 0.4], rtol=0.03)  # sqrt(0.12^2 + 0.16^2) = 0.2
    greedy = act_fn(policy, greedy=True)(obs[:4])
    np.testing.assert_array_equal(greedy, np.tile(np.float32([0.0, 2.0]), (4, 1)))


def test_gaussian_checkpoint_round_trip(tmp_path):
    policy = gaussian_policy()
    loaded, payload = load_policy(save_policy(policy, tmp_path / "policy.pt", "rl_lab_toy_env:ToyBox-v0"))
    assert loaded.gaussian and payload["kwargs"]["box_head"] == "gaussian"
    obs = torch.randn(4, 3)
    assert torch.equal(loaded(obs), policy.eval()(obs))
    check_head(loaded, policy.action, "rl_lab_toy_env:ToyBox-v0", "policy.pt")  # the same action space: fits


def test_gaussian_rounds_learn_the_toy_and_name_the_nll(tmp_path, caplog):
    """ToyBox-v0 with the Gaussian head: rounds approach the best action as the mean head's do."""
    from rl_lab.pipeline import run

    cfg = toybox_config(rounds=5)
    cfg.policy.box_head = "gaussian"
    with caplog.at_level(logging.INFO, logger="rl_lab.pipeline"):
        metrics = run(cfg, tmp_path)
    rounds = metrics["rounds"]
    assert rounds[0]["collect"]["score_mean"] < -10
    assert rounds[-1]["eval"]["score_mean"] > -2.0, [r["eval"]["score_mean"] for r in rounds]
    assert all(r["train"]["loss"] == "nll" for r in rounds) and "val nll" in caplog.text
    assert "train nll" in (tmp_path / "report.md").read_text()
    final, _ = load_policy(tmp_path / "policy.pt")
    assert final.gaussian


def test_gaussian_run_is_deterministic_and_resumes_bit_identically(tmp_path, monkeypatch):
    from conftest import stop_after_epoch

    from rl_lab.pipeline import StopFlag, run

    def config():
        cfg = toybox_config(rounds=3, episodes=200)
        cfg.policy.box_head, cfg.trainer.epochs = "gaussian", 3
        return cfg

    full = run(config(), tmp_path / "a")
    again = run(config(), tmp_path / "c")
    assert [r["weights_sha256"] for r in full["rounds"]] == [r["weights_sha256"] for r in again["rounds"]]
    flag = StopFlag()
    stop_after_epoch(monkeypatch, flag)
    with pytest.raises(KeyboardInterrupt):
        run(config(), tmp_path / "b", stop=flag)
    monkeypatch.undo()
    cfg = config()
    cfg.resume = str(tmp_path / "b")
    resumed = run(cfg, tmp_path / "b")
    for x, y in zip(full["rounds"], resumed["rounds"], strict=True):
        assert x["dataset_sha256"] == y["dataset_sha256"] and x["weights_sha256"] == y["weights_sha256"]


def test_discrete_metrics_have_no_loss_name(tmp_path):
    from rl_lab.config import Config, EnvConfig, EvaluatorConfig, PolicyConfig
    from rl_lab.pipeline import run

    cfg = Config(
        env=EnvConfig(id="CartPole-v1", num_envs=16),
        collector=CollectorConfig(episodes=32, min_score=None, top_fraction=0.5),
        policy=PolicyConfig(hidden_sizes=[8]),
        trainer=TrainerConfig(epochs=1, progress=False),
        evaluator=EvaluatorConfig(episodes=2),
    )
    metrics = run(cfg, tmp_path)
    assert "loss" not in metrics["rounds"][0]["train"] and "loss" not in metrics["train"]


def test_cli_refuses_the_gaussian_head_on_discrete_actions_before_any_work(cli, tmp_path):
    r = cli("policy.box_head=gaussian", "hydra.run.dir=run")
    assert r.returncode == 2, r.stderr
    assert "policy.box_head='gaussian'" in r.stderr and "env.id='CartPole-v1'" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "round_0").exists() and not (tmp_path / "run" / "tb").exists()
