"""policy.layer_norm: LayerNorm after each hidden Linear, before the activation. It builds, trains
(through autograd: the fast step does not know LayerNorm and falls back), evaluates, saves and
loads, and a run with it resumes bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import stop_after_epoch
from torch import nn

from rl_lab.config import CollectorConfig, Config, EnvConfig, EvaluatorConfig, PolicyConfig, TrainerConfig
from rl_lab.fast_mlp import inference_forward, supports, train_forward
from rl_lab.policy import Dropout, MLPPolicy, act_fn, load_policy, save_policy
from rl_lab.train import fit


def data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    actions = (obs[:, 0] - 0.5 * obs[:, 1] > 0).astype(np.int64)
    return obs, actions


def net(**kw):
    torch.manual_seed(0)
    return MLPPolicy(4, 2, [16, 8], "tanh", kw.pop("dropout", 0.2), layer_norm=True, **kw)


def test_layer_norm_sits_between_each_hidden_linear_and_its_activation():
    layers = list(net().net)
    kinds = [type(m) for m in layers]
    assert kinds == [nn.Linear, nn.LayerNorm, nn.Tanh, Dropout] * 2 + [nn.Linear]
    assert [m.normalized_shape for m in layers if isinstance(m, nn.LayerNorm)] == [(16,), (8,)]
    assert net().kwargs["layer_norm"] is True
    assert MLPPolicy(4, 2, [16]).kwargs["layer_norm"] is False
    assert not any(isinstance(m, nn.LayerNorm) for m in MLPPolicy(4, 2, [16]).modules())


def test_build_policy_and_the_cli_config_carry_the_option():
    from rl_lab.api import compose
    from rl_lab.envs import env_info
    from rl_lab.pipeline import build_policy

    assert compose([]).policy.layer_norm is False
    cfg = compose(["policy.layer_norm=true", "trainer.fast=false"])
    assert cfg.policy.layer_norm is True and cfg.trainer.fast is False
    policy = build_policy(cfg, env_info("CartPole-v1"))
    assert sum(isinstance(m, nn.LayerNorm) for m in policy.modules()) == len(cfg.policy.hidden_sizes)


def test_layer_norm_trains_through_autograd_with_or_without_trainer_fast():
    obs, actions = data()
    assert not supports(net())
    probe = net()
    assert train_forward(probe, fast=True) is probe  # the fast step falls back to the model itself
    results, nets = [], []
    for fast in (True, False):
        policy = net()
        init = {k: v.clone() for k, v in policy.state_dict().items()}
        cfg = TrainerConfig(epochs=4, batch_size=32, lr=1e-2, val_fraction=0.2, progress=False, fast=fast)
        results.append(fit(policy, obs, actions, cfg, seed=3))
        nets.append(policy)
        for name, value in policy.state_dict().items():
            assert torch.isfinite(value).all(), name
            assert not torch.equal(value, init[name]), f"{name} did not train"
    history = results[0].history
    assert all(np.isfinite(v) for epoch in history for v in epoch.values())
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert results[0].final["val/accuracy"] > 0.85
    assert results[0].history == results[1].history
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_layer_norm_saves_loads_and_acts_identically(tmp_path):
    obs, actions = data()
    policy = net()
    fit(policy, obs, actions, TrainerConfig(epochs=2, lr=1e-2, progress=False), seed=0)
    path = save_policy(policy, tmp_path / "policy.pt", "CartPole-v1")
    loaded, _ = load_policy(path)
    assert loaded.kwargs == policy.kwargs and not loaded.training
    for (name, a), b in zip(policy.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    x = torch.from_numpy(obs)
    policy.eval()
    with torch.inference_mode():
        assert torch.equal(policy(x), loaded(x))
        assert torch.equal(inference_forward(loaded)(x), loaded(x))
    greedy = act_fn(loaded, greedy=True)(obs)
    assert np.array_equal(greedy, act_fn(policy, greedy=True)(obs))
    assert np.array_equal(greedy, policy(x).argmax(1).numpy())
    sampled = [act_fn(p, greedy=False, rng=np.random.default_rng(4))(obs) for p in (policy, loaded)]
    assert np.array_equal(*sampled)


def bandit_config(**policy) -> Config:
    """rl_lab_test/BestAction-v0 (tests/conftest.py), 3 rounds with the previous round's policy."""
    return Config(
        env=EnvConfig(id="rl_lab_test/BestAction-v0", num_envs=32),
        collector=CollectorConfig(episodes=64, max_steps=20, min_score=None, top_fraction=0.25, behaviour="policy"),
        policy=PolicyConfig(**{"hidden_sizes": [32, 16], "dropout": 0.2, "layer_norm": True, **policy}),
        trainer=TrainerConfig(epochs=3, batch_size=64, lr=0.01, val_fraction=0.0),
        evaluator=EvaluatorConfig(episodes=20),
        rounds=3,
        seed=0,
    )


def test_a_layer_norm_run_resumes_bit_identically(tmp_path, monkeypatch):
    """Interrupted in round 1 after its first epoch, then resumed: every round as the uninterrupted run."""
    import rl_lab.pipeline as pipeline
    from rl_lab.pipeline import run

    cfg = bandit_config()
    full = run(cfg, tmp_path / "a")
    assert full["rounds"][-1]["eval"]["score_mean"] >= 15  # it learns (random scores about 10 of 20)

    flag = pipeline.StopFlag()
    stop_after_epoch(monkeypatch, flag)  # round 1 stops after its first epoch
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "b", stop=flag)
    monkeypatch.undo()
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["status"] == "interrupted"

    cfg.resume = str(tmp_path / "b")
    resumed = run(cfg, tmp_path / "b")
    assert resumed["status"] == "completed" and len(resumed["rounds"]) == 3
    for k, (x, y) in enumerate(zip(full["rounds"], resumed["rounds"], strict=True)):
        assert x["dataset_sha256"] == y["dataset_sha256"], f"round {k}: dataset differs after resume"
        assert x["weights_sha256"] == y["weights_sha256"], f"round {k}: weights differ after resume"
    policy, _ = load_policy(tmp_path / "b" / "policy.pt")
    assert policy.kwargs["layer_norm"] is True
    assert sum(isinstance(m, nn.LayerNorm) for m in policy.modules()) == 2
