"""The policy network and its checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rl_lab.errors import ConfigError
from rl_lab.policy import Dropout, MLPPolicy, act_fn, load_policy, save_policy


def test_hidden_sizes_build_the_layers():
    net = MLPPolicy(4, 2, [8, 16], "tanh", 0.1)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 8), (8, 16), (16, 2)]
    assert sum(isinstance(m, Dropout) for m in net.modules()) == 2
    assert sum(isinstance(m, nn.Tanh) for m in net.modules()) == 2


def test_empty_hidden_sizes_is_a_linear_policy():
    net = MLPPolicy(4, 3, [])
    layers = list(net.net)
    assert len(layers) == 1 and isinstance(layers[0], nn.Linear)
    assert (layers[0].in_features, layers[0].out_features) == (4, 3)


def test_dropout_is_inactive_in_evaluation():
    torch.manual_seed(0)
    net = MLPPolicy(4, 2, [64, 64], dropout=0.5)
    x = torch.randn(32, 4)
    act = act_fn(net, greedy=True)  # puts the net in eval mode
    assert not net.training
    np.testing.assert_array_equal(act(x.numpy()), act(x.numpy()))
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x))
    net.train()
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))  # the test can fail: train mode is random


def test_dropout_matches_nn_dropout_statistics():
    drop = Dropout(0.2).train()
    drop.rng = np.random.default_rng(0)
    y = drop(torch.ones(200, 500))
    assert set(torch.unique(y).tolist()) == {0.0, 1.25}  # dropped, or kept and scaled by 1 / (1 - p)
    assert abs((y == 0).float().mean().item() - 0.2) < 0.005
    assert abs(y.mean().item() - 1.0) < 0.01  # expectation preserved
    assert torch.equal(drop.eval()(y), y)


def test_activation_names_are_one_table():
    """config.py validates the names without importing torch; they are policy.ACTIVATIONS' keys."""
    from rl_lab.config import ACTIVATIONS as CONFIG_ACTIVATIONS
    from rl_lab.policy import ACTIVATIONS

    assert tuple(ACTIVATIONS) == CONFIG_ACTIVATIONS


def test_the_model_is_its_sequential():
    torch.manual_seed(0)
    net = MLPPolicy(4, 2, [8, 8], "gelu", 0.5).train()
    x = torch.randn(16, 4)
    for m in net.modules():
        if isinstance(m, Dropout):
            m.rng = np.random.default_rng(3)
    a = net(x)
    for m in net.modules():
        if isinstance(m, Dropout):
            m.rng = np.random.default_rng(3)
    assert torch.equal(a, net.net(x))


def _plant(net, seed=7):
    rng = np.random.default_rng(seed)  # one generator per net, drawn layer by layer (as fit() does)
    for m in net.modules():
        if isinstance(m, Dropout):
            m.rng = rng


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "gelu", "leaky_relu", "silu"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fast_train_step_is_autograd_bit_for_bit(activation, dropout):
    """fast_mlp.train_forward (one node, hand-written backward) = autograd through the Sequential:
    the same logits every step and the same weights after 25 Adam steps (torch.equal)."""
    import copy

    from rl_lab.fast_mlp import supports, train_forward
    from rl_lab.train import Adam

    torch.manual_seed(0)
    fast_net = MLPPolicy(5, 3, [16, 32, 8], activation, dropout).train()
    plain_net = copy.deepcopy(fast_net)
    assert supports(fast_net)
    fast, plain = train_forward(fast_net), train_forward(plain_net, fast=False)
    assert plain is plain_net and fast is not fast_net
    _plant(fast_net)
    _plant(plain_net)
    opts = [Adam(fast_net.parameters(), lr=1e-2), Adam(plain_net.parameters(), lr=1e-2)]
    g = torch.Generator().manual_seed(1)
    for _ in range(25):
        x, y = torch.randn(40, 5, generator=g), torch.randint(0, 3, (40,), generator=g)
        logits = [f(x) for f in (fast, plain)]
        assert torch.equal(logits[0], logits[1])
        for out, opt in zip(logits, opts, strict=True):
            opt.zero_grad()
            nn.functional.cross_entropy(out, y).backward()
        for a, b in zip(fast_net.parameters(), plain_net.parameters(), strict=True):
            assert torch.equal(a.grad, b.grad)
            assert a.grad.abs().sum() > 0
        for opt in opts:
            opt.step()
    for (name, a), b in zip(fast_net.named_parameters(), plain_net.parameters(), strict=True):
        assert torch.equal(a, b), name
    fast_net.eval()  # outside training mode the fast forward is the model
    assert torch.equal(fast(x), fast_net(x))


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "gelu", "leaky_relu", "silu"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_inference_forward_is_the_model_bit_for_bit(activation, layer_norm):
    from rl_lab.fast_mlp import inference_forward

    torch.manual_seed(0)
    net = MLPPolicy(5, 3, [16, 32, 8], activation, 0.3, layer_norm=layer_norm).eval()
    forward = inference_forward(net)
    x = torch.randn(100, 5)
    with torch.inference_mode():
        assert torch.equal(forward(x), net(x))
        assert torch.equal(forward(x[:1]), net(x[:1]))
    net.train()  # in training mode it is the model itself (dropout active)
    _plant(net, 1)
    a = forward(x)
    _plant(net, 1)
    assert torch.equal(a, net(x))


def test_fast_step_falls_back_to_autograd_for_structures_it_does_not_know():
    from rl_lab.fast_mlp import inference_forward, supports, train_forward

    class Custom(MLPPolicy):
        def forward(self, obs):
            return super().forward(obs) * 2

    unknown = [
        MLPPolicy(4, 2, [8], layer_norm=True),
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2)),  # torch's own dropout
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 2)),
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.ReLU(), nn.Linear(8, 2)),
        nn.Sequential(nn.Linear(4, 8), nn.Hardswish(), nn.Linear(8, 2)),
        nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 2)),
        nn.Sequential(nn.Linear(4, 8), nn.ReLU()),  # no head
        nn.Sequential(),
        Custom(4, 2, [8]),
    ]
    for model in unknown:
        assert not supports(model), model
        assert train_forward(model) is model
    custom = Custom(4, 2, [8])
    assert inference_forward(custom) is custom
    known = [
        MLPPolicy(4, 2, []),
        MLPPolicy(4, 2, [8, 8], "silu", 0.1),
        nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)),
    ]
    assert all(supports(m) for m in known)


def test_save_load_gives_identical_outputs(tmp_path):
    torch.manual_seed(1)
    net = MLPPolicy(6, 3, [32, 16], "elu", 0.2).eval()
    path = save_policy(net, tmp_path / "policy.pt", "Acrobot-v1", {"round": 2})
    loaded, payload = load_policy(path)
    assert payload["env_id"] == "Acrobot-v1" and payload["extra"] == {"round": 2}
    assert loaded.kwargs == net.kwargs
    x = torch.randn(100, 6)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    assert [p.name for p in tmp_path.iterdir()] == ["policy.pt"]  # no temp files left


def test_checkpoints_without_layer_norm_load_as_before(tmp_path):
    """Checkpoints written before policy.layer_norm existed have no such key: it defaults to False."""
    torch.manual_seed(2)
    net = MLPPolicy(4, 2, [16, 8], "tanh", 0.2).eval()
    path = save_policy(net, tmp_path / "policy.pt", "CartPole-v1")
    payload = torch.load(path, weights_only=True)
    del payload["kwargs"]["layer_norm"]
    assert list(payload["state_dict"]) == [f"net.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]  # as before
    torch.save(payload, path)
    loaded, _ = load_policy(path)
    assert loaded.kwargs["layer_norm"] is False
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    assert np.array_equal(act_fn(loaded)(x), act_fn(net)(x))


def test_sampling_follows_the_softmax():
    net = MLPPolicy(2, 2, [])
    with torch.no_grad():
        net.net[0].weight.zero_()
        net.net[0].bias.copy_(torch.tensor([0.0, np.log(3.0)]))  # p(1) = 0.75
    act = act_fn(net, greedy=False, rng=np.random.default_rng(0))
    a = act(np.zeros((20_000, 2), dtype=np.float32))
    assert abs(a.mean() - 0.75) < 0.01
    assert act_fn(net, greedy=True)(np.zeros((3, 2), dtype=np.float32)).tolist() == [1, 1, 1]


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"PK\x03\x04garbage"])
def test_corrupt_checkpoint_is_a_config_error(tmp_path, content):
    path = tmp_path / "policy.pt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="checkpoint"):
        load_policy(path)


def test_truncated_checkpoint_is_a_config_error(tmp_path):
    path = save_policy(MLPPolicy(4, 2, [64]), tmp_path / "policy.pt", "CartPole-v1")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="corrupt"):
        load_policy(path)


def test_foreign_torch_file_and_missing_file(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not an rl_lab policy"):
        load_policy(tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="no such file"):
        load_policy(tmp_path / "missing.pt")
