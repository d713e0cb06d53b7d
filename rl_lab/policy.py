"""The policy network (a configurable MLP), its checkpoints, and behaviour functions.

A checkpoint stores the constructor arguments and the env id next to the weights (as
Stable-Baselines3's ``save`` does), so ``load_policy`` rebuilds the network with no config.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rl_lab.errors import ConfigError
from rl_lab.utils import atomic_path

CHECKPOINT_FORMAT = "rl_lab.policy/1"

ActFn = Callable[[np.ndarray], np.ndarray]  # obs (B, obs_dim) float32 -> actions (B,) int64

_ACTIVATIONS: dict[str, type[nn.Module]] = {
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
    masks are reproducible and their state can be checkpointed.
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


_aten = torch.ops.aten  # OpOverload objects (``.default``) skip the per-call overload lookup of ``torch.ops``


def _relu_backward(grad: torch.Tensor, pre: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return _aten.threshold_backward.default(grad, out, 0)


# activation -> (forward, backward(grad, input, output)), the very aten kernels autograd would run.
_ACTIVATION_GRADS: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    "relu": (torch.relu, _relu_backward),
    "tanh": (torch.tanh, lambda g, pre, out: _aten.tanh_backward.default(g, out)),
    "elu": (nn.functional.elu, lambda g, pre, out: _aten.elu_backward.default(g, 1.0, 1, 1, False, pre)),
    "gelu": (nn.functional.gelu, lambda g, pre, out: _aten.gelu_backward.default(g, pre)),
    "leaky_relu": (
        nn.functional.leaky_relu,
        lambda g, pre, out: _aten.leaky_relu_backward.default(g, pre, 0.01, False),
    ),
    "silu": (nn.functional.silu, lambda g, pre, out: _aten.silu_backward.default(g, pre)),
}


class _MLPTrainStep(torch.autograd.Function):
    """The MLP's training forward with a hand-written backward (one node instead of about 30).

    Forward: for each layer ``pre = addmm(b, h, W.t())`` (what ``nn.Linear`` runs), then the
    activation and the dropout mask on hidden layers. Backward: ``dW = g.t() @ h``, ``db = g.sum(0)``,
    ``g = (g @ W) * mask`` and the activation's own aten backward kernel. The same math as autograd
    through ``nn.Sequential`` (``tests/test_policy.py`` compares logits bit for bit and gradients),
    without autograd's per-op bookkeeping: about 0.6 ms less per step of the recipe's MLP at batch 64
    (forward + backward 3.0 -> 2.4 ms on one core).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, activation: str, masks: list[torch.Tensor | None], *params: torch.Tensor):
        act, _ = _ACTIVATION_GRADS[activation]
        n_layers = len(params) // 2
        saved: list[torch.Tensor] = [x]  # per hidden layer: input, pre-activation, activation output
        h = x
        for i in range(n_layers):
            pre = torch.addmm(params[2 * i + 1], h, params[2 * i].t())
            if i == n_layers - 1:
                h = pre
                break
            if activation == "relu":  # in place: relu's backward needs only the (masked) output
                h = pre.clamp_min_(0)
                if masks[i] is not None:
                    h.mul_(masks[i])
                saved += [h, h]
            else:
                out = act(pre)
                h = out * masks[i] if masks[i] is not None else out
                saved += [pre, out, h]
        ctx.activation = activation
        ctx.has_mask = [m is not None for m in masks]
        ctx.save_for_backward(*saved, *[m for m in masks if m is not None], *params)
        return h

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        _, act_grad = _ACTIVATION_GRADS[ctx.activation]
        tensors = ctx.saved_tensors
        per_layer = 2 if ctx.activation == "relu" else 3  # per hidden layer: relu (h, h), others (pre, out, h)
        n_hidden = len(ctx.has_mask)
        n_saved = 1 + per_layer * n_hidden
        saved, rest = tensors[:n_saved], tensors[n_saved:]
        n_masks = sum(ctx.has_mask)
        mask_iter = iter(rest[:n_masks])
        masks = [next(mask_iter) if has else None for has in ctx.has_mask]
        params = rest[n_masks:]
        inputs = [saved[0]] + [saved[per_layer * (i + 1)] for i in range(n_hidden)]  # each layer's input h
        grads: list[torch.Tensor | None] = [None] * len(params)
        g = grad
        for i in range(n_hidden, -1, -1):
            grads[2 * i] = g.t().mm(inputs[i])
            grads[2 * i + 1] = g.sum(0)
            if i == 0:
                break
            g = g.mm(params[2 * i])  # gradient of layer i's input, the (masked) output of hidden layer i - 1
            if masks[i - 1] is not None:
                g.mul_(masks[i - 1])
            base = 1 + per_layer * (i - 1)
            g = act_grad(g, saved[base], saved[base + 1])
        grad_x = g.mm(params[0]) if ctx.needs_input_grad[0] else None
        return (grad_x, None, None, *grads)


class MLPPolicy(nn.Module):
    """Observation -> action logits: ``[Linear, activation, Dropout] * len(hidden_sizes)`` then ``Linear``.

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
    ) -> None:
        super().__init__()
        self.kwargs: dict[str, Any] = {
            "obs_dim": int(obs_dim),
            "n_actions": int(n_actions),
            "hidden_sizes": [int(h) for h in hidden_sizes],
            "activation": activation,
            "dropout": float(dropout),
        }
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, n_actions))
        self.net = nn.Sequential(*layers)
        # The training path's view of the layers (plain lists: not registered twice, not in the state dict).
        self._linears = [m for m in layers if isinstance(m, nn.Linear)]
        self._dropouts = [m for m in layers if isinstance(m, Dropout)]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_actions)`` for observations ``(batch, obs_dim)``.

        The same math as ``self.net`` on every path. In evaluation mode it calls the layers'
        kernels directly (``addmm`` and the activation, no ``nn.Module`` call overhead: about half
        the cost of a small batch, which is what evaluation and policy collection run every step);
        with gradients in training mode it runs :class:`_MLPTrainStep` (a hand-written backward);
        in training mode without gradients, ``self.net`` itself.
        """
        if not self.training:
            activation = _ACTIVATION_GRADS[self.kwargs["activation"]][0]
            h = obs
            for lin in self._linears[:-1]:
                h = activation(torch.addmm(lin.bias, h, lin.weight.t()))
            last = self._linears[-1]
            return torch.addmm(last.bias, h, last.weight.t())
        if not torch.is_grad_enabled():
            return self.net(obs)
        linears, drops = self._linears, self._dropouts
        batch = obs.shape[0]
        hidden = linears[:-1]  # a Dropout follows each hidden layer, or none does
        masks: list[torch.Tensor | None] = [None] * len(hidden)
        if drops:
            masks = [d.mask((batch, lin.out_features), obs.device) for d, lin in zip(drops, hidden, strict=True)]
        params = [p for lin in linears for p in (lin.weight, lin.bias)]
        return _MLPTrainStep.apply(obs, self.kwargs["activation"], masks, *params)


def act_fn(
    policy: MLPPolicy,
    greedy: bool = True,
    temperature: float = 1.0,
    rng: np.random.Generator | None = None,
    device: str = "cpu",
) -> ActFn:
    """Wrap a policy as a batched numpy behaviour: argmax (greedy) or a sample from ``softmax(logits / T)``.

    Sampling uses the Gumbel-max trick (``argmax(logits / T + Gumbel noise)`` is distributed as the
    softmax) with noise from ``rng`` (numpy), so it is exact, cheap and reproducible on any device.
    """
    policy.eval()
    if not greedy and rng is None:
        raise ValueError("sampling needs an rng")

    @torch.inference_mode()
    def act(obs: np.ndarray) -> np.ndarray:
        logits = policy(torch.from_numpy(obs).to(device))  # (B, n_actions)
        if greedy:
            return logits.argmax(dim=1).cpu().numpy()
        z = logits.cpu().numpy().astype(np.float64) / temperature
        z += rng.gumbel(size=z.shape)
        return z.argmax(axis=1)

    return act


def random_act_fn(n_actions: int, rng: np.random.Generator) -> ActFn:
    """The uniform random behaviour of the original recipe."""

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


def load_policy(path: str | Path, key: str = "checkpoint") -> tuple[MLPPolicy, dict[str, Any]]:
    """Rebuild a saved policy with no config. Returns ``(policy in eval mode, checkpoint payload)``."""
    payload = read_checkpoint(path, key)
    try:
        policy = MLPPolicy(**payload["kwargs"])
        policy.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise ConfigError(
            f"{key}={str(path)!r}: the weights do not fit the stored network description ({e}). "
            "The checkpoint is damaged; retrain or use another policy.pt."
        ) from None
    return policy.eval(), payload
