"""Optional speed-ups for :class:`rl_lab.policy.MLPPolicy`, kept outside the model.

The model is a plain ``nn.Sequential`` trained by autograd. Two functions here stand in for a
call of the model where they provably compute the same thing, and hand back the model itself
everywhere else:

- :func:`train_forward` (``trainer.fast``): the training forward as one autograd node with a
  hand-written backward (about 30 nodes of bookkeeping fewer per step). It knows one structure,
  ``[Linear, activation, optional Dropout] * n`` then ``Linear``, with activations from
  :data:`KERNELS` and :class:`rl_lab.policy.Dropout`; anything else (a LayerNorm, ``nn.Dropout``,
  a subclass, an in-place activation) trains through autograd.
- :func:`inference_forward` (``act_fn``): the evaluation forward without the ``nn.Module`` calls,
  each layer running the very function its ``forward`` runs; unknown modules are called as is.

Both are checked bit for bit against the plain model (``tests/test_policy.py``: logits, and
weights after several Adam steps with ``torch.equal``, for every activation, with and without
dropout).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from rl_lab.policy import Dropout, MLPPolicy

Forward = Callable[[torch.Tensor], torch.Tensor]

_aten = torch.ops.aten  # OpOverload objects (``.default``) skip the per-call overload lookup of ``torch.ops``


@dataclass(frozen=True)
class _Kernels:
    """An activation's forward (what the module's ``forward`` calls) and the backward autograd runs."""

    forward: Forward
    backward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (grad of output, saved) -> grad of input
    saves_output: bool  # the backward takes the activation's output (else its input)
    forward_: Forward | None = None  # in-place ``forward`` (the same kernel), for inputs not needed afterwards


def _kernels(m: nn.Module) -> _Kernels | None:
    """The kernels of an activation module, from its own hyper-parameters; None for any other module.

    Forward: the call in the module's ``forward``. Backward: the formula of torch's
    ``derivatives.yaml`` for that op (``relu``: ``threshold_backward(grad, result, 0)``, ``elu``:
    ``elu_backward(grad, alpha, 1, 1, false, self)``, ...). Exact types only (a subclass may
    override ``forward``); in-place activations are not covered.
    """
    if getattr(m, "inplace", False):
        return None
    kind = type(m)
    if kind is nn.ReLU:
        return _Kernels(torch.relu, lambda g, out: _aten.threshold_backward.default(g, out, 0), True, torch.relu_)
    if kind is nn.Tanh:
        return _Kernels(torch.tanh, lambda g, out: _aten.tanh_backward.default(g, out), True)
    if kind is nn.ELU:
        alpha = m.alpha
        return _Kernels(
            lambda x: F.elu(x, alpha),
            lambda g, pre: _aten.elu_backward.default(g, alpha, 1, 1, False, pre),
            False,
        )
    if kind is nn.GELU:
        approximate = m.approximate
        return _Kernels(
            lambda x: F.gelu(x, approximate=approximate),
            lambda g, pre: _aten.gelu_backward.default(g, pre, approximate=approximate),
            False,
        )
    if kind is nn.LeakyReLU:
        slope = m.negative_slope
        return _Kernels(
            lambda x: F.leaky_relu(x, slope),
            lambda g, pre: _aten.leaky_relu_backward.default(g, pre, slope, False),
            False,
        )
    if kind is nn.SiLU:
        return _Kernels(F.silu, lambda g, pre: _aten.silu_backward.default(g, pre), False)
    return None


def _sequential(model: nn.Module) -> nn.Sequential | None:
    """The ``nn.Sequential`` that ``model(x)`` runs, or None when that is not known."""
    if type(model) is nn.Sequential:
        return model
    if isinstance(model, MLPPolicy) and type(model).forward is MLPPolicy.forward:
        return model.net
    return None


@dataclass(frozen=True)
class _Hidden:
    linear: nn.Linear
    act: _Kernels
    dropout: Dropout | None


@dataclass(frozen=True)
class _Plan:
    hidden: tuple[_Hidden, ...]
    head: nn.Linear


def _plan(model: nn.Module) -> _Plan | None:
    """Match ``model`` against ``[Linear, activation, optional Dropout] * n, Linear``; None if it differs."""
    net = _sequential(model)
    if net is None:
        return None
    layers = list(net)

    def linear(i: int) -> nn.Linear | None:
        m = layers[i] if i < len(layers) else None
        return m if type(m) is nn.Linear and m.bias is not None else None

    hidden: list[_Hidden] = []
    i = 0
    while i < len(layers) - 1:
        lin = linear(i)
        act = _kernels(layers[i + 1]) if lin is not None else None
        if lin is None or act is None:
            return None
        i += 2
        drop = None
        if i < len(layers) and type(layers[i]) is Dropout:
            drop, i = layers[i], i + 1
        hidden.append(_Hidden(lin, act, drop))
    head = linear(len(layers) - 1) if i == len(layers) - 1 else None
    return None if head is None else _Plan(tuple(hidden), head)


def supports(model: nn.Module) -> bool:
    """Whether :func:`train_forward` has a fast path for ``model``'s structure."""
    return _plan(model) is not None


class _MLPFunction(torch.autograd.Function):
    """The planned MLP's training forward with a hand-written backward (one autograd node).

    Forward per hidden layer: ``F.linear`` (``addmm(b, h, W.t())`` for 2-d inputs), the activation,
    the dropout mask (``out * mask``, as :class:`rl_lab.policy.Dropout` does). Backward: what
    autograd computes for those ops, in the same order and layout: ``dW = g.t() @ h`` (``addmm``'s
    gradient for a transposed ``mat2``), ``db = g.sum(0)``, ``g = (g @ W) * mask`` and the
    activation's backward kernel.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, plan: _Plan, masks: list[torch.Tensor | None], *params: torch.Tensor):
        inputs: list[torch.Tensor] = [x]  # each Linear's input
        acts: list[torch.Tensor] = []  # per hidden layer: what its activation's backward takes
        h = x
        for i, layer in enumerate(plan.hidden):
            pre = F.linear(h, params[2 * i], params[2 * i + 1])
            out = layer.act.forward_(pre) if layer.act.forward_ is not None else layer.act.forward(pre)
            acts.append(out if layer.act.saves_output else pre)
            h = out * masks[i] if masks[i] is not None else out
            inputs.append(h)
        logits = F.linear(h, params[-2], params[-1])
        ctx.plan = plan
        ctx.has_mask = [m is not None for m in masks]
        ctx.save_for_backward(*inputs, *acts, *[m for m in masks if m is not None], *params)
        return logits

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        plan: _Plan = ctx.plan
        n = len(plan.hidden)
        saved = ctx.saved_tensors
        inputs, acts, rest = saved[: n + 1], saved[n + 1 : 2 * n + 1], saved[2 * n + 1 :]
        n_masks = sum(ctx.has_mask)
        mask_iter = iter(rest[:n_masks])
        masks = [next(mask_iter) if has else None for has in ctx.has_mask]
        params = rest[n_masks:]
        grads: list[torch.Tensor | None] = [None] * len(params)
        g = grad
        for i in range(n, -1, -1):
            grads[2 * i] = g.t().mm(inputs[i])
            grads[2 * i + 1] = g.sum(0)
            if i == 0:
                break
            g = g.mm(params[2 * i])  # gradient of layer i's input: hidden layer i - 1's (masked) output
            if masks[i - 1] is not None:
                g.mul_(masks[i - 1])  # g is mm's fresh output: in place, the same product
            g = plan.hidden[i - 1].act.backward(g, acts[i - 1])
        grad_x = g.mm(params[0]) if ctx.needs_input_grad[0] else None
        return (grad_x, None, None, *grads)


class _FastTrainForward:
    """``model(x)`` for a planned MLP: the one-node path in training mode with gradients, else the model."""

    def __init__(self, model: nn.Module, plan: _Plan) -> None:
        self.model, self.plan = model, plan
        self.params = [p for layer in (*[h.linear for h in plan.hidden], plan.head) for p in (layer.weight, layer.bias)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.model.training and torch.is_grad_enabled() and x.dim() == 2):
            return self.model(x)
        batch = x.shape[0]
        masks: list[torch.Tensor | None] = []
        for h in self.plan.hidden:  # drawn layer by layer, as the Sequential's Dropouts draw them
            d = h.dropout
            use = d is not None and d.training and d.p != 0.0
            masks.append(d.mask((batch, h.linear.out_features), x.device) if use else None)
        return _MLPFunction.apply(x, self.plan, masks, *self.params)


def train_forward(model: nn.Module, fast: bool = True) -> Forward:
    """The logits function of :func:`rl_lab.train.fit`: the fast step if ``fast`` and it fits, else ``model``."""
    plan = _plan(model) if fast else None
    return model if plan is None else _FastTrainForward(model, plan)


def inference_forward(model: nn.Module) -> Forward:
    """``model(x)`` in evaluation mode without the ``nn.Module`` call of every layer (about half the cost at batch 100).

    Each layer of the model's ``nn.Sequential`` runs the function its ``forward`` runs
    (``F.linear``, the activation, ``F.layer_norm``); dropout, the identity in evaluation, is
    skipped; any other module is called as is. In training mode, or for a model that is not a
    known ``nn.Sequential``, this is ``model`` itself. Forward hooks on inner layers are not run.
    """
    net = _sequential(model)
    if net is None:
        return model
    steps: list[Forward] = []
    drops: list[nn.Module] = []
    for m in net:
        kernels = _kernels(m)
        if type(m) is nn.Linear:
            steps.append(lambda h, m=m: F.linear(h, m.weight, m.bias))
        elif type(m) in (Dropout, nn.Dropout):
            drops.append(m)
        elif kernels is not None:
            steps.append(kernels.forward)
        elif type(m) is nn.LayerNorm:
            steps.append(lambda h, m=m: F.layer_norm(h, m.normalized_shape, m.weight, m.bias, m.eps))
        else:
            steps.append(m)

    def forward(x: torch.Tensor) -> torch.Tensor:
        if model.training or any(d.training for d in drops):
            return model(x)
        for step in steps:
            x = step(x)
        return x

    return forward
