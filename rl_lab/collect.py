"""Vectorized rollouts with an exact, unbiased episode budget, and the score filter.

How the bookkeeping works (written once, here):

- **Exact budget, no length bias.** Exactly ``episodes`` episodes are started and every one that
  was started is played to its end. Sub-env ``e`` starts episode ``e``; whenever a sub-env finishes
  an episode it starts the next unstarted one, until all have been started; then it goes idle.
  Which episodes count never depends on their own outcome, so short episodes are not
  over-sampled (counting "the first N to finish" would be biased, see SB3 issue #402).
- **NEXT_STEP autoreset.** In gymnasium 1.x the ``step()`` after an episode ends is a reset step:
  its action is ignored, it returns the first observation of the next episode, reward 0 and no
  flags. It is not data. An episode that ended at step ``t`` is followed by one whose first row
  is ``t + 2``.
- **Every step is recorded**, the first one included (the original blog script paired each
  action with the previous observation and so dropped the first step of every episode).
- **Streaming.** Steps go into a ring buffer of ``max_steps + chunk + 1`` rows per sub-env. Every
  ``chunk`` steps the episodes that ended are found in one vectorized pass, scored, filtered and
  (if kept) gathered out of the ring. With ``min_score`` only kept steps are ever stored, so memory
  does not grow with the number of episodes; ``top_fraction`` needs every episode's steps until
  the end (memory grows with the total number of steps).
- The loop stops once every started episode has ended; idle sub-envs do at most ``chunk - 1`` steps
  of wasted work after the last episode ends, plus the tail of the longest remaining episode.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from gymnasium.vector import VectorEnv

from rl_lab.data import Dataset
from rl_lab.policy import ActFn


@dataclass
class CollectStats:
    """Throughput figures of one collection."""

    env_steps: int  # sub-env steps computed (num_envs per step() call)
    useful_steps: int  # steps that belong to the counted episodes
    seconds: float

    @property
    def steps_per_second(self) -> float:
        """Useful steps per second."""
        return self.useful_steps / max(self.seconds, 1e-9)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, s + l)`` for each pair, vectorized: ``(lengths.sum(),)`` int64."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths  # exclusive cumsum
    return np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)


def collect(
    venv: VectorEnv,
    behaviour: ActFn | np.random.Generator,
    episodes: int,
    *,
    max_steps: int,
    seed: int,
    min_score: float | None = None,
    top_fraction: float | None = None,
    chunk: int = 64,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Dataset, CollectStats]:
    """Play exactly ``episodes`` episodes and keep those that pass the filter.

    Args:
        venv: a NEXT_STEP-autoreset vector env whose episodes are truncated at ``max_steps``.
        behaviour: batched action function, ``(num_envs, obs_dim) float32 -> (num_envs,)`` ints; or a numpy
            ``Generator`` for the uniform random behaviour (its actions are drawn a chunk at a time).
        episodes: how many episodes to start and finish.
        max_steps: the env's truncation limit (sizes the ring buffer).
        seed: reset seed of the vector env.
        min_score: keep episodes whose return is ``>= min_score`` ...
        top_fraction: ... or the best ``round(top_fraction * episodes)`` episodes (at least one; ties go to the
            episode started first). Exactly one of the two is given.
        chunk: steps between two bookkeeping passes.
        should_stop: polled once per chunk; when it returns True the collection stops early and
            :class:`KeyboardInterrupt` is raised.

    Returns:
        The dataset (``meta`` holds ``threshold``, the lowest score kept) and throughput figures.

    Example:
        >>> from rl_lab.envs import make_vec_env
        >>> venv = make_vec_env("CartPole-v1", num_envs=64, max_steps=500)
        >>> ds, stats = collect(venv, np.random.default_rng(0), 100, max_steps=500, seed=0, min_score=30)
        >>> ds.episode_returns.shape
        (100,)
    """
    if (min_score is None) == (top_fraction is None):
        raise ValueError("give exactly one of min_score / top_fraction")
    t_begin = time.perf_counter()
    n_envs = venv.num_envs
    obs_dim = int(venv.single_observation_space.shape[0])
    ring_len = max_steps + chunk + 1
    # (T, obs_dim, N): the native envs hand out observations feature-major, so a step's copy is contiguous
    obs_ring = np.empty((ring_len, obs_dim, n_envs), dtype=np.float32)
    act_ring = np.empty((ring_len, n_envs), dtype=np.int64)
    rew_ring = np.empty((ring_len, n_envs), dtype=np.float64)
    done_ring = np.zeros((ring_len, n_envs), dtype=bool)
    n_actions = int(venv.single_action_space.n)
    uniform = isinstance(behaviour, np.random.Generator)

    env_ep = np.where(np.arange(n_envs) < episodes, np.arange(n_envs), -1)  # episode in each sub-env, -1 idle
    env_start = np.zeros(n_envs, dtype=np.int64)  # its first row (absolute step index)
    started, finished = min(n_envs, episodes), 0
    returns = np.zeros(episodes, dtype=np.float64)
    lengths = np.zeros(episodes, dtype=np.int64)
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # (ids, lengths, obs, actions)

    obs, _ = venv.reset(seed=seed)
    t = 0
    while finished < episodes:
        if should_stop is not None and should_stop():
            raise KeyboardInterrupt
        t0 = t
        rows = np.arange(t0, t0 + chunk) % ring_len
        if uniform:  # the random behaviour does not look at observations: draw the chunk's actions at once
            act_ring[rows] = behaviour.integers(0, n_actions, size=(chunk, n_envs))
        for r in rows:
            obs_ring[r] = obs.T
            if not uniform:
                act_ring[r] = behaviour(np.asarray(obs, dtype=np.float32))
            obs, rew_ring[r], terminated, truncated, _ = venv.step(act_ring[r])
            np.logical_or(terminated, truncated, out=done_ring[r])
        t += chunk
        ev_t, ev_e = np.nonzero(done_ring[rows])  # done events in step order, then env order
        ev_t += t0
        keep_ev = env_ep[ev_e] >= 0
        ev_t, ev_e = ev_t[keep_ev], ev_e[keep_ev]
        if ev_t.size == 0:
            continue
        ids, starts, ends, envs, started = _episode_ends(ev_t, ev_e, env_ep, env_start, started, episodes)
        ep_len = ends - starts + 1
        flat_t = _ranges(starts, ep_len) % ring_len  # every row of every ended episode
        flat_e = np.repeat(envs, ep_len)
        ep_ret = np.add.reduceat(rew_ring[flat_t, flat_e], np.cumsum(ep_len) - ep_len)
        returns[ids], lengths[ids] = ep_ret, ep_len
        finished += ids.size
        sel = ep_ret >= min_score if min_score is not None else np.ones(ids.size, dtype=bool)
        if sel.any():
            rows_sel = np.repeat(sel, ep_len)
            t_sel, e_sel = flat_t[rows_sel], flat_e[rows_sel]
            blocks.append((ids[sel], ep_len[sel], obs_ring[t_sel, :, e_sel], act_ring[t_sel, e_sel]))

    kept, threshold = _select(returns, min_score, top_fraction)
    obs_out, act_out = _assemble(blocks, kept, obs_dim)
    dataset = Dataset(
        obs=obs_out,
        actions=act_out,
        episode_returns=returns,
        episode_lengths=lengths,
        kept=kept,
        meta={"threshold": threshold, "min_score": min_score, "top_fraction": top_fraction, "seed": seed},
    )
    stats = CollectStats(env_steps=t * n_envs, useful_steps=int(lengths.sum()), seconds=time.perf_counter() - t_begin)
    return dataset, stats


def _episode_ends(
    ev_t: np.ndarray, ev_e: np.ndarray, env_ep: np.ndarray, env_start: np.ndarray, started: int, episodes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Turn the done events of one chunk into ended episodes, and start the next ones (in place).

    Events come in step order. The k-th event hands out episode id ``started + k`` while the budget
    lasts; after that, each sub-env's next event ends its last counted episode and idles it, and
    any later event of that sub-env is ignored.

    Returns:
        ``(ids, starts, ends, envs, started)`` of the episodes that ended, and the new ``started``.
    """
    k = np.arange(ev_t.size)
    budget = episodes - started
    new_id = np.where(k < budget, started + k, -1)
    valid = k < budget
    n_new = int(valid.sum())
    tail = np.flatnonzero(~valid)
    if tail.size:
        _, first = np.unique(ev_e[tail], return_index=True)
        valid[tail[first]] = True
    ev_t, ev_e, new_id = ev_t[valid], ev_e[valid], new_id[valid]

    order = np.lexsort((ev_t, ev_e))  # group by env, in step order within each env
    t_s, e_s, nid_s = ev_t[order], ev_e[order], new_id[order]
    same = np.r_[False, e_s[1:] == e_s[:-1]]  # not this env's first event of the chunk
    ids = np.where(same, np.r_[-1, nid_s[:-1]], env_ep[e_s])
    starts = np.where(same, np.r_[0, t_s[:-1]] + 2, env_start[e_s])  # +2: skip the NEXT_STEP reset step

    last = np.r_[~same[1:], True]  # each env's last event of the chunk
    env_ep[e_s[last]] = nid_s[last]
    env_start[e_s[last]] = t_s[last] + 2
    return ids, starts, t_s, e_s, started + n_new


def _select(returns: np.ndarray, min_score: float | None, top_fraction: float | None) -> tuple[np.ndarray, float]:
    """The kept mask and the threshold used (the lowest kept score; NaN when nothing is kept)."""
    if min_score is not None:
        kept = returns >= min_score
    else:
        k = max(1, int(round(top_fraction * returns.size)))
        order = np.lexsort((np.arange(returns.size), -returns))  # best first, ties: started first
        kept = np.zeros(returns.size, dtype=bool)
        kept[order[:k]] = True
    threshold = float(returns[kept].min()) if kept.any() else float("nan")
    return kept, threshold


def _assemble(
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], kept: np.ndarray, obs_dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the kept episodes' steps in episode-id order."""
    if not blocks:
        return np.zeros((0, obs_dim), dtype=np.float32), np.zeros(0, dtype=np.int64)
    ids = np.concatenate([b[0] for b in blocks])
    lens = np.concatenate([b[1] for b in blocks])
    obs = np.concatenate([b[2] for b in blocks])
    act = np.concatenate([b[3] for b in blocks])
    offsets = np.cumsum(lens) - lens
    order = np.argsort(ids, kind="stable")
    order = order[kept[ids[order]]]
    rows = _ranges(offsets[order], lens[order])
    return obs[rows], act[rows]
