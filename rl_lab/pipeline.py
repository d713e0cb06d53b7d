"""The job: rounds of collect -> filter -> train -> evaluate, with outputs, interruption and resume.

Reads top to bottom like a CleanRL main: seed, build, loop over rounds, log, return. One round
is the original recipe; more rounds are the cross-entropy method (round k collects with round
k-1's policy). Every source of randomness is derived from ``cfg.seed`` per stage and round
(:func:`rl_lab.utils.derive_seed`), so a resumed run repeats exactly what an uninterrupted one
would have done.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_lab.actions import format_box_stats
from rl_lab.collect import check_selectable, collect
from rl_lab.config import Config
from rl_lab.data import Dataset, load_dataset
from rl_lab.envs import EnvInfo, env_info, make_vec_env, resolve_backend
from rl_lab.errors import ConfigError
from rl_lab.evaluate import EvalReport, evaluate, merge_reports
from rl_lab.policy import MLPPolicy, act_fn, load_policy, read_checkpoint, save_policy
from rl_lab.results import (
    COMPLETED,
    INTERRUPTED,
    RUNNING,
    CollectFigures,
    EvalFigures,
    RoundResult,
    RunMetrics,
    TrainFigures,
)
from rl_lab.tracking import Tracker, flatten
from rl_lab.train import TrainState, fit
from rl_lab.utils import derive_seed, resolve_device, seed_everything, sha256_arrays, write_json

log = logging.getLogger(__name__)

# Stream ids for derive_seed: each stage of each round draws from its own stream.
COLLECT, BEHAVIOUR, TRAIN, EVAL, RENDER = 1, 2, 3, 4, 5
SCREEN = 1  # sub-stream of EVAL: a round's screening episodes (evaluator.screen_episodes)
INIT = 6  # a round's freshly initialised weights (round 0, and every round without trainer.warm_start)


class StopFlag:
    """Set by the SIGINT handler; the loops poll it and stop at the next safe point."""

    def __init__(self) -> None:
        self.stop = False

    def __call__(self) -> bool:
        return self.stop


@dataclass
class RunPaths:
    """Where a round writes its artifacts."""

    root: Path
    rounds: int

    def round_dir(self, k: int) -> Path:
        return self.root if self.rounds == 1 else self.root / f"round_{k}"


def check_policy_fits(cfg: Config, info: EnvInfo) -> None:
    """Refuse a policy setting the env's action space can't take, before any work is done."""
    p, a = cfg.policy, info.action
    if p.box_head != "mean" and not a.continuous:
        raise ConfigError(
            f"policy.box_head={p.box_head!r} is a head for Box actions, but env.id={info.id!r} has Discrete "
            f"actions ({a.describe()}): its policy outputs logits. Leave policy.box_head=mean for this env."
        )


def build_policy(cfg: Config, info: EnvInfo) -> MLPPolicy:
    """The MLP of ``cfg.policy`` sized from the env's spaces."""
    p, a = cfg.policy, info.action
    bounds = {"action_low": list(a.low), "action_high": list(a.high)} if a.continuous else {}  # a Box head
    return MLPPolicy(
        info.obs_dim, info.n_actions, list(p.hidden_sizes), p.activation, p.dropout, p.layer_norm, **bounds,
        obs_norm=p.obs_norm, box_head=p.box_head,
    )  # fmt: skip


def weights_hash(policy: torch.nn.Module) -> str:
    """SHA-256 of the weights (names, shapes, bytes)."""
    return sha256_arrays({k: v.detach().cpu().numpy() for k, v in policy.state_dict().items()})


@dataclass(frozen=True)
class RunContext:
    """What every round of a run reads and none changes."""

    cfg: Config
    info: EnvInfo
    paths: RunPaths
    tracker: Tracker
    device: str
    stop: StopFlag | None
    resume: Resume | None
    started: float  # time.perf_counter() at the start of round 0 (earlier by a resumed run's seconds so far)


@dataclass(frozen=True)
class Carry:
    """What a round hands to the next round, and the last round to the end of the run."""

    policy: MLPPolicy | None = None  # None before round 0
    optimizer_state: dict[str, Any] | None = None  # Adam's moments, for trainer.warm_start (rounds > 1)
    elites: tuple[Dataset, ...] = ()  # every round's dataset so far, with collector.accumulate
    report: EvalReport | None = None  # the last evaluation: the run's eval.json and report.md


@dataclass(frozen=True)
class Resume:
    """What an interrupted run left in its run dir: its metrics and, if any, its last training checkpoint."""

    metrics: RunMetrics
    round: int | None = None  # the round policy_last.pt was saved in
    state_dict: dict[str, Any] | None = None
    state: TrainState | None = None


def run(cfg: Config, out_dir: str | Path, stop: StopFlag | None = None) -> dict[str, Any]:
    """Run every round; write ``dataset.npz``, ``policy.pt``, ``eval.json``, ``metrics.json``, ``tb/``.

    Returns:
        The content of ``metrics.json``.
    """
    # --- seed, check, build ------------------------------------------------------------------
    out = Path(out_dir)
    paths = RunPaths(out, cfg.rounds)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    info = env_info(cfg.env.id)
    check_policy_fits(cfg, info)
    if cfg.evaluator.early_exit and cfg.stop_score is not None and info.max_step_reward is None:
        log.warning(
            "evaluator.early_exit: rl_lab knows no bound on %s's step rewards, so every evaluation runs in full.",
            info.id,
        )
    backend = resolve_backend(info.id, cfg.env.backend)  # a backend that can't run this env fails before any work
    if cfg.plots:
        from rl_lab.run_report import check_plots_available

        check_plots_available()
    resume = _read_resume(out) if cfg.resume else None
    tracker = Tracker(out / "tb")
    tracker.config_table(flatten(asdict(cfg)))
    before = resume.metrics if resume else None  # the rounds an interrupted run completed
    metrics = RunMetrics(
        status=RUNNING,
        rounds=list(before.rounds) if before else [],
        env_id=info.id,
        seed=cfg.seed,
        device=device,
        backend=backend,
        env_threads=cfg.env.num_threads,
        total_seconds=before.total_seconds if before else 0.0,
        solve_seconds=before.solve_seconds if before else None,
    )
    ctx = RunContext(cfg, info, paths, tracker, device, stop, resume, time.perf_counter() - metrics.total_seconds)
    carry = _carry_after(ctx, len(metrics.rounds))

    # --- rounds ----------------------------------------------------------------------------------
    try:
        for k in range(len(metrics.rounds), cfg.rounds):
            result, carry = _round(ctx, k, carry)
            metrics.rounds.append(result)
            metrics.total_seconds = time.perf_counter() - ctx.started
            if cfg.rounds > 1:
                tracker.scalars(_round_scalars(result), k)
            reached = cfg.stop_score is not None and result.eval.score_mean >= cfg.stop_score
            if reached and metrics.solve_seconds is None:
                metrics.solve_seconds = result.elapsed_seconds
            write_json(out / "metrics.json", metrics.to_dict())  # a progress snapshot after every round
            if reached:
                log.info("eval mean %.1f >= stop_score %s: stop", result.eval.score_mean, cfg.stop_score)
                break
    except KeyboardInterrupt:
        metrics.status, metrics.total_seconds = INTERRUPTED, time.perf_counter() - ctx.started
        write_json(out / "metrics.json", metrics.to_dict())
        tracker.close()
        raise

    # --- outputs ---------------------------------------------------------------------------------
    policy, report, last = carry.policy, carry.report, metrics.last
    assert policy is not None and report is not None and last is not None
    if cfg.rounds > 1:  # the final policy and report also live at the top of the run dir
        save_policy(policy, out / "policy.pt", info.id, {"round": last.round})
        write_json(out / "eval.json", report.summary())
    metrics.status, metrics.total_seconds = COMPLETED, time.perf_counter() - ctx.started
    metrics.weights_sha256 = weights_hash(policy)
    (out / "policy_last.pt").unlink(missing_ok=True)
    write_json(out / "metrics.json", metrics.to_dict())
    tracker.hparams(
        _hparams(cfg),
        {
            "eval/score_mean": last.eval.score_mean,
            "eval/score_std": last.eval.score_std,
            "val/accuracy": last.train.val_accuracy,
            "collect/kept_fraction": last.collect.kept_fraction,
        },
    )
    tracker.close()
    from rl_lab.run_report import write_run_report

    write_run_report(out, metrics, report, first_dataset=paths.round_dir(0) / "dataset.npz", plots=cfg.plots)
    return metrics.to_dict()


def _carry_after(ctx: RunContext, done: int) -> Carry:
    """What the ``done`` rounds an interrupted run completed hand to the next, read back from their files."""
    if done == 0:
        return Carry()
    policy, payload = load_policy(ctx.paths.round_dir(done - 1) / "policy.pt")
    elites: tuple[Dataset, ...] = ()
    if ctx.cfg.collector.accumulate:
        elites = tuple(load_dataset(ctx.paths.round_dir(j) / "dataset.npz") for j in range(done))
    return Carry(policy=policy, optimizer_state=payload["extra"].get("optimizer"), elites=elites)


def _round(ctx: RunContext, k: int, carry: Carry) -> tuple[RoundResult, Carry]:
    """One round: collect (or reuse), filter, train, evaluate. Returns its result and what it hands on."""
    cfg, tracker = ctx.cfg, ctx.tracker
    rdir = ctx.paths.round_dir(k)
    rdir.mkdir(parents=True, exist_ok=True)
    # --- collect ---------------------------------------------------------------------------------
    ds, collected = _collect_stage(cfg, ctx.info, k, rdir, carry.policy, ctx.stop)
    elites = (*carry.elites, ds) if cfg.collector.accumulate else ()  # with collector.accumulate, train on them all
    train_sets = elites or (ds,)
    tracker.scalars(
        {
            f"collect/{key}": getattr(collected, key)
            for key in ("score_mean", "score_max", "kept_fraction", "threshold", "samples", "steps_per_second")
        },
        k,
    )
    tracker.histogram("collect/scores_all", ds.episode_returns, k)
    tracker.histogram("collect/scores_kept", ds.episode_returns[ds.kept], k)
    # --- train -----------------------------------------------------------------------------------
    obs = np.concatenate([d.obs for d in train_sets])
    actions = np.concatenate([d.actions for d in train_sets])
    policy, trained, optimizer_state = _train_stage(ctx, k, rdir, carry, obs, actions)
    # --- evaluate --------------------------------------------------------------------------------
    report, evaluated = _eval_stage(ctx, k, rdir, policy)
    if cfg.weight_histograms:
        tracker.weights(policy, k)
    tracker.flush()
    result = RoundResult(
        round=k,
        collect=collected,
        train=trained,
        eval=evaluated,
        dataset_sha256=ds.content_hash(),
        weights_sha256=weights_hash(policy),
        elapsed_seconds=time.perf_counter() - ctx.started,
    )
    log.info(format_round(result, cfg.rounds))
    return result, Carry(policy=policy, optimizer_state=optimizer_state, elites=elites, report=report)


def _train_stage(
    ctx: RunContext, k: int, rdir: Path, prev: Carry, obs: np.ndarray, actions: np.ndarray
) -> tuple[MLPPolicy, TrainFigures, dict[str, Any] | None]:
    """Fit round ``k``'s policy and save ``policy.pt``; its figures and the Adam state the next round continues."""
    cfg, info, tracker = ctx.cfg, ctx.info, ctx.tracker
    policy = prev.policy if cfg.trainer.warm_start else None
    warm = policy is not None  # continue the previous round's policy
    if policy is None:  # fresh weights from the round's own seed: a resumed run starts round k as an uninterrupted one
        with torch.random.fork_rng(devices=[]):  # leave the global RNG untouched
            torch.manual_seed(derive_seed(cfg.seed, INIT, k))
            policy = build_policy(cfg, info)
        policy.fit_obs_norm(obs)  # policy.obs_norm: the inputs' statistics from the data it first trains on
    train_state = None
    if ctx.resume and ctx.resume.round == k and ctx.resume.state is not None:
        policy.load_state_dict(ctx.resume.state_dict)
        train_state = ctx.resume.state
    epochs = cfg.trainer.epochs

    def on_epoch(epoch: int, figs: dict[str, float], state: TrainState) -> None:
        tracker.scalars(figs, k * epochs + epoch)
        save_policy(
            policy,
            ctx.paths.root / "policy_last.pt",
            info.id,
            {"round": k, "epoch": state.epoch, "train_state": asdict(state)},
        )

    result = fit(
        policy,
        obs,
        actions,
        cfg.trainer,
        seed=derive_seed(cfg.seed, TRAIN, k),
        device=ctx.device,
        on_epoch=on_epoch,
        resume=train_state,
        optimizer_state=prev.optimizer_state if warm else None,  # warm start: continue the previous round's Adam
        should_stop=ctx.stop,
    )
    samples_per_second = result.samples * epochs / max(result.seconds, 1e-9)
    tracker.scalars({"time/train_samples_per_second": samples_per_second}, k)
    keep_opt = cfg.rounds > 1 and cfg.trainer.warm_start  # the next round continues with these Adam moments
    save_policy(
        policy, rdir / "policy.pt", info.id, {"round": k, **({"optimizer": result.optimizer_state} if keep_opt else {})}
    )
    figures = TrainFigures(
        history=result.history,  # per-epoch train/val loss and accuracy
        epochs=result.epochs,
        samples=result.samples,
        val_samples=result.val_samples,
        final_loss=result.final.get("train/loss"),
        train_accuracy=result.final.get("train/accuracy"),
        val_loss=result.final.get("val/loss"),
        val_accuracy=result.final.get("val/accuracy"),
        seconds=result.seconds,
        samples_per_second=samples_per_second,
        loss=("nll" if policy.gaussian else "mse") if policy.continuous else None,
    )
    return policy, figures, result.optimizer_state if keep_opt else None


def _eval_stage(ctx: RunContext, k: int, rdir: Path, policy: MLPPolicy) -> tuple[EvalReport, EvalFigures]:
    """Evaluate round ``k``'s policy (after a screen, where one may settle it) and write ``eval.json``."""
    cfg = ctx.cfg
    report = _screen(policy, cfg, ctx.info, k, ctx.device, ctx.stop, rdir)  # a quick look first
    screened = report is not None
    if report is None:
        # evaluator.early_exit: a round that could stop the run (not the last: its evaluation is the run's
        # final score) stops evaluating once stop_score is out of reach; one that may reach it plays in full.
        may_cut = cfg.evaluator.early_exit and cfg.stop_score is not None and k < cfg.rounds - 1
        report = evaluate_policy(
            policy,
            cfg,
            ctx.info,
            seed=derive_seed(cfg.seed, EVAL, k),
            device=ctx.device,
            stop=ctx.stop,
            out_dir=rdir,
            tracker=ctx.tracker,
            step=k,
            cut_below=cfg.stop_score if may_cut else None,
        )
        screened = report.cut_step is not None
    else:
        log_eval(ctx.tracker, report, k)
    summary = report.summary()
    write_json(rdir / "eval.json", summary)
    return report, EvalFigures.from_summary(summary, seconds=report.seconds, screened=screened)


def _collect_stage(
    cfg: Config, info: EnvInfo, k: int, rdir: Path, prev: MLPPolicy | None, stop: StopFlag | None
) -> tuple[Dataset, CollectFigures]:
    """Collect round ``k``'s episodes (or reuse a dataset file) and save ``dataset.npz``."""
    c = cfg.collector
    path = rdir / "dataset.npz"
    t0 = time.perf_counter()
    env_steps, sps = None, None
    minari_ref = c.dataset if (c.dataset and k == 0 and c.dataset.startswith("minari:")) else None
    reuse = Path(c.dataset) if (c.dataset and k == 0) else (path if cfg.resume and path.is_file() else None)
    if minari_ref is not None:  # someone's recorded episodes, filtered by rl_lab's rule (rl_lab.minari_io)
        from rl_lab.minari_io import load_minari

        ds = load_minari(minari_ref, env_id=info.id, min_score=c.min_score, top_fraction=c.top_fraction)
        ds.save(path)
    elif reuse is not None:
        ds = load_dataset(reuse, "collector.dataset" if c.dataset else "resume")
        if ds.meta.get("env_id") != info.id:
            raise ConfigError(
                f"collector.dataset={str(reuse)!r} was collected on env {ds.meta.get('env_id')!r}, but env.id="
                f"{info.id!r}. Use a dataset of the same environment, or set env.id={ds.meta.get('env_id')}."
            )
        if ds.actions.shape[1:] != info.action.row_shape():
            raise ConfigError(
                f"collector.dataset={str(reuse)!r} holds actions of shape {ds.actions.shape[1:]} per step, but env.id="
                f"{info.id!r} has {info.action.describe()} actions. The file is damaged or was edited; collect anew."
            )
    else:
        rng = np.random.default_rng(derive_seed(cfg.seed, BEHAVIOUR, k))
        if prev is None or c.behaviour == "random":
            behaviour: Any = rng  # uniform random actions, drawn a chunk at a time
        else:  # round 1 plays at collector.temperature (Discrete) or collector.noise_std (Box), then decays
            temperature = c.temperature * c.temperature_decay ** (k - 1)
            noise_std = c.noise_std * c.noise_decay ** (k - 1)
            behaviour = act_fn(prev, greedy=False, temperature=temperature, rng=rng, device="cpu", noise_std=noise_std)
            prev.to("cpu")
        num_envs = min(cfg.env.num_envs, c.episodes)
        max_steps = c.max_steps or info.max_episode_steps
        if max_steps is None:
            raise ConfigError(f"env.id={info.id!r} has no step limit of its own: set collector.max_steps.")
        venv = make_vec_env(info.id, num_envs, max_steps, **cfg.env.vector_options())
        try:
            ds, stats = collect(
                venv,
                behaviour,
                c.episodes,
                max_steps=max_steps,
                seed=derive_seed(cfg.seed, COLLECT, k),
                min_score=c.min_score,
                top_fraction=c.top_fraction,
                should_stop=stop,
                rank_by=c.rank_by,
                neighbours=c.neighbours,
            )
        finally:
            venv.close()
        env_steps, sps = stats.env_steps, stats.steps_per_second
        check_selectable(ds, info.id, max_steps)
        if ds.kept_episodes == 0:
            best = float(ds.episode_returns.max())
            suggest = float(np.quantile(ds.episode_returns, 0.9))
            raise ConfigError(
                f"collector.min_score={c.min_score!r}: none of the {c.episodes} episodes reached it (best score "
                f"{best:g}, mean {ds.episode_returns.mean():.1f}). Lower the threshold, e.g. "
                f"collector.min_score={suggest:g} (keeps about 10%), or keep the best share with "
                "collector.min_score=null collector.top_fraction=0.1."
            )
        ds.meta.update(
            env_id=info.id,
            round=k,
            behaviour="random" if prev is None else c.behaviour,
            episodes=c.episodes,
            kept_episodes=ds.kept_episodes,
            samples=ds.samples,
        )
        ds.save(path)
    r = ds.episode_returns
    figures = CollectFigures(
        episodes=int(r.size),
        kept_episodes=ds.kept_episodes,
        kept_fraction=ds.kept_episodes / r.size,
        samples=ds.samples,
        score_mean=float(r.mean()),
        score_std=float(r.std()),
        score_max=float(r.max()),
        threshold=ds.meta.get("threshold"),
        **ds.action_figures(info.action),  # action_balance (Discrete), or per-dimension statistics (Box)
        env_steps=env_steps,
        useful_steps=int(ds.episode_lengths.sum()),
        steps_per_second=sps,
        seconds=time.perf_counter() - t0,
    )
    return ds, figures


def evaluate_policy(
    policy: MLPPolicy,
    cfg: Config,
    info: EnvInfo,
    *,
    seed: int,
    device: str,
    stop: StopFlag | None,
    out_dir: Path,
    tracker: Tracker | None,
    step: int,
    cut_below: float | None = None,
) -> EvalReport:
    """Evaluate (rendering the first episodes if asked), log ``eval/*`` and write videos.

    ``cut_below``: stop once the mean provably cannot reach it (:func:`rl_lab.evaluate.evaluate`; only
    where the env's step rewards have a known bound and no episode is rendered).
    """
    ev = cfg.evaluator
    policy.to(device)
    rng = np.random.default_rng(derive_seed(seed, RENDER))
    # evaluator.greedy=false samples: softmax (Discrete), or collector.noise_std's Gaussian noise (Box)
    act = act_fn(policy, greedy=ev.greedy, rng=rng, device=device, noise_std=cfg.collector.noise_std)
    max_steps = ev.max_steps or info.max_episode_steps
    if max_steps is None:
        raise ConfigError(f"env.id={info.id!r} has no step limit of its own: set evaluator.max_steps.")
    t0 = time.perf_counter()
    rendered: list[Any] = []
    n_render = min(ev.render_episodes, ev.episodes) if ev.render != "none" else 0
    if n_render:
        from rl_lab.render import check_render_mode, play_episodes

        check_render_mode(ev.render)
        rendered = play_episodes(
            act, info.id, n_render, seed=derive_seed(seed, RENDER, 1), mode=ev.render, max_steps=max_steps, fps=ev.fps
        )
    rest = None
    if ev.episodes - len(rendered) > 0:
        rest = evaluate(
            act,
            info.id,
            ev.episodes - len(rendered),
            n_actions=info.n_actions,
            num_envs=cfg.env.num_envs,
            max_steps=max_steps,
            seed=seed,
            reward_threshold=info.reward_threshold,
            should_stop=stop,
            action=info.action,
            cut_below=cut_below if not rendered else None,
            max_step_reward=info.max_step_reward,
            **cfg.env.vector_options(),
        )
    report = merge_reports(
        rendered,
        rest,
        info.id,
        info.n_actions,
        action=info.action,
        reward_threshold=info.reward_threshold,
        seconds=time.perf_counter() - t0,
        cut_step=None if rest is None else rest.cut_step,
        score_bound=None if rest is None else rest.score_bound,
    )
    if ev.render == "video":
        _write_videos(report, out_dir, ev.video_format, ev.fps or info.render_fps, tracker, step)
    log_eval(tracker, report, step)
    return report


def log_eval(tracker: Tracker | None, report: EvalReport, step: int) -> None:
    """Log an evaluation's ``eval/*`` scalars, histograms and action balance at ``step``."""
    if tracker is None:
        return
    s = report.summary()
    if report.cut_step is not None:  # the episodes as they stood when it stopped: no score of the policy's
        tracker.scalars({"eval/score_bound": s["score_bound"], "eval/cut_step": s["cut_step"]}, step)
        return
    keys = ("score_mean", "score_std", "score_min", "score_median", "score_max", "success_rate", "length_mean")
    tracker.scalars({f"eval/{key}": s[key] for key in keys}, step)
    tracker.scalars({"time/eval_steps_per_second": report.lengths.sum() / max(report.seconds, 1e-9)}, step)
    tracker.histogram("eval/scores", report.scores, step)
    if report.box_stats is not None:
        tracker.box_actions("eval", report.box_stats, step)
    else:
        tracker.action_balance("eval", report.action_balance, report.action_counts, step)


def _screen(
    policy: MLPPolicy, cfg: Config, info: EnvInfo, k: int, device: str, stop: StopFlag | None, rdir: Path
) -> EvalReport | None:
    """``evaluator.screen_episodes`` greedy episodes before a round's full evaluation; their report when they settle it.

    Only rounds that could stop the run are screened (``stop_score`` set, not the last round). When
    even ``mean + 3 standard errors`` of the screen is below ``stop_score``, a full evaluation could
    hardly reach it: the round reports the screen (``eval.screened``) and the run goes on. Otherwise
    the full ``evaluator.episodes`` evaluation runs as without a screen (same seed, same episodes), so
    "solved" keeps its meaning: a full greedy evaluation at or above ``stop_score``.
    """
    n = cfg.evaluator.screen_episodes
    if cfg.stop_score is None or n < 2 or n >= cfg.evaluator.episodes or k == cfg.rounds - 1:
        return None
    quick = replace(cfg, evaluator=replace(cfg.evaluator, episodes=n, render="none"))
    seed = derive_seed(cfg.seed, EVAL, k, SCREEN)
    pre = evaluate_policy(policy, quick, info, seed=seed, device=device, stop=stop, out_dir=rdir, tracker=None, step=k)
    s = pre.scores
    upper = s.mean() + 3.0 * s.std(ddof=1) / np.sqrt(s.size)
    return pre if upper < cfg.stop_score else None


def _write_videos(report: EvalReport, out_dir: Path, fmt: str, fps: float, tracker: Tracker | None, step: int) -> None:
    from rl_lab.render import write_video

    for i, ep in enumerate(report.rendered):
        if ep.frames:
            path = write_video(ep.frames, out_dir / "videos" / f"episode_{i}.{fmt}", fmt, fps)
            log.info("video: %s (%d frames, score %g)", path, len(ep.frames), ep.score)
            if tracker is not None:
                tracker.gif(f"eval/episode_{i}", ep.frames, step, fps)


def _read_resume(out: Path) -> Resume:
    """Load what an interrupted run left: its metrics and, if any, the last training checkpoint."""
    mpath = out / "metrics.json"
    try:
        metrics = RunMetrics.from_dict(json.loads(mpath.read_text()))
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise ConfigError(f"resume={str(out)!r}: cannot read {mpath.name} ({e}); is this an rl-lab run dir?") from None
    if metrics.status == COMPLETED:
        raise ConfigError(f"resume={str(out)!r}: this run already completed; there is nothing to resume.")
    last = out / "policy_last.pt"
    if not last.is_file():
        return Resume(metrics)
    payload = read_checkpoint(last, "resume")
    extra = payload.get("extra", {})
    st = extra.get("train_state")
    return Resume(metrics, extra.get("round"), payload["state_dict"], TrainState(**st) if st else None)


def _round_scalars(r: RoundResult) -> dict[str, float | None]:
    c, t, e = r.collect, r.train, r.eval
    return {
        "round/collect_score_mean": c.score_mean,
        "round/collect_score_max": c.score_max,
        "round/kept_fraction": c.kept_fraction,
        "round/threshold": c.threshold,
        "round/train_loss": t.final_loss,
        "round/train_accuracy": t.train_accuracy,
        "round/val_accuracy": t.val_accuracy,
        "round/eval_score_mean": e.score_mean,
        "round/eval_score_std": e.score_std,
        **{f"round/action_balance/{a}": b for a, b in enumerate(e.action_balance or [])},
        **{f"round/action_mean/{d}": m for d, m in enumerate(e.action_mean or [])},
        **{f"round/action_saturation/{d}": m for d, m in enumerate(e.action_saturation or [])},
    }


def _hparams(cfg: Config) -> dict[str, Any]:
    flat = flatten(asdict(cfg))
    skip = ("checkpoint", "resume", "optimized_metric", "collector.dataset", "trainer.progress")
    return {k: v for k, v in flat.items() if k not in skip and v is not None}


def format_eval(e: EvalFigures | Mapping[str, Any], seconds: float | None = None) -> str:
    """Evaluation figures (the original printed the average score and 'choice 0: ...%  choice 1: ...%').

    ``e``: a round's figures, or an ``eval.json`` dict. Every line stays within 70 characters: the
    log's message column on a 100-column terminal.
    """
    if not isinstance(e, EvalFigures):
        e = EvalFigures.from_summary(e, seconds=seconds or 0.0, screened=False)
    took = "" if seconds is None else f", {seconds:.2f} s"
    if e.cut_step is not None:  # evaluator.early_exit: no score of the policy's, only the bound it proved
        return (
            f"eval:    stopped at step {e.cut_step}: stop_score out of reach{took}\n"
            f"         (the full evaluation's mean could be at most {e.score_bound:.1f})"
        )
    success = "n/a" if e.success_rate is None else f"{100 * e.success_rate:.0f}%"
    if e.action_balance is not None:
        cells = [f"choice {a}: {100 * b:.1f}%" for a, b in enumerate(e.action_balance)]
        rows = ["  ".join(cells[i : i + 3]) for i in range(0, len(cells), 3)]  # 3 actions a line
        actions = ("\n" + " " * 9).join(rows)
    else:  # Box actions: each dimension's mean ± std and the share at a bound
        actions = format_box_stats(e.to_dict())
    return (
        f"eval:    {e.episodes} episodes, score {e.score_mean:.1f} ± {e.score_std:.1f}, "
        f"success {success}{took}\n"
        f"         min {e.score_min:g}, median {e.score_median:g}, max {e.score_max:g}\n"
        "actions: " + actions
    )


def format_round(r: RoundResult, rounds: int) -> str:
    """The human-readable report of round ``r`` of ``rounds``, a stage per line or two (each within 70 characters)."""
    c, t, e = r.collect, r.train, r.eval
    head = f"round {r.round}\n" if rounds > 1 else ""
    val = t.val_accuracy
    epochs = f"{t.epochs} epoch{'' if t.epochs == 1 else 's'}"
    if e.action_balance is None:  # Box actions: a regression, scored by its validation MSE (or NLL)
        quality = f"val {t.loss or 'mse'} {'n/a' if t.val_loss is None else f'{t.val_loss:.4f}'}"
    else:
        quality = f"val accuracy {'n/a' if val is None else f'{val:.3f}'}"
    lowest = "n/a" if c.threshold is None else f"{c.threshold:g}"
    return (
        f"{head}collect: kept {c.kept_episodes} of {c.episodes} episodes ({100 * c.kept_fraction:.1f}%), "
        f"lowest kept score {lowest}\n"  # metrics' "threshold": the lowest score kept
        f"         {c.samples} samples, {c.seconds:.2f} s\n"
        f"train:   {epochs}, {quality}, "
        f"final loss {t.final_loss:.4f}, {t.seconds:.2f} s\n" + format_eval(e, e.seconds)
    )
