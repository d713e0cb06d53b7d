"""Action spaces: what rl_lab needs of a ``Discrete`` or a flat ``Box`` action space, in one place.

- ``Discrete(n)``: the network outputs ``n`` logits and learns by cross-entropy; datasets store the
  actions as the smallest unsigned integer that holds them; the statistics are the action counts
  and the **action balance** (the share of each action).
- ``Box(low, high, (d,))`` with finite bounds: the network outputs ``d`` unsquashed means ``u``; the
  action is ``low + (tanh(u) + 1) / 2 * (high - low)`` (always inside the bounds) and the loss is
  the mean squared error in the unit box ``[-1, 1]^d`` (:meth:`ActionSpec.to_unit`), so every
  dimension weighs the same whatever its range. Datasets store float32 ``(samples, d)``. The
  statistics are per dimension (:class:`BoxStats`): ``action_mean``, ``action_std``,
  ``action_saturation`` (the share of actions at or within 1% of the range from a bound) and a
  histogram of ``HISTOGRAM_BINS`` equal bins over ``[low, high]``.

Noise for the Gaussian behaviour is given in units of half the action range (``collector.noise_std``):
``noise_std=1`` is a standard deviation of ``(high - low) / 2`` in every dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

HISTOGRAM_BINS = 20
SATURATION_BAND = 0.01  # an action within 1% of the range from a bound counts as saturated


@dataclass(frozen=True)
class ActionSpec:
    """A ``Discrete(n)`` (``n`` set) or a flat finite ``Box`` (``low`` and ``high`` set) action space."""

    n: int | None = None
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    @classmethod
    def box(cls, low: Any, high: Any) -> ActionSpec:
        return cls(low=tuple(float(x) for x in np.ravel(low)), high=tuple(float(x) for x in np.ravel(high)))

    @property
    def continuous(self) -> bool:
        return self.n is None

    @property
    def dim(self) -> int:
        """The network's output size: ``n`` logits, or ``d`` means."""
        return int(self.n) if self.n is not None else len(self.low or ())

    @property
    def low_array(self) -> np.ndarray:
        return np.asarray(self.low, dtype=np.float32)

    @property
    def high_array(self) -> np.ndarray:
        return np.asarray(self.high, dtype=np.float32)

    def store_dtype(self) -> np.dtype:
        """How a dataset stores one action: uint8 (up to 256 actions) and wider, or float32 vectors."""
        if self.continuous:
            return np.dtype(np.float32)
        return np.dtype(np.min_scalar_type(int(self.n) - 1))

    def row_shape(self) -> tuple[int, ...]:
        """The shape of one action: ``()`` for Discrete, ``(d,)`` for Box."""
        return (self.dim,) if self.continuous else ()

    def empty(self, *shape: int) -> np.ndarray:
        """An uninitialised array of ``shape`` actions in the store dtype."""
        return np.empty((*shape, *self.row_shape()), dtype=self.store_dtype())

    def uniform(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Uniform random actions of ``shape`` (Box: uniform in the bounds, float32)."""
        if not self.continuous:
            raise TypeError("uniform(): the collector draws discrete actions itself (raw bytes)")
        low, high = self.low_array, self.high_array
        return (low + rng.random((*shape, self.dim), dtype=np.float32) * (high - low)).astype(np.float32)

    def to_unit(self, actions: np.ndarray) -> np.ndarray:
        """Box actions mapped into ``[-1, 1]^d`` (the regression target)."""
        low, high = self.low_array, self.high_array
        return np.clip(2.0 * (np.asarray(actions, dtype=np.float32) - low) / (high - low) - 1.0, -1.0, 1.0)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_unit`, float32."""
        low, high = self.low_array, self.high_array
        return (low + (np.asarray(unit, dtype=np.float32) + 1.0) * 0.5 * (high - low)).astype(np.float32)

    def describe(self) -> str:
        if not self.continuous:
            return f"Discrete({self.n})"
        low = ", ".join(f"{a:g}" for a in self.low or ())
        high = ", ".join(f"{b:g}" for b in self.high or ())
        return f"Box({self.dim}) in [{low}] .. [{high}]"

    def new_stats(self) -> BoxStats | None:
        """A statistics accumulator for Box actions; None for Discrete (counts are enough)."""
        return BoxStats(self.low_array, self.high_array) if self.continuous else None


class BoxStats:
    """Streaming per-dimension statistics of Box actions: mean, std, saturation, histogram.

    Sums are kept in float64 in the order the batches arrive, so the same actions in the same
    order give the same figures bit for bit.

    Example:
        >>> s = BoxStats(np.array([-1.0]), np.array([1.0]))
        >>> s.update(np.array([[-1.0], [0.0], [1.0], [0.995]]))
        >>> s.summary()["action_saturation"]
        [0.75]
    """

    def __init__(self, low: np.ndarray, high: np.ndarray, bins: int = HISTOGRAM_BINS) -> None:
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        d = self.low.size
        self.count = 0
        self.total = np.zeros(d)
        self.total_sq = np.zeros(d)
        self.saturated = np.zeros(d, dtype=np.int64)
        self.edges = np.stack([np.linspace(lo, hi, bins + 1) for lo, hi in zip(self.low, self.high, strict=True)])
        self.counts = np.zeros((d, bins), dtype=np.int64)

    def update(self, actions: np.ndarray) -> None:
        """Add a batch ``(B, d)`` of actions."""
        a = np.asarray(actions, dtype=np.float64).reshape(-1, self.low.size)
        if a.shape[0] == 0:
            return
        self.count += a.shape[0]
        self.total += a.sum(axis=0)
        self.total_sq += np.square(a).sum(axis=0)
        band = SATURATION_BAND * (self.high - self.low)
        self.saturated += ((a <= self.low + band) | (a >= self.high - band)).sum(axis=0)
        bins = self.counts.shape[1]
        unit = (a - self.low) / (self.high - self.low)
        idx = np.clip(np.floor(unit * bins).astype(np.int64), 0, bins - 1)  # the upper bound joins the last bin
        for j in range(self.low.size):
            self.counts[j] += np.bincount(idx[:, j], minlength=bins)

    def merge(self, other: BoxStats) -> None:
        """Add another accumulator's actions (same bounds)."""
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        self.saturated += other.saturated
        self.counts += other.counts

    @classmethod
    def of(cls, actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> BoxStats:
        s = cls(low, high)
        s.update(actions)
        return s

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.count, 1)

    @property
    def std(self) -> np.ndarray:
        var = self.total_sq / max(self.count, 1) - np.square(self.mean)
        return np.sqrt(np.maximum(var, 0.0))

    @property
    def saturation(self) -> np.ndarray:
        return self.saturated / max(self.count, 1)

    def summary(self) -> dict[str, Any]:
        """The JSON figures: ``action_mean``, ``action_std``, ``action_saturation`` per dimension, a histogram."""
        return {
            "action_mean": [float(x) for x in self.mean],
            "action_std": [float(x) for x in self.std],
            "action_saturation": [float(x) for x in self.saturation],
            "action_histogram": {"edges": self.edges.tolist(), "counts": self.counts.tolist()},
        }


def format_box_stats(s: dict[str, Any], indent: str = " " * 9) -> str:
    """One line per dimension: mean ± std and the saturated share (each within 70 characters)."""
    rows = [
        f"dim {j}: mean {m:+.3f} ± {sd:.3f}, at a bound {100 * sat:.1f}%"
        for j, (m, sd, sat) in enumerate(zip(s["action_mean"], s["action_std"], s["action_saturation"], strict=True))
    ]
    return ("\n" + indent).join(rows)
