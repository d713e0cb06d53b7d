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


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "gelu", "leaky_relu", "silu"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_training_forward_and_hand_written_backward_match_autograd(activation, dropout):
    """MLPPolicy's training path (one autograd node) = autograd through nn.Sequential, same masks."""
    import copy

    torch.manual_seed(0)
    fused = MLPPolicy(5, 3, [16, 32, 8], activation, dropout).train()
    plain = copy.deepcopy(fused)
    for net in (fused, plain):
        rng = np.random.default_rng(7)  # one generator per net, drawn layer by layer (as fit() does)
        for m in net.modules():
            if isinstance(m, Dropout):
                m.rng = rng
    x = torch.randn(40, 5, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y = torch.randint(0, 3, (40,))
    logits_fused, logits_plain = fused(x), plain.net(x2)
    assert torch.equal(logits_fused, logits_plain)  # the same kernels, in the same order
    nn.functional.cross_entropy(logits_fused, y).backward()
    nn.functional.cross_entropy(logits_plain, y).backward()
    for (name, a), b in zip(fused.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)
        assert a.grad.abs().sum() > 0, name
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-7)
    fused.eval()
    plain.eval()
    with torch.no_grad():  # evaluation: the kernels called directly, bit for bit nn.Sequential's
        assert torch.equal(fused(x), plain.net(x))


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
