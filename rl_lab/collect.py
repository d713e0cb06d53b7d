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
- **Streaming.** Observations, actions and rewards go into a ring buffer of ``max_steps + chunk + 1``
  rows per sub-env. The observation a step returns is written into the next row at once, so an
  episode that ended at step ``t`` finds its final observation in row ``t + 1`` (the NEXT_STEP
  reset step's row, whose action is ignored). At most every ``chunk`` steps (a *pass*) the
  episodes that ended are found in one vectorized pass, filtered and (if kept) gathered out of
  the ring. Returns are summed as the episode plays, in float64 and in step order. With
  ``min_score`` only kept steps are ever stored,
  so memory does not grow with the number of episodes; ``top_fraction`` needs every episode's
  steps until the end (memory grows with the total number of steps). Each kept episode also keeps
  its per-step rewards, its final observation and whether it ended by termination (else truncation).
- **Idle tail.** Once every episode has started, a sub-env that ends its episode has nothing left
  to do. Envs that can ``narrow()`` (rl_lab's CartPole) drop their idle sub-envs: a pass ends
  early once a quarter of the stepped sub-envs have ended, and when at least half are idle the
  rest are moved to the front (ring columns included) and only they are stepped from then on.
  Narrowing changes no result: uniform actions are drawn for all the original sub-envs, a policy
  behaviour sees all the original rows (its rows are independent), and no sub-env is narrowed
  while its autoreset draw is pending (the draw is shared). ``tests/test_collect.py`` checks the
  data against gymnasium's CartPoleVectorEnv, which steps every sub-env to the end. Other envs
  step their idle sub-envs until the last episode ends (at most ``chunk - 1`` steps more).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from gymnasium.vector import VectorEnv

from rl_lab.actions import ActionSpec
from rl_lab.config import RANKINGS
from rl_lab.data import Dataset
from rl_lab.envs import action_spec
from rl_lab.errors import ConfigError
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
    rank_by: str = "return",
    neighbours: int = 20,
) -> tuple[Dataset, CollectStats]:
    """Play exactly ``episodes`` episodes and keep those that pass the filter.

    Args:
        venv: a NEXT_STEP-autoreset vector env whose episodes are truncated at ``max_steps``.
        behaviour: batched action function, ``(num_envs, obs_dim) float32 -> (num_envs,)`` ints (Discrete) or
            ``(num_envs, d)`` float32 (Box); or a numpy ``Generator`` for the uniform random behaviour (its
            actions are drawn a chunk at a time; Box actions uniformly inside the bounds).
        episodes: how many episodes to start and finish.
        max_steps: the env's truncation limit (sizes the ring buffer).
        seed: reset seed of the vector env.
        min_score: keep episodes whose return is ``>= min_score`` ...
        top_fraction: ... or the best ``round(top_fraction * episodes)`` episodes (at least one; ties go to the
            episode started first), but below 1 never one tied with the worst score when some episode beat it
            (a sparse reward's floor is no elite). Exactly one of the two is given.
        chunk: steps between two bookkeeping passes.
        rank_by: how ``top_fraction`` ranks the episodes: ``"return"``, or ``"advantage"``: the return minus
            the mean return of the ``neighbours`` other episodes whose first observations are nearest
            (:func:`start_advantage`), so that an episode is not kept for having started in an easy state.
        neighbours: the size of that neighbourhood.
        should_stop: polled once per chunk; when it returns True the collection stops early and
            :class:`KeyboardInterrupt` is raised.

    Returns:
        The dataset (``meta`` holds ``threshold``, the lowest score kept; ``rewards``, ``terminated`` and
        ``final_obs`` hold the kept episodes' full transitions) and throughput figures.

    Example:
        >>> from rl_lab.envs import make_vec_env
        >>> venv = make_vec_env("CartPole-v1", num_envs=64, max_steps=500)
        >>> ds, stats = collect(venv, np.random.default_rng(0), 100, max_steps=500, seed=0, min_score=30)
        >>> ds.episode_returns.shape
        (100,)
    """
    if (min_score is None) == (top_fraction is None):
        raise ValueError("give exactly one of min_score / top_fraction")
    if rank_by not in RANKINGS or (rank_by == "advantage" and top_fraction is None):
        raise ValueError(f"rank_by={rank_by!r}: one of {RANKINGS}; 'advantage' ranks for top_fraction")
    t_begin = time.perf_counter()
    obs, _ = venv.reset(seed=seed)
    n_full = n = venv.num_envs  # n: sub-envs still stepped (the first n columns of the arrays below)
    obs_dim = int(venv.single_observation_space.shape[0])
    spec = action_spec("(the vector env)", venv.single_action_space)
    continuous = spec.continuous
    n_actions = spec.dim
    ring_len = max_steps + chunk + 1
    # (T, obs_dim, N): the native envs hand out observations feature-major, so a step's copy is contiguous
    obs_ring = np.empty((ring_len, obs_dim, n_full), dtype=np.float32)
    # Discrete actions are stored narrow (uint8 for up to 256 actions) but reach the env as the space's
    # own dtype: MountainCar and LunarLander compute ``action - 1``, which wraps around in uint8.
    # Box actions are float32 vectors, (T, d, N) like the observations (the sub-env axis last, so that
    # narrowing moves columns); the env gets exactly the float32 values stored.
    act_ring = np.empty((ring_len, n_actions, n_full) if continuous else (ring_len, n_full), dtype=spec.store_dtype())
    rew_ring = np.empty((ring_len, n_full), dtype=np.float64)  # each step's reward, exact for any env dtype
    env_dtype = venv.single_action_space.dtype
    # Per pass (at most ``chunk`` steps): which sub-envs ended at each step, and the return of the
    # episode so far, accumulated in float64 in step order (the same sum as adding them one by one).
    done_buf = np.zeros((chunk, n_full), dtype=bool)
    term_buf = np.zeros((chunk, n_full), dtype=bool)  # ... and which of them terminated (else: truncated)
    ret_buf = np.zeros((chunk, n_full), dtype=np.float64)
    score = np.zeros(n_full, dtype=np.float64)  # each sub-env's running return (0 on NEXT_STEP reset steps)
    uniform = isinstance(behaviour, np.random.Generator)
    narrow = getattr(venv, "narrow", None)
    live = np.arange(n_full)  # the original index of each stepped sub-env
    obs_full = np.zeros((n_full, obs_dim), dtype=np.float32)  # the behaviour's input once narrowed

    env_ep = np.where(np.arange(n_full) < episodes, np.arange(n_full), -1)  # episode in each sub-env, -1 idle
    env_start = np.zeros(n_full, dtype=np.int64)  # its first row (absolute step index)
    started, finished = min(n_full, episodes), 0
    returns = np.zeros(episodes, dtype=np.float64)
    lengths = np.zeros(episodes, dtype=np.int64)
    first_obs = np.zeros((episodes, obs_dim), dtype=np.float32) if rank_by == "advantage" else None
    # (ids, lengths, obs, actions, rewards, terminated, final obs) of the episodes gathered in one pass
    blocks: list[tuple[np.ndarray, ...]] = []
    draws = live_draws = np.empty((0, 0), dtype=np.int64)
    act_full = spec.empty(n_full)  # Box: the (N, d) actions of a step, before they go into the ring

    t = env_steps = 0
    obs_ring[0, :, :n] = obs.T
    while finished < episodes:
        if should_stop is not None and should_stop():
            raise KeyboardInterrupt
        t0 = t
        # Once every episode has started, each done event idles a sub-env: end the pass early when
        # a quarter of the stepped sub-envs may have gone idle, so that narrow() can drop them.
        early = narrow is not None and started == episodes
        dones = 0
        while True:
            r = t % ring_len
            action = act_full[:n] if continuous else act_ring[r, :n]
            if uniform:  # drawn a chunk at a time for all sub-envs, so narrowing never changes the stream
                if t % chunk == 0:
                    if continuous:
                        draws = spec.uniform(behaviour, (chunk, n_full))
                    else:
                        draws = _uniform_actions(behaviour, n_actions, (chunk, n_full), act_ring.dtype)
                    live_draws = draws if n == n_full else draws[:, live]
                action[...] = live_draws[t % chunk]
            elif n == n_full:
                action[...] = behaviour(np.asarray(obs, dtype=np.float32))
            else:  # the behaviour sees every sub-env, as without narrowing (its rows are independent)
                obs_full[live] = obs
                action[...] = behaviour(obs_full)[live]
            if continuous:
                act_ring[r, :, :n] = action.T
            obs, reward, terminated, truncated, _ = venv.step(action.astype(env_dtype))
            obs_ring[(t + 1) % ring_len, :, :n] = obs.T  # the next step's input, or the final obs of an episode
            rew_ring[r, :n] = reward
            i = t - t0
            done, ret, sc = done_buf[i, :n], ret_buf[i, :n], score[:n]
            np.logical_or(terminated, truncated, out=done)
            term_buf[i, :n] = terminated
            np.add(sc, reward, out=ret)
            np.copyto(sc, ret)
            np.copyto(sc, 0.0, where=done)
            t += 1
            if t % chunk == 0:
                break
            if early:
                dones += int(np.count_nonzero(done))
                if 4 * dones >= n:
                    break
        env_steps += (t - t0) * n
        ev_i, ev_e = np.nonzero(done_buf[: t - t0, :n])  # done events in step order, then env order
        keep_ev = env_ep[ev_e] >= 0
        ev_i, ev_e = ev_i[keep_ev], ev_e[keep_ev]
        if ev_i.size == 0:
            continue
        ep_ret, ep_term = ret_buf[ev_i, ev_e], term_buf[ev_i, ev_e]
        ev_t = ev_i + t0
        ids, starts, ends, envs, started, order = _episode_ends(
            ev_t, ev_e, env_ep[:n], env_start[:n], started, episodes
        )
        ep_len, ep_ret, ep_term = ends - starts + 1, ep_ret[order], ep_term[order]
        returns[ids], lengths[ids] = ep_ret, ep_len
        if first_obs is not None:
            first_obs[ids] = obs_ring[starts % ring_len, :, envs]
        finished += ids.size
        sel = np.flatnonzero(ep_ret >= min_score) if min_score is not None else np.arange(ids.size)
        if sel.size:
            t_sel = _ranges(starts[sel], ep_len[sel]) % ring_len  # every row of every kept episode
            e_sel = np.repeat(envs[sel], ep_len[sel])
            e_end = envs[sel]
            blocks.append((
                ids[sel], ep_len[sel], obs_ring[t_sel, :, e_sel],
                act_ring[t_sel, :, e_sel] if continuous else act_ring[t_sel, e_sel], rew_ring[t_sel, e_sel],
                ep_term[sel], obs_ring[(ends[sel] + 1) % ring_len, :, e_end],
            ))  # fmt: skip
        if narrow is not None and started == episodes and finished < episodes:
            keep = np.flatnonzero(env_ep[:n] >= 0)
            # Only when no kept sub-env awaits its autoreset (its draw is shared with the dropped ones).
            if 2 * keep.size <= n and not np.any(env_start[keep] > t):
                # rows up to t: row t already holds the observation the next step starts from
                _narrow_rings(keep, (obs_ring, act_ring, rew_ring), int(env_start[keep].min()), t + 1, ring_len)
                env_ep[: keep.size], env_start[: keep.size] = env_ep[keep], env_start[keep]
                score[: keep.size] = score[keep]
                live, obs, n = live[keep], obs[keep], keep.size
                narrow(keep)
                live_draws = draws[:, live] if uniform and draws.size else live_draws

    scores = None if first_obs is None else start_advantage(first_obs, returns, neighbours)
    kept, threshold = _select(returns, min_score, top_fraction, scores)
    obs_out, act_out, rew_out, term_out, final_out = _assemble(blocks, kept, obs_dim, spec)
    dataset = Dataset(
        obs=obs_out,
        actions=act_out,
        episode_returns=returns,
        episode_lengths=lengths,
        kept=kept,
        meta={
            "threshold": threshold,
            "min_score": min_score,
            "top_fraction": top_fraction,
            "seed": seed,
            "max_steps": max_steps,
            **({"rank_by": rank_by, "neighbours": neighbours} if scores is not None else {}),
        },
        rewards=rew_out,
        terminated=term_out,
        final_obs=final_out,
    )
    stats = CollectStats(env_steps=env_steps, useful_steps=int(lengths.sum()), seconds=time.perf_counter() - t_begin)
    return dataset, stats


def check_selectable(ds: Dataset, env_id: str, max_steps: int) -> None:
    """Refuse a collection whose episodes all have the same return: no filter can select anything.

    ``min_score`` would keep all of them or none, ``top_fraction`` an arbitrary share. This is what a
    sparse reward that random play never earns gives (MountainCar-v0: -1 per step until the flag).

    Raises:
        ConfigError: naming the number of episodes, the one score, why, and what to do.
    """
    r = ds.episode_returns
    if r.size < 2 or not np.all(r == r[0]):
        return
    lengths = np.unique(ds.episode_lengths)
    length = f"all {int(lengths[0])} steps long" if lengths.size == 1 else "of various lengths"
    raise ConfigError(
        f"env.id={env_id!r}: all {r.size} collected episodes scored exactly {float(r[0]):g} ({length}), so no filter "
        "can tell good episodes from bad ones: collector.min_score keeps all of them or none, and "
        "collector.top_fraction would keep an arbitrary share. This is a sparse reward that this behaviour never "
        "earns (for example, MountainCar-v0 gives -1 per step until the car reaches the flag, which random actions "
        f"do not do within collector.max_steps={max_steps}). What you can do: let the episodes run longer so that "
        "some reach the goal (e.g. collector.max_steps=5000; the evaluation keeps the env's own limit), collect more "
        "episodes (collector.episodes), or train on a dataset that has successes (collector.dataset=...). "
        "Nothing was saved for this round."
    )


def _narrow_rings(keep: np.ndarray, rings: tuple[np.ndarray, ...], first: int, t: int, ring_len: int) -> None:
    """Move columns ``keep`` of the rows ``first .. t - 1`` (mod ``ring_len``) of each ring to its first columns."""
    a, b = first % ring_len, t % ring_len
    spans = [(a, b)] if a < b else [(a, ring_len), (0, b)]
    for ring in rings:
        for lo, hi in spans:
            block = ring[lo:hi]
            block[..., : keep.size] = np.take(block, keep, axis=-1)


def _uniform_actions(rng: np.random.Generator, n_actions: int, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """Uniform random actions in ``[0, n_actions)``; a power of two up to 256 masks raw random bytes (exact, fast)."""
    if n_actions <= 256 and n_actions & (n_actions - 1) == 0:
        size = shape[0] * shape[1]
        raw = rng.bit_generator.random_raw(-(-size // 8)).view(np.uint8)[:size]
        return (raw & np.uint8(n_actions - 1)).reshape(shape).astype(dtype, copy=False)
    return rng.integers(0, n_actions, size=shape, dtype=dtype)


def _episode_ends(
    ev_t: np.ndarray, ev_e: np.ndarray, env_ep: np.ndarray, env_start: np.ndarray, started: int, episodes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """Turn the done events of one chunk into ended episodes, and start the next ones (in place).

    Events come in step order. The k-th event hands out episode id ``started + k`` while the budget
    lasts; after that, each sub-env's next event ends its last counted episode and idles it, and
    any later event of that sub-env is ignored.

    Returns:
        ``(ids, starts, ends, envs, started, index)`` of the episodes that ended, the new ``started``,
        and for each ended episode the index of its event among the given ones.
    """
    budget = episodes - started
    # Group by env, in step order within each env (the events come in step order, the sort is
    # stable; on 16-bit keys numpy's stable sort is a radix sort). order[j] is the step-order
    # index of the j-th grouped event, which is also its rank among the done events.
    key = ev_e.astype(np.uint16) if ev_e.size and ev_e.max() < 2**16 else ev_e
    order = np.argsort(key, kind="stable")
    e_s = ev_e[order]
    same = np.empty(order.size, dtype=bool)  # not this env's first event of the chunk
    same[:1] = False
    np.equal(e_s[1:], e_s[:-1], out=same[1:])
    is_tail = order >= budget  # events after the budget ran out; only each env's first one counts
    drop = is_tail & same
    drop[1:] &= is_tail[:-1]
    if drop.any():  # a sub-env's later tail events are a suffix of its group: dropping them keeps `same`
        order, e_s, same = order[~drop], e_s[~drop], same[~drop]
    t_s = ev_t[order]
    nid_s = np.where(order < budget, started + order, -1)
    n_new = min(budget, ev_t.size)
    ids = np.where(same, np.r_[-1, nid_s[:-1]], env_ep[e_s])
    starts = np.where(same, np.r_[0, t_s[:-1]] + 2, env_start[e_s])  # +2: skip the NEXT_STEP reset step

    last = np.r_[~same[1:], True]  # each env's last event of the chunk
    env_ep[e_s[last]] = nid_s[last]
    env_start[e_s[last]] = t_s[last] + 2
    return ids, starts, t_s, e_s, started + n_new, order


def start_advantage(first_obs: np.ndarray, returns: np.ndarray, neighbours: int) -> np.ndarray:
    """Each episode's return minus the mean return of the ``neighbours`` other episodes that started nearest.

    "Nearest" is the Euclidean distance between first observations, each feature standardized over
    the round's episodes (a constant feature counts for nothing). Where the start state decides much
    of the score (Pendulum-v1 starts at a random angle: hanging down costs hundreds of points that
    no action can save), ranking by the plain return keeps mostly the lucky starts, and the policy
    learns only what to do from them; ranking by this advantage keeps the episodes that did better
    than others that started alike, from every kind of start. The same idea as a state-dependent
    baseline in policy gradients, estimated by k nearest neighbours. ``O(episodes^2 * obs_dim)``,
    in blocks of 1024 episodes.
    """
    n = returns.size
    k = min(int(neighbours), n - 1)
    if k < 1:
        return returns.astype(np.float64).copy()
    x = first_obs.astype(np.float64)
    std = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    sq = np.einsum("ij,ij->i", z, z)
    baseline = np.empty(n, dtype=np.float64)
    for a in range(0, n, 1024):
        b = min(a + 1024, n)
        d = sq[a:b, None] + sq[None, :] - 2.0 * (z[a:b] @ z.T)  # (block, n) squared distances
        d[np.arange(b - a), np.arange(a, b)] = np.inf  # not itself
        near = np.argpartition(d, k - 1, axis=1)[:, :k]
        baseline[a:b] = returns[near].mean(axis=1)
    return returns - baseline


def _select(
    returns: np.ndarray, min_score: float | None, top_fraction: float | None, scores: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """The kept mask and the threshold (the lowest kept return; NaN when nothing is kept).

    ``top_fraction`` ranks by ``scores`` (default: the returns; see :func:`start_advantage`).
    """
    if min_score is not None:
        kept = returns >= min_score
    else:
        rank = returns if scores is None else scores
        k = max(1, int(round(top_fraction * returns.size)))
        order = np.lexsort((np.arange(returns.size), -rank))  # best first, ties: started first
        kept = np.zeros(returns.size, dtype=bool)
        kept[order[:k]] = True
        floor = returns.min()
        if top_fraction < 1.0 and returns[kept].min() == floor < returns.max():  # the share reaches the worst return:
            kept &= returns > floor  # an episode tied with the worst is no elite (sparse rewards: Acrobot's -500)
    threshold = float(returns[kept].min()) if kept.any() else float("nan")
    return kept, threshold


def _assemble(
    blocks: list[tuple[np.ndarray, ...]], kept: np.ndarray, obs_dim: int, spec: ActionSpec
) -> tuple[np.ndarray, ...]:
    """Concatenate the kept episodes' steps in episode-id order.

    Returns:
        ``(obs, actions, rewards, terminated, final_obs)``: per step, per step, per step, per kept
        episode, per kept episode.
    """
    if not blocks:
        return (
            np.zeros((0, obs_dim), dtype=np.float32), spec.empty(0), np.zeros(0, dtype=np.float64),
            np.zeros(0, dtype=bool), np.zeros((0, obs_dim), dtype=np.float32),
        )  # fmt: skip
    ids, lens, obs, act, rew, term, final = (np.concatenate([b[j] for b in blocks]) for j in range(7))
    offsets = np.cumsum(lens) - lens
    order = np.argsort(ids, kind="stable")
    order = order[kept[ids[order]]]
    rows = _ranges(offsets[order], lens[order])
    return obs[rows], act[rows], rew[rows], term[order], final[order]
