"""Supervised training: it learns a known mapping, it is reproducible, and it resumes bit for bit."""

from __future__ import annotations

import numpy as np
import torch

from rl_lab.config import TrainerConfig
from rl_lab.policy import MLPPolicy
from rl_lab.train import fit, split


def data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    actions = (obs[:, 2] + 0.3 * obs[:, 3] > 0).astype(np.int64)
    return obs, actions


def test_learns_a_separable_mapping():
    obs, actions = data()
    torch.manual_seed(0)
    policy = MLPPolicy(4, 2, [32], dropout=0.0)
    result = fit(policy, obs, actions, TrainerConfig(epochs=20, batch_size=64, lr=1e-2, val_fraction=0.2), seed=0)
    assert result.final["val/accuracy"] > 0.95
    assert result.history[-1]["train/loss"] < result.history[0]["train/loss"]
    assert result.samples + result.val_samples == len(actions)


def test_split_is_seeded_and_disjoint():
    tr, va = split(100, 0.1, seed=3)
    assert len(va) == 10 and len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 100
    assert np.array_equal(split(100, 0.1, 3)[1], va) and not np.array_equal(split(100, 0.1, 4)[1], va)


def train(seed, epochs=3, resume=None, stop_after=None, make=None, fast=True):
    obs, actions = data()
    torch.manual_seed(123)
    policy = MLPPolicy(4, 2, [32, 32], dropout=0.2) if make is None else make()
    states = []

    def on_epoch(epoch, figures, state):
        states.append((state, {k: v.clone() for k, v in policy.state_dict().items()}))
        if stop_after is not None and state.epoch == stop_after:
            raise KeyboardInterrupt

    if resume is not None:
        policy.load_state_dict(resume[1])
    try:
        fit(
            policy,
            obs,
            actions,
            TrainerConfig(epochs=epochs, lr=1e-3, fast=fast),
            seed=seed,
            on_epoch=on_epoch,
            resume=None if resume is None else resume[0],
        )
    except KeyboardInterrupt:
        pass
    return policy, states


def test_same_seed_same_weights_other_seed_differs():
    a, _ = train(0)
    b, _ = train(0)
    c, _ = train(1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values(), strict=True))


def test_resume_from_an_epoch_checkpoint_is_bit_identical():
    full, _ = train(0, epochs=3)
    _, states = train(0, epochs=3, stop_after=1)
    resumed, _ = train(0, epochs=3, resume=states[-1])
    for (name, x), y in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(x, y), f"{name} differs after resume"


def torch_dropout_net():
    """A model with torch's own nn.Dropout (masks from torch's global RNG), which the fast step does not know."""
    return torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(32, 2))


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_trainer_fast_false_gives_the_same_weights():
    fast, _ = train(0, epochs=2, fast=True)
    plain, _ = train(0, epochs=2, fast=False)
    assert same(fast, plain)


def test_torch_dropout_is_seeded_by_fit_and_resumes_bit_identically():
    """nn.Dropout draws from torch's global RNG: fit seeds it (under fork_rng) and TrainState carries it."""
    a, _ = train(0, make=torch_dropout_net)
    b, _ = train(0, make=torch_dropout_net)
    c, _ = train(1, make=torch_dropout_net)
    assert same(a, b) and not same(a, c)
    _, states = train(0, stop_after=1, make=torch_dropout_net)
    assert states[-1][0].torch_rng is not None
    torch.manual_seed(5)  # whatever the caller's RNG holds, the resumed fit continues the interrupted one
    resumed, _ = train(0, resume=states[-1], make=torch_dropout_net)
    assert same(a, resumed)
    net = torch_dropout_net()
    obs, actions = data(256)
    before = torch.get_rng_state()
    fit(net, obs, actions, TrainerConfig(epochs=1, progress=False), seed=0)
    assert torch.equal(torch.get_rng_state(), before), "fit changed the caller's global RNG"


def test_adam_is_torch_fused_adam_bit_for_bit():
    from rl_lab.train import Adam

    obs, actions = data(512)
    x, y = torch.from_numpy(obs), torch.from_numpy(actions)
    nets = []
    for _ in range(2):
        torch.manual_seed(7)
        nets.append(MLPPolicy(4, 2, [32, 16], dropout=0.0))
    ours = Adam(nets[0].parameters(), lr=1e-2, weight_decay=1e-3)
    ref = torch.optim.Adam(nets[1].parameters(), lr=1e-2, weight_decay=1e-3, fused=True)
    for i in range(30):
        for net, opt in ((nets[0], ours), (nets[1], ref)):
            loss = torch.nn.functional.cross_entropy(net(x[i * 16 : i * 16 + 64]), y[i * 16 : i * 16 + 64])
            opt.zero_grad()
            loss.backward()
            if i >= 25:  # the last layer gets no gradient: its step count and moments must not move
                net.net[-1].weight.grad = net.net[-1].bias.grad = None
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)
    assert [float(t) for t in ours.steps] == [30.0] * 4 + [25.0] * 2
    state = ours.state_dict()
    fresh = Adam(nets[0].parameters(), lr=1e-2)
    fresh.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.exp_avg_sqs, ours.exp_avg_sqs, strict=True))


def test_fit_flushes_denormals_only_while_it_runs():
    def flushing() -> bool:
        return torch.tensor([1e-39]).mul(1.0).item() == 0.0

    assert not flushing()
    seen = []
    obs, actions = np.zeros((64, 4), dtype=np.float32), np.zeros(64, dtype=np.int64)
    fit(
        MLPPolicy(4, 2, [8]),
        obs,
        actions,
        TrainerConfig(epochs=1, progress=False),
        seed=0,
        on_epoch=lambda *_: seen.append(flushing()),
    )
    assert seen == [True] and not flushing()
