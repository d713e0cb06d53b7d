"""The policy network (a configurable MLP), its checkpoints, and behaviour functions.

A checkpoint stores the constructor arguments and the env id next to the weights (as
Stable-Baselines3's ``save`` does), so ``load_policy`` rebuilds the network with no config.

The head follows the action space (:mod:`rl_lab.actions`): for ``Discrete`` actions the network's
outputs are logits; for ``Box`` actions (``action_low`` / ``action_high`` given) they are the
unsquashed means ``u``, and the action is ``tanh(u)`` mapped into the bounds
(:meth:`MLPPolicy.mean_action`), as SB3's squashed Gaussian maps its latent. With
``box_head="gaussian"`` the network outputs ``2 d`` numbers: the same ``d`` means, then ``d`` log
standard deviations (in half action ranges, clamped to ``[LOG_STD_MIN, LOG_STD_MAX]``) of a Gaussian
around ``tanh(u)`` in the unit box, trained by its negative log-likelihood (:mod:`rl_lab.train`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rl_lab.actions import ActionSpec
from rl_lab.config import BOX_HEADS
from rl_lab.errors import ConfigError
from rl_lab.utils import atomic_path

CHECKPOINT_FORMAT = "rl_lab.policy/1"
LOG_STD_MIN, LOG_STD_MAX = -5.0, 1.0  # a Gaussian head's std: 0.0067 to 2.7 half action ranges

ActFn = Callable[[np.ndarray], np.ndarray]  # obs (B, obs_dim) float32 -> actions (B,) int64, or (B, d) float32

# The one table of activation names (rl_lab.config.ACTIVATIONS lists the same names for validation,
# without importing torch; tests/test_policy.py checks that the two agree).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}


class Dropout(nn.Module):
    """Inverted dropout whose Bernoulli masks come from a numpy generator.

    The same computation as ``nn.Dropout(p)`` (each unit kept with probability ``1 - p`` and scaled
    by ``1 / (1 - p)`` in training, identity in evaluation), but torch's CPU Bernoulli sampler is
    the slowest op of a small MLP's training step. Here a unit is kept when a raw 32-bit draw of
    numpy's PCG64 is ``>= round(p * 2**32)``: the keep probability is exact to ``2**-32``, and a
    mask costs one ``random_raw`` draw for two units (77 us for 64 x 512 units against 345 us for
    torch's ``bernoulli_``).
    :func:`rl_lab.train.fit` hands every ``Dropout`` of the model its seeded generator, so the
    masks are reproducible and their state can be checkpointed. (A model with ``nn.Dropout`` trains
    and resumes bit for bit too: fit seeds torch's global RNG and checkpoints it; only the slower
    masks and the autograd path, since :mod:`rl_lab.fast_mlp` knows this class only.)
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)
        self.rng = np.random.default_rng()
        self._threshold = np.uint32(min(round(self.p * 2**32), 2**32 - 1))
        self._scale = np.float32(1.0 / (1.0 - self.p)) if self.p < 1.0 else np.float32(0.0)

    def mask(self, shape: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
        """A fresh scaled mask: ``1 / (1 - p)`` for kept units, 0 for dropped ones (float32, ``shape``)."""
        n = shape[0] * shape[1]
        bits = self.rng.bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n]
        scaled = np.multiply(bits >= self._threshold, self._scale, dtype=np.float32).reshape(shape)
        return torch.from_numpy(scaled).to(device, non_blocking=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * self.mask(tuple(x.shape), x.device)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Standardize(nn.Module):
    """``(x - mean) / std`` with fixed per-feature statistics (buffers: saved with the weights, never trained).

    ``policy.obs_norm``: an env whose observations span very different ranges (MountainCar's velocity
    lives in [-0.07, 0.07], its position in [-1.2, 0.6]) otherwise hides the small ones from the MLP.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, obs: np.ndarray) -> None:
        """Set the statistics from observations ``(samples, dim)``; a constant feature keeps std 1."""
        x = np.asarray(obs, dtype=np.float64)
        std = x.std(axis=0) if len(x) else np.ones(self.std.shape)
        self.mean.copy_(torch.as_tensor(x.mean(axis=0) if len(x) else 0.0, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.where(std > 1e-8, std, 1.0), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def create_mlp(
    input_dim: int,
    output_dim: int,
    hidden_sizes: list[int],
    activation_fn: type[nn.Module] = nn.ReLU,
    dropout: float = 0.0,
    layer_norm: bool = False,
) -> list[nn.Module]:
    """The layers of a fully connected network, as Stable-Baselines3's ``create_mlp`` builds them.

    Per hidden layer ``Linear -> [LayerNorm] -> activation -> [Dropout]`` (LayerNorm with
    ``layer_norm``, :class:`Dropout` when ``dropout > 0``), then a ``Linear`` head. No hidden
    layer is a linear model.
    """
    layers: list[nn.Module] = []
    width = input_dim
    for h in hidden_sizes:
        layers.append(nn.Linear(width, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(activation_fn())
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, output_dim))
    return layers


class MLPPolicy(nn.Module):
    """Observation -> logits (Discrete) or unsquashed means (Box): :func:`create_mlp` layers in an ``nn.Sequential``.

    A plain module: ``forward`` is ``self.net``, autograd does the backward. Speed-ups live
    outside the model (:mod:`rl_lab.fast_mlp`) and are used only for the structures they know.

    Example:
        >>> net = MLPPolicy(obs_dim=4, n_actions=2, hidden_sizes=[64, 64])
        >>> net(torch.zeros(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_sizes: list[int],
        activation: str = "relu",
        dropout: float = 0.0,
        layer_norm: bool = False,  # checkpoints written before this option have no such key: False
        action_low: list[float] | None = None,  # Box actions: the bounds (n_actions is then the dimension)
        action_high: list[float] | None = None,
        obs_norm: bool = False,  # a Standardize layer first (checkpoints written before it: False)
        box_head: str = "mean",  # Box actions: "mean" (MSE) or "gaussian" (means and log-stds, NLL)
    ) -> None:
        super().__init__()
        self.kwargs: dict[str, Any] = {
            "obs_dim": int(obs_dim),
            "n_actions": int(n_actions),
            "hidden_sizes": [int(h) for h in hidden_sizes],
            "activation": activation,
            "dropout": float(dropout),
            "layer_norm": bool(layer_norm),
            "obs_norm": bool(obs_norm),
        }
        if (action_low is None) != (action_high is None):
            raise ValueError("give both action_low and action_high (Box actions), or neither (Discrete)")
        if box_head not in BOX_HEADS:
            raise ValueError(f"unknown box_head {box_head!r}: one of {', '.join(BOX_HEADS)}")
        if box_head != "mean" and action_low is None:
            raise ValueError(f"box_head={box_head!r} needs Box actions (action_low and action_high)")
        self.gaussian = box_head == "gaussian"
        if self.gaussian:  # only then: the checkpoints of mean heads keep their kwargs
            self.kwargs["box_head"] = box_head
        if action_low is not None:
            self.kwargs.update(action_low=[float(x) for x in action_low], action_high=[float(x) for x in action_high])
            self.action = ActionSpec.box(action_low, action_high)
            if self.action.dim != n_actions:
                raise ValueError(f"{self.action.dim} action bounds for an output of size {n_actions}")
        else:
            self.action = ActionSpec(n=int(n_actions))
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: one of {', '.join(ACTIVATIONS)}")
        outputs = 2 * n_actions if self.gaussian else n_actions  # a Gaussian head: means, then log-stds
        layers = create_mlp(obs_dim, outputs, list(hidden_sizes), ACTIVATIONS[activation], dropout, layer_norm)
        self.net = nn.Sequential(*([Standardize(obs_dim)] if obs_norm else []), *layers)

    def fit_obs_norm(self, obs: np.ndarray) -> None:
        """With ``obs_norm``: set the input statistics from ``obs`` (the first data this policy trains on)."""
        if isinstance(self.net[0], Standardize):
            self.net[0].fit(obs)

    @property
    def continuous(self) -> bool:
        """A Box head (regression), else Discrete logits."""
        return self.action.continuous

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits (Discrete) or unsquashed means (Box), ``(batch, n_actions)``, of observations ``(batch, obs_dim)``.

        A Gaussian head: ``(batch, 2 * n_actions)``, the means then the unclamped log-stds (:meth:`split`).
        """
        return self.net(obs)

    @staticmethod
    def split(out: torch.Tensor, gaussian: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A Box head's outputs as ``(unsquashed means, log-stds clamped to the bounds or None)``."""
        if not gaussian:
            return out, None
        d = out.shape[-1] // 2
        return out[..., :d], out[..., d:].clamp(LOG_STD_MIN, LOG_STD_MAX)

    @staticmethod
    def squash(out: torch.Tensor) -> torch.Tensor:
        """A Box head's outputs in the unit box ``[-1, 1]^d`` (what the loss compares with the scaled targets)."""
        return torch.tanh(out)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Box: the mean action ``low + (tanh(u) + 1) / 2 * (high - low)``, inside the bounds."""
        low = torch.as_tensor(self.action.low_array, device=obs.device)
        high = torch.as_tensor(self.action.high_array, device=obs.device)
        means, _ = self.split(self(obs), self.gaussian)
        return low + (self.squash(means) + 1.0) * 0.5 * (high - low)


def act_fn(
    policy: MLPPolicy,
    greedy: bool = True,
    temperature: float = 1.0,
    rng: np.random.Generator | None = None,
    device: str = "cpu",
    noise_std: float = 0.0,
) -> ActFn:
    """Wrap a policy as a batched numpy behaviour.

    Discrete: argmax (greedy) or a sample from ``softmax(logits / T)``. Sampling uses the Gumbel-max
    trick (``argmax(logits / T + Gumbel noise)`` is distributed as the softmax) with noise from
    ``rng`` (numpy), so it is exact, cheap and reproducible on any device.

    Box: the mean action (greedy), or the mean plus Gaussian noise of standard deviation
    ``noise_std`` half-ranges per dimension (float64 draws from ``rng``), clipped to the bounds. A
    Gaussian head samples its own learned std too: ``sqrt(std(obs)^2 + noise_std^2)``, the extra
    noise of the noisy cross-entropy method (Szita and Lorincz, 2006), which keeps the std of the
    elites from collapsing round after round.
    """
    from rl_lab.fast_mlp import inference_forward  # fast_mlp imports this module

    policy.eval()
    if not greedy and rng is None:
        raise ValueError("sampling needs an rng")
    forward = inference_forward(policy)  # ``policy`` itself, or the same kernels without the module calls
    if policy.continuous:
        return _box_act_fn(forward, policy.action, greedy, rng, device, noise_std, policy.gaussian)

    @torch.inference_mode()
    def act(obs: np.ndarray) -> np.ndarray:
        logits = forward(torch.from_numpy(obs).to(device))  # (B, n_actions)
        if greedy:
            return logits.argmax(dim=1).cpu().numpy()
        z = logits.cpu().numpy().astype(np.float64) / temperature
        z += rng.gumbel(size=z.shape)
        return z.argmax(axis=1)

    return act


def _box_act_fn(
    forward: Callable[[torch.Tensor], torch.Tensor],
    action: ActionSpec,
    greedy: bool,
    rng: np.random.Generator | None,
    device: str,
    noise_std: float,
    gaussian: bool = False,
) -> ActFn:
    low, high = action.low_array, action.high_array
    half = (high - low).astype(np.float64) / 2.0

    @torch.inference_mode()
    def act(obs: np.ndarray) -> np.ndarray:
        means, log_std = MLPPolicy.split(forward(torch.from_numpy(obs).to(device)), gaussian)
        unit = torch.tanh(means).cpu().numpy()  # (B, d) in [-1, 1]
        mean = low + (unit + 1.0) * 0.5 * (high - low)
        if greedy or (noise_std == 0.0 and log_std is None):
            return np.clip(mean, low, high).astype(np.float32)
        std = noise_std  # half ranges
        if log_std is not None:
            std = np.sqrt(np.exp(2.0 * log_std.cpu().numpy().astype(np.float64)) + noise_std**2)
        noisy = mean + std * half * rng.standard_normal(mean.shape)
        return np.clip(noisy, low, high).astype(np.float32)

    return act


def random_act_fn(action: int | ActionSpec, rng: np.random.Generator) -> ActFn:
    """The uniform random behaviour of the original recipe: ``action`` is the number of discrete actions or an
    :class:`ActionSpec` (a Box one draws uniformly in its bounds, as the collector's round 0 does)."""
    if isinstance(action, ActionSpec) and action.continuous:
        return lambda obs: action.uniform(rng, (obs.shape[0],))
    n_actions = int(action.n) if isinstance(action, ActionSpec) else int(action)

    def act(obs: np.ndarray) -> np.ndarray:
        return rng.integers(0, n_actions, size=obs.shape[0])

    return act


def save_policy(policy: MLPPolicy, path: str | Path, env_id: str, extra: dict[str, Any] | None = None) -> Path:
    """Save weights + constructor arguments + env id, atomically."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "kwargs": policy.kwargs,
        "env_id": env_id,
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path, key: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint file safely (``weights_only``); a missing or corrupt file is a :class:`ConfigError`."""
    path = Path(path)
    if path.is_dir():
        inside = path / "policy.pt"
        hint = f"the policy.pt inside it: {key}={str(inside)!r}" if inside.is_file() else "the policy.pt of a run"
        raise ConfigError(
            f"{key}={str(path)!r} is a directory, not a checkpoint file. Give {hint} "
            "(e.g. checkpoint=outputs/<date>/<time>/policy.pt)."
        )
    if not path.is_file():
        raise ConfigError(
            f"{key}={str(path)!r}: no such file. Give the path of a policy.pt written by rl-lab, "
            "e.g. checkpoint=outputs/<date>/<time>/policy.pt."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged files (RuntimeError, EOFError, UnpicklingError...)
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        raise ConfigError(
            f"{key}={str(path)!r} could not be read as a torch checkpoint ({type(e).__name__}: {first_line}). "
            "The file is truncated, corrupt or not a checkpoint; give a policy.pt written by rl-lab."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(
            f"{key}={str(path)!r} is a torch file but not an rl_lab policy checkpoint (format "
            f"{payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}, expected "
            f"{CHECKPOINT_FORMAT!r}). Give a policy.pt written by rl-lab."
        )
    return payload


def check_head(policy: MLPPolicy, action: ActionSpec, env_id: str, path: str | Path, key: str = "checkpoint") -> None:
    """Refuse a checkpoint whose head does not fit the env's actions (Discrete logits vs Box means, sizes, bounds)."""
    if policy.action == action:
        return
    have = f"a {'Box' if policy.continuous else 'Discrete'} head for {policy.action.describe()}"
    want = f"{'Box' if action.continuous else 'Discrete'} actions {action.describe()}"
    raise ConfigError(
        f"{key}={str(path)!r} holds {have}, but env.id={env_id!r} has {want}. A policy only plays the action "
        "space it was trained on: evaluate it on its own env (leave env.id unset), or train one for this env."
    )


def load_policy(path: str | Path, key: str = "checkpoint") -> tuple[MLPPolicy, dict[str, Any]]:
    """Rebuild a saved policy with no config. Returns ``(policy in eval mode, checkpoint payload)``."""
    payload = read_checkpoint(path, key)
    try:
        policy = MLPPolicy(**payload["kwargs"])
        policy.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(
            f"{key}={str(path)!r}: the weights do not fit the stored network description ({e}). "
            "The checkpoint is damaged; retrain or use another policy.pt."
        ) from None
    return policy.eval(), payload
