"""The supervised dataset: flat (observation, action) arrays plus per-episode arrays, saved as ``.npz``.

Layout (all plain arrays, so ``np.load(..., allow_pickle=False)`` reads it):

- ``obs`` ``(samples, obs_dim)`` float32 and ``actions``: the steps of the kept episodes,
  concatenated in episode order, first step of each episode included. Discrete actions are
  ``(samples,)`` unsigned integers, as narrow as the action count allows (uint8 up to 256 actions;
  :meth:`rl_lab.actions.ActionSpec.store_dtype`); Box actions are ``(samples, d)`` float32 vectors,
  exactly the values the env was given;
- ``episode_returns`` / ``episode_lengths`` / ``kept`` ``(episodes,)``: every collected episode;
- the kept episodes' full transitions (what a Minari episode needs):
  ``rewards`` ``(samples,)`` float64, aligned with ``obs``/``actions``;
  ``terminated`` ``(kept episodes,)`` bool: the episode ended by termination (else it was truncated);
  ``final_obs`` ``(kept episodes, obs_dim)`` float32: the observation returned by its last step;
- ``meta``: a JSON string (env id, seed, filter, threshold, counts).

The format stays ``rl_lab.dataset/1``: the transition arrays are optional, so files written before
they existed still load (with ``rewards``, ``terminated`` and ``final_obs`` set to None).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rl_lab.actions import ActionSpec, BoxStats
from rl_lab.errors import ConfigError
from rl_lab.utils import atomic_path, sha256_arrays

DATASET_FORMAT = "rl_lab.dataset/1"
_ARRAYS = ("obs", "actions", "episode_returns", "episode_lengths", "kept")
_OPTIONAL = ("rewards", "terminated", "final_obs")  # absent from files written before they were recorded


@dataclass
class Dataset:
    """Kept (observation, action) pairs and the statistics of every collected episode."""

    obs: np.ndarray  # (samples, obs_dim) float32
    actions: np.ndarray  # (samples,) unsigned ints (Discrete) or (samples, d) float32 (Box)
    episode_returns: np.ndarray  # (episodes,) float64, all episodes in start order
    episode_lengths: np.ndarray  # (episodes,) int64
    kept: np.ndarray  # (episodes,) bool
    meta: dict[str, Any] = field(default_factory=dict)
    rewards: np.ndarray | None = None  # (samples,) float64, per step of the kept episodes
    terminated: np.ndarray | None = None  # (kept episodes,) bool: ended by termination, else truncation
    final_obs: np.ndarray | None = None  # (kept episodes, obs_dim) float32: the obs its last step returned

    @property
    def has_transitions(self) -> bool:
        """Whether the kept episodes' rewards, terminations and final observations are recorded."""
        return all(getattr(self, name) is not None for name in _OPTIONAL)

    @property
    def samples(self) -> int:
        """Number of (observation, action) pairs."""
        return int(self.actions.shape[0])

    @property
    def kept_episodes(self) -> int:
        """Number of episodes that passed the filter."""
        return int(self.kept.sum())

    def action_balance(self, n_actions: int) -> np.ndarray:
        """Share of each action among the samples, ``(n_actions,)``; zeros when empty."""
        counts = np.bincount(self.actions, minlength=n_actions).astype(np.float64)
        return counts / max(counts.sum(), 1.0)

    def action_figures(self, action: ActionSpec) -> dict[str, Any]:
        """The samples' action statistics: ``action_balance`` (Discrete), or per dimension (Box, :class:`BoxStats`)."""
        if action.continuous:
            return BoxStats.of(self.actions, action.low_array, action.high_array).summary()
        return {"action_balance": [float(b) for b in self.action_balance(action.dim)]}

    def content_hash(self) -> str:
        """SHA-256 of the arrays (not of the compressed file)."""
        return sha256_arrays(self._arrays())

    def _arrays(self) -> dict[str, np.ndarray]:
        names = (*_ARRAYS, *(n for n in _OPTIONAL if getattr(self, n) is not None))
        return {name: getattr(self, name) for name in names}

    def save(self, path: str | Path) -> Path:
        """Write a compressed ``.npz`` atomically."""
        meta = json.dumps({"format": DATASET_FORMAT, **self.meta}, sort_keys=True)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, meta=np.array(meta), **self._arrays())
        return Path(path)


def load_dataset(path: str | Path, key: str = "collector.dataset") -> Dataset:
    """Read a dataset written by :meth:`Dataset.save`; anything else is a :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}={str(path)!r}: no such file. Give the path of a dataset.npz written by rl-lab.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in (*_ARRAYS, "meta", *(n for n in _OPTIONAL if n in f.files))}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise ConfigError(
            f"{key}={str(path)!r} is not a readable rl_lab dataset ({type(e).__name__}: {str(e)[:200]}). "
            "It is truncated, corrupt or written by another tool; give a dataset.npz written by rl-lab."
        ) from None
    if meta.pop("format", None) != DATASET_FORMAT:
        raise ConfigError(f"{key}={str(path)!r} is an .npz file but not an rl_lab dataset ({DATASET_FORMAT}).")
    ds = Dataset(meta=meta, **arrays)
    if (
        ds.obs.ndim != 2
        or ds.actions.ndim not in (1, 2)
        or ds.obs.shape[0] != ds.actions.shape[0]
        or ds.kept.shape != ds.episode_returns.shape
    ):
        raise ConfigError(f"{key}={str(path)!r}: the arrays have inconsistent shapes; the file is damaged.")
    n_kept = ds.kept_episodes
    if (
        (ds.rewards is not None and ds.rewards.shape != ds.actions.shape[:1])
        or (ds.terminated is not None and ds.terminated.shape != (n_kept,))
        or (ds.final_obs is not None and ds.final_obs.shape != (n_kept, ds.obs.shape[1]))
    ):
        raise ConfigError(f"{key}={str(path)!r}: the transition arrays have inconsistent shapes; the file is damaged.")
    return ds
