"""Batched evaluation: play episodes with a policy and report score statistics and the action balance.

Episodes are split among the sub-envs in advance (SB3's fixed per-env budget, issue #402), so
short episodes are not over-sampled. All sub-envs step together and the policy runs one batched
forward per step. Rendered episodes (window or video) are played first in a single env and
count in the statistics like the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rl_lab.actions import ActionSpec, BoxStats
from rl_lab.envs import make_vec_env
from rl_lab.policy import ActFn


@dataclass
class EvalReport:
    """Per-episode results of an evaluation and their summary (``eval.json``)."""

    env_id: str
    scores: np.ndarray  # (episodes,) float64
    lengths: np.ndarray  # (episodes,) int64
    action_counts: np.ndarray  # (n_actions,) int64; empty for Box actions
    reward_threshold: float | None = None
    seconds: float = 0.0
    rendered: list[Any] = field(default_factory=list)  # render.RenderedEpisode, with frames in video mode
    box_stats: BoxStats | None = None  # Box actions: per-dimension statistics of every evaluation action
    # Cut short (``cut_below``): the step it stopped at and the most the full evaluation's mean could have
    # reached; ``scores``/``lengths`` are then the started episodes as they stood (final or so far).
    cut_step: int | None = None
    score_bound: float | None = None

    @property
    def action_balance(self) -> np.ndarray:
        """Share of each action over all evaluation steps."""
        return self.action_counts / max(int(self.action_counts.sum()), 1)

    def summary(self) -> dict[str, Any]:
        """The ``eval.json`` content."""
        s = self.scores
        success = None if self.reward_threshold is None else float(np.mean(s >= self.reward_threshold))
        return {
            "env_id": self.env_id,
            "episodes": int(s.size),
            "score_mean": float(s.mean()),
            "score_std": float(s.std()),
            "score_min": float(s.min()),
            "score_median": float(np.median(s)),
            "score_max": float(s.max()),
            "success_rate": success,
            "reward_threshold": self.reward_threshold,
            "length_mean": float(self.lengths.mean()),
            **self.action_figures(),
            **({} if self.cut_step is None else {"cut_step": self.cut_step, "score_bound": self.score_bound}),
            "scores": [float(x) for x in s],
        }

    def action_figures(self) -> dict[str, Any]:
        """``action_counts`` and ``action_balance`` (Discrete), or the per-dimension figures of :class:`BoxStats`."""
        if self.box_stats is not None:
            return self.box_stats.summary()
        return {
            "action_counts": [int(c) for c in self.action_counts],
            "action_balance": [float(b) for b in self.action_balance],
        }


def per_env_budgets(episodes: int, num_envs: int) -> np.ndarray:
    """Split ``episodes`` among ``num_envs`` sub-envs as evenly as possible (sums to ``episodes``)."""
    return np.array([(episodes + i) // num_envs for i in range(num_envs)], dtype=np.int64)


def evaluate(
    act: ActFn,
    env_id: str,
    episodes: int,
    *,
    n_actions: int,
    num_envs: int,
    max_steps: int | None,
    seed: int,
    reward_threshold: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    action: ActionSpec | None = None,
    cut_below: float | None = None,
    max_step_reward: float | None = None,
    **vector_options: Any,
) -> EvalReport:
    """Play ``episodes`` episodes batched over ``min(num_envs, episodes)`` sub-envs.

    Args:
        act: batched action function (greedy or sampling).
        env_id: gymnasium id.
        episodes: number of episodes.
        n_actions: size of the action space (for the action counts; for Box actions, their dimension).
        num_envs: upper bound on the number of sub-envs.
        max_steps: truncation limit (``None``: the env's own).
        seed: reset seed.
        reward_threshold: score that counts as a success (``None``: no success rate).
        should_stop: polled every 64 steps; True raises :class:`KeyboardInterrupt`.
        action: the action space; a Box one collects per-dimension statistics instead of counts
            (``None``: Discrete with ``n_actions`` actions).
        cut_below: stop as soon as the mean over all ``episodes`` provably cannot reach this (needs
            ``max_step_reward`` and ``max_steps``): the finished scores, plus each started episode's
            score so far and ``max(max_step_reward, 0)`` for each step it may still take, plus that for
            every step of the episodes not started, sum to less than ``cut_below * episodes``. The
            report then holds the started episodes as they stood, with ``cut_step`` and
            ``score_bound`` (that sum over ``episodes``). An evaluation that may reach ``cut_below``
            plays every episode, exactly as without it.
        max_step_reward: an upper bound on every step's reward (:func:`rl_lab.envs.max_step_reward`).
        vector_options: ``backend``, ``precision``, ``num_threads``, ``vectorization`` of
            :func:`rl_lab.envs.make_vec_env` (the same backend as the collection).

    Returns:
        An :class:`EvalReport`; episodes are ordered by sub-env, then by play order.
    """
    t_begin = time.perf_counter()
    n = min(num_envs, episodes)
    venv = make_vec_env(env_id, n, max_steps, **vector_options)
    env_dtype = venv.single_action_space.dtype
    targets = per_env_budgets(episodes, n)
    counts = np.zeros(n, dtype=np.int64)
    score = np.zeros(n, dtype=np.float64)
    length = np.zeros(n, dtype=np.int64)
    resetting = np.zeros(n, dtype=bool)  # NEXT_STEP: this step only resets the sub-env
    box = action is not None and action.continuous
    box_stats = action.new_stats() if box else None
    action_counts = np.zeros(0 if box else n_actions, dtype=np.int64)
    results: list[tuple[int, int, float, int]] = []  # (env, k, score, length)
    cut = cut_below is not None and max_step_reward is not None and max_steps is not None
    if cut:
        r_plus = max(float(max_step_reward), 0.0)  # the most a step can add (an episode may also end at once)
        need = float(cut_below) * episodes - 1e-9 * (abs(float(cut_below)) + 1.0) * episodes
        finished_sum = 0.0
    cut_step: int | None = None
    bound = 0.0
    try:
        obs, _ = venv.reset(seed=seed)
        step = 0
        while True:
            unfinished = counts < targets
            if not unfinished.any():
                break
            active = unfinished & ~resetting
            if should_stop is not None and step % 64 == 0 and should_stop():
                raise KeyboardInterrupt
            # The policy only sees the sub-envs still playing (a finished one's action is ignored).
            playing = np.flatnonzero(unfinished)
            if playing.size == n:
                actions = np.asarray(act(np.asarray(obs, dtype=np.float32)))
            else:
                actions = np.zeros((n, n_actions) if box else n, dtype=np.float32 if box else np.int64)
                actions[playing] = act(np.ascontiguousarray(obs[playing], dtype=np.float32))
            if box_stats is not None:
                box_stats.update(actions[active])
            else:
                action_counts += np.bincount(actions[active], minlength=n_actions)[:n_actions]
            obs, reward, terminated, truncated, _ = venv.step(actions.astype(env_dtype, copy=False))
            score += np.where(active, reward, 0.0)
            length += active
            done = (np.asarray(terminated) | np.asarray(truncated)) & active
            for e in np.flatnonzero(done):
                results.append((int(e), int(counts[e]), float(score[e]), int(length[e])))
                if cut:
                    finished_sum += float(score[e])
            counts += done
            score[done], length[done] = 0.0, 0
            resetting = done
            step += 1
            if cut and step % 4 == 0:
                left = targets - counts  # episodes still to finish per sub-env, the current one included
                open_ = left > 0
                bound = finished_sum + float(score[open_].sum())
                if r_plus:
                    bound += r_plus * float((max_steps - length[open_]).sum() + (left[open_] - 1).sum() * max_steps)
                if bound < need:
                    cut_step = step
                    for e in np.flatnonzero(open_ & (length > 0)):
                        results.append((int(e), int(counts[e]), float(score[e]), int(length[e])))
                    break
    finally:
        venv.close()
    results.sort()
    return EvalReport(
        env_id=env_id,
        scores=np.array([r[2] for r in results], dtype=np.float64),
        lengths=np.array([r[3] for r in results], dtype=np.int64),
        action_counts=action_counts,
        reward_threshold=reward_threshold,
        seconds=time.perf_counter() - t_begin,
        box_stats=box_stats,
        cut_step=cut_step,
        score_bound=None if cut_step is None else bound / episodes,
    )


def merge_reports(
    first: list[Any],
    rest: EvalReport | None,
    env_id: str,
    n_actions: int,
    action: ActionSpec | None = None,
    **kw: Any,
) -> EvalReport:
    """Combine rendered episodes (played first) with a batched report of the remaining ones."""
    scores = [ep.score for ep in first] + ([] if rest is None else list(rest.scores))
    lengths = [ep.length for ep in first] + ([] if rest is None else list(rest.lengths))
    box_stats = action.new_stats() if action is not None else None
    counts = np.zeros(0 if box_stats is not None else n_actions, dtype=np.int64)
    for ep in first:
        if box_stats is not None:
            box_stats.update(ep.actions)
        else:
            counts += np.asarray(ep.action_counts, dtype=np.int64)[:n_actions]
    if rest is not None:
        if box_stats is not None and rest.box_stats is not None:
            box_stats.merge(rest.box_stats)
        elif box_stats is None:
            counts += rest.action_counts
    return EvalReport(
        env_id=env_id,
        scores=np.array(scores, dtype=np.float64),
        lengths=np.array(lengths, dtype=np.int64),
        action_counts=counts,
        rendered=list(first),
        box_stats=box_stats,
        **kw,
    )
