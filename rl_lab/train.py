"""Supervised training of the policy on (observation, action) pairs: cross-entropy, Adam, mini-batches.

Discrete actions are a classification (cross-entropy on the logits, accuracy reported). Box actions
are a regression: the mean squared error between the squashed outputs ``tanh(u)`` and the kept
actions scaled into ``[-1, 1]^d`` (:meth:`rl_lab.actions.ActionSpec.to_unit`); no accuracy. A
Gaussian head (``policy.box_head=gaussian``) minimises the negative log-likelihood of the kept
actions under ``N(tanh(u), std(obs)^2)`` in that unit box instead (:func:`gaussian_nll`): the
means fit as with the MSE, weighted by the learned precision, and the std fits the elites' spread.

The data stay in tensors on the device; each epoch draws a seeded permutation and slices
mini-batches out of it (no ``DataLoader``: collating 64 single samples per batch costs more than
the step itself on CPU). The logits come from the model, or from the equivalent one-node step of
:func:`rl_lab.fast_mlp.train_forward` (``trainer.fast``) where the model's structure allows it.
Adam runs torch's fused kernel (:class:`Adam`). Dropout masks come from a seeded numpy generator
(:class:`rl_lab.policy.Dropout`), and torch's global RNG (``nn.Dropout`` or any other random op in
a model) is seeded from the fit's seed under ``fork_rng``, so the same seed gives the same weights.
``TrainState`` holds everything needed to resume after an interruption bit-for-bit: optimizer, the
RNG states and the epoch reached (the weights go next to it in the checkpoint).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rl_lab.config import TrainerConfig
from rl_lab.fast_mlp import train_forward
from rl_lab.policy import Dropout, MLPPolicy
from rl_lab.utils import derive_seed

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a fit produced, per epoch and at the end."""

    epochs: int
    samples: int  # training samples (excluding the validation split)
    val_samples: int
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    seconds: float = 0.0
    optimizer_state: dict[str, Any] | None = None  # to continue with the same Adam moments (warm start)

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's figures."""
        return self.history[-1] if self.history else {}


@dataclass
class TrainState:
    """A resumable snapshot taken at an epoch boundary."""

    epoch: int  # epochs completed
    optimizer: dict[str, Any]
    shuffle_rng: torch.Tensor
    dropout_rng: dict[str, Any]  # numpy bit-generator state of the dropout masks
    history: list[dict[str, float]]
    # torch's global RNG (CPU, and the CUDA device trained on): nn.Dropout and other random ops in a
    # model draw from it. None in checkpoints written before these fields (their models drew nothing from it).
    torch_rng: torch.Tensor | None = None
    cuda_rng: torch.Tensor | None = None


class Adam:
    """Adam with torch's fused kernel: the arithmetic of ``torch.optim.Adam(fused=True)``, bit for bit.

    Why a private API (``torch._fused_adam_``, the kernel behind ``torch.optim.Adam(fused=True)``)
    rather than the public optimizer. Measured with torch 2.13.0+cpu on the 2-core CPU machine, one
    thread: constructing ``torch.optim.Adam`` imports ``torch._dynamo``, 2.2-3.1 s in a fresh process
    (the recipe's whole 5-epoch fit takes about 11.5 s there); and each ``step()`` adds Python
    bookkeeping (param groups, hooks, profiler scopes): 0.93-1.0 ms against 0.62-0.76 ms here for the
    recipe's MLP, +0.25-0.3 ms, about 4% of its 7 ms training step. If a torch release changes or
    drops the kernel, ``tests/test_train.py::test_adam_is_torch_fused_adam_bit_for_bit`` (weights
    against ``torch.optim.Adam(fused=True)`` after 30 steps, ``torch.equal``) fails; checked on torch
    2.13.0 only. The state (step counts and moments) is a plain dict of tensors, checkpointed for resume.
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # The step counts are 0-d views into one vector: a step bumps them all with one add instead of
        # a _foreach_add_ over a dozen scalar tensors (about 0.1 ms per step on CPU).
        device = self.params[0].device if self.params else None
        self._step_counts = torch.zeros(len(self.params), dtype=torch.float32, device=device)
        self.steps = list(self._step_counts.unbind())

    def zero_grad(self) -> None:
        """Drop the gradients (as ``set_to_none=True``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if len(live) == len(self.params):
            self._step_counts.add_(1)
        else:
            self._step_counts[live] += 1
        steps = [self.steps[i] for i in live]
        torch._fused_adam_(
            [self.params[i] for i in live],
            [self.params[i].grad for i in live],
            [self.exp_avgs[i] for i in live],
            [self.exp_avg_sqs[i] for i in live],
            [],
            steps,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=self.weight_decay,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )

    def state_dict(self) -> dict[str, Any]:
        """Copies of the step counts and moments."""
        return {
            "step": [t.clone() for t in self.steps],
            "exp_avg": [t.clone() for t in self.exp_avgs],
            "exp_avg_sq": [t.clone() for t in self.exp_avg_sqs],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (same parameter shapes, in the same order)."""
        for name, mine in (("step", self.steps), ("exp_avg", self.exp_avgs), ("exp_avg_sq", self.exp_avg_sqs)):
            for dst, src in zip(mine, state[name], strict=True):
                dst.copy_(src)


def split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split of ``n`` sample indices."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction)) if n > 1 else 0
    n_val = min(n_val, n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def fit(
    policy: MLPPolicy,
    obs: np.ndarray,
    actions: np.ndarray,
    cfg: TrainerConfig,
    *,
    seed: int,
    device: str = "cpu",
    on_epoch: Callable[[int, dict[str, float], TrainState], None] | None = None,
    resume: TrainState | None = None,
    optimizer_state: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``policy`` in place to predict ``actions`` from ``obs``.

    Args:
        policy: the network (moved to ``device``).
        obs: ``(samples, obs_dim)`` float32.
        actions: ``(samples,)`` action ids (Discrete) or ``(samples, d)`` actions inside the bounds (Box).
        cfg: epochs, batch size, learning rate, validation share.
        seed: seeds the split, the shuffling and dropout.
        device: torch device.
        on_epoch: called after every epoch with ``(epoch, figures, state)``: logging and checkpoints.
        resume: continue from this snapshot instead of starting at epoch 0.
        optimizer_state: start Adam from these moments (a warm start continues the previous fit).
        should_stop: polled every few batches; True raises :class:`KeyboardInterrupt` (the last
            completed epoch's state was already handed to ``on_epoch``).

    Returns:
        Per-epoch losses and accuracies (``train/*`` and ``val/*``).
    """
    dev = torch.device(device)
    devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with _flush_denormals(), torch.random.fork_rng(devices=devices):  # the caller's global RNG is left as it was
        return _fit(policy, obs, actions, cfg, seed, device, on_epoch, resume, optimizer_state, should_stop)


@contextmanager
def _flush_denormals() -> Iterator[None]:
    """Treat denormal floats as zero on CPU while training, then restore the previous mode.

    As TensorFlow does on CPU by default. Adam's moments and the activations of a small MLP drift
    into the denormal range as training goes on, and every operation on a denormal is microcoded:
    without this the recipe's epochs slow down from 1.15 s to 1.72 s by the fifth (measured on
    the 2-core Xeon). Values below 1.2e-38 become 0, far below anything that changes a result.
    """
    was_on = torch.tensor([1e-39]).mul(1.0).item() == 0.0  # torch has no getter: probe it
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported and not was_on:
            torch.set_flush_denormal(False)


def _fit(
    policy: MLPPolicy,
    obs: np.ndarray,
    actions: np.ndarray,
    cfg: TrainerConfig,
    seed: int,
    device: str,
    on_epoch: Callable[[int, dict[str, float], TrainState], None] | None,
    resume: TrainState | None,
    optimizer_state: dict[str, Any] | None,
    should_stop: Callable[[], bool] | None,
) -> TrainResult:
    t_begin = time.perf_counter()
    train_idx, val_idx = split(len(actions), cfg.val_fraction, seed)
    x = torch.from_numpy(np.ascontiguousarray(obs, dtype=np.float32)).to(device)  # (S, obs_dim)
    continuous = bool(getattr(policy, "continuous", False))  # an MLPPolicy with a Box head
    if continuous:  # (S, d): the kept actions in the unit box, the targets of tanh(outputs)
        y = torch.from_numpy(np.ascontiguousarray(policy.action.to_unit(actions), dtype=np.float32)).to(device)
    else:
        y = torch.from_numpy(np.ascontiguousarray(actions, dtype=np.int64)).to(device)  # (S,)
    x_train, y_train = x[train_idx], y[train_idx]
    x_val, y_val = x[val_idx], y[val_idx]
    policy.to(device)
    optimizer = Adam(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    forward = train_forward(policy, cfg.fast)  # policy itself, or the same computation in one autograd node
    torch_seed = derive_seed(seed, 1)  # torch's global RNG (inside fit's fork_rng), for nn.Dropout and the like
    torch.default_generator.manual_seed(torch_seed)
    if torch.device(device).type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(torch_seed)
    shuffle_rng = torch.Generator().manual_seed(seed)
    dropout_rng = np.random.default_rng(seed)
    for module in policy.modules():
        if isinstance(module, Dropout):
            module.rng = dropout_rng
    history: list[dict[str, float]] = []
    start_epoch = 0
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer)
        shuffle_rng.set_state(resume.shuffle_rng)
        dropout_rng.bit_generator.state = resume.dropout_rng
        if resume.torch_rng is not None:
            torch.set_rng_state(resume.torch_rng)
        if resume.cuda_rng is not None and torch.device(device).type == "cuda":
            torch.cuda.set_rng_state(resume.cuda_rng, device)
        history, start_epoch = list(resume.history), resume.epoch

    loss_fn = box_loss(bool(getattr(policy, "gaussian", False))) if continuous else nn.CrossEntropyLoss()
    n, bs = len(train_idx), cfg.batch_size
    n_batches = max(1, -(-n // bs))
    with _progress(cfg.progress, (cfg.epochs - start_epoch) * n_batches) as advance:
        for epoch in range(start_epoch, cfg.epochs):
            policy.train()
            perm = torch.randperm(n, generator=shuffle_rng).to(device)
            xs, ys = x_train[perm], y_train[perm]  # this epoch's order: each batch is a contiguous slice
            losses: list[torch.Tensor] = []  # per batch, summed once at the end of the epoch
            outputs: list[torch.Tensor] = []
            for b in range(n_batches):
                if should_stop is not None and b % 16 == 0 and should_stop():
                    raise KeyboardInterrupt
                xb, yb = xs[b * bs : (b + 1) * bs], ys[b * bs : (b + 1) * bs]  # (B, obs_dim), (B,)
                logits = forward(xb)
                loss = loss_fn(logits, yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.detach())
                if not continuous:  # for the accuracy
                    outputs.append(logits.detach())
                advance(1)
            with torch.no_grad():
                sizes = torch.full((n_batches,), float(bs), device=device)
                sizes[-1] = n - bs * (n_batches - 1)
                loss_sum = float((torch.stack(losses) * sizes).sum()) if n else 0.0
                correct = int((torch.cat(outputs).argmax(1) == ys).sum()) if n and not continuous else 0
            figures = {"train/loss": loss_sum / max(n, 1)}
            if not continuous:
                figures["train/accuracy"] = correct / max(n, 1)
            figures.update(_validate(policy, x_val, y_val, loss_fn, continuous))
            history.append(figures)
            state = TrainState(
                epoch=epoch + 1,
                optimizer=optimizer.state_dict(),
                shuffle_rng=shuffle_rng.get_state(),
                dropout_rng=dropout_rng.bit_generator.state,
                history=list(history),
                torch_rng=torch.get_rng_state(),
                cuda_rng=torch.cuda.get_rng_state(device) if torch.device(device).type == "cuda" else None,
            )
            if on_epoch is not None:
                on_epoch(epoch, figures, state)
    policy.eval()
    return TrainResult(
        epochs=cfg.epochs,
        samples=n,
        val_samples=len(val_idx),
        history=history,
        seconds=time.perf_counter() - t_begin,
        optimizer_state=optimizer.state_dict(),
    )


def box_loss(gaussian: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A Box head's loss: :func:`squashed_mse` (a mean head) or :func:`gaussian_nll` (a Gaussian head)."""
    return gaussian_nll if gaussian else squashed_mse


def squashed_mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A mean head's loss: the mean squared error of ``tanh(outputs)`` against the unit-box targets."""
    return nn.functional.mse_loss(torch.tanh(out), target)


def gaussian_nll(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A Gaussian head's loss: the negative log-likelihood of the unit-box targets, per dimension, averaged.

    ``out`` is ``(B, 2 d)``: unsquashed means ``u``, then log-stds (clamped as the behaviour clamps them);
    the density is ``N(tanh(u), exp(log_std)^2)``, constant ``log(2 pi) / 2`` included.
    """
    means, log_std = MLPPolicy.split(out, gaussian=True)
    z = (target - torch.tanh(means)) * torch.exp(-log_std)
    return (0.5 * z * z + log_std).mean() + 0.5 * math.log(2 * math.pi)


@torch.inference_mode()
def _validate(
    policy: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable[..., torch.Tensor], continuous: bool
) -> dict[str, float]:
    if len(y) == 0:
        return {}
    policy.eval()
    logits = torch.cat([policy(xb) for xb in x.split(8192)])
    figures = {"val/loss": float(loss_fn(logits, y))}
    if not continuous:
        figures["val/accuracy"] = float((logits.argmax(1) == y).float().mean())
    return figures


def _progress(enabled: bool, total: int) -> Any:
    """A rich progress bar on a TTY, nothing otherwise. Yields ``advance(n)``."""
    if not (enabled and sys.stderr.isatty() and total > 0):
        return nullcontext(lambda n: None)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    @contextmanager
    def bar() -> Any:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as progress:
            task = progress.add_task("train", total=total)
            yield lambda k: progress.advance(task, k)

    return bar()
