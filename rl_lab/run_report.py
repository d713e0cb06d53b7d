"""``report.md``: a human-readable summary of one run, and with ``plots=true`` its PNG plots.

The plots (``report.png``, matplotlib from the ``plots`` extra): score histograms (all collected
episodes vs kept vs evaluation), the training curves, the action balance (kept data vs
evaluation; for Box actions each dimension's histogram) and, for several rounds, the evaluation
score per round. They are opt-in: importing
matplotlib and drawing cost about 1 s, a tenth of a default run; TensorBoard and
``rl-lab-report`` show the same curves.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from rl_lab.data import load_dataset
from rl_lab.errors import MissingExtraError
from rl_lab.evaluate import EvalReport
from rl_lab.results import EvalFigures, RunMetrics
from rl_lab.utils import atomic_path, atomic_write

log = logging.getLogger(__name__)


def check_plots_available() -> None:
    """Raise :class:`~rl_lab.errors.MissingExtraError` unless matplotlib is there (checked before the run starts)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingExtraError("matplotlib", "plots", "plots=true (report.png; or leave plots=false)")


def write_run_report(
    out: Path, metrics: RunMetrics, report: EvalReport, first_dataset: Path, *, plots: bool = False
) -> Path:
    """Write ``report.md`` into the run dir, and with ``plots`` also ``report.png``."""
    images: list[str] = []
    if plots:
        import matplotlib

        matplotlib.use("Agg", force=False)
        images = _plots(out, metrics, report, first_dataset)
    text = _markdown(metrics, report, images)
    return atomic_write(out / "report.md", lambda f: f.write(text.encode()))


def _markdown(m: RunMetrics, report: EvalReport, plots: list[str]) -> str:
    assert m.last is not None, "a run report needs a round"
    c, t, e = m.last.collect, m.last.train, m.last.eval
    box = e.action_balance is None  # Box actions: a regression, judged by its mean squared error
    quality = f"validation MSE {_f(t.val_loss)}" if box else f"validation accuracy {_f(t.val_accuracy)}"
    lines = [
        f"# rl-lab run: {m.env_id} (seed {m.seed})",
        "",
        f"Status: **{m.status}**, {len(m.rounds)} round(s), {m.total_seconds:.1f} s in all"
        + (f", solved (stop_score) after {m.solve_seconds:.1f} s" if m.solve_seconds else "")
        + ".",
        "",
        "| stage | figures |",
        "|---|---|",
        f"| collect | kept {c.kept_episodes} of {c.episodes} episodes ({100 * c.kept_fraction:.1f}%, "
        f"lowest kept score {_g(c.threshold)}), {c.samples} samples; episode score {c.score_mean:.1f} mean, "
        f"{c.score_max:g} max; {c.seconds:.2f} s |",
        f"| train | {t.epochs} epoch{'' if t.epochs == 1 else 's'} on {t.samples} samples; final loss "
        f"{_f(t.final_loss)}, {quality}; {t.seconds:.2f} s |",
        f"| evaluate | {e.episodes} episodes: score {e.score_mean:.1f} ± {e.score_std:.1f} "
        f"(min {e.score_min:g}, median {e.score_median:g}, max {e.score_max:g}); success rate "
        f"{_f(e.success_rate)}; {e.seconds:.2f} s |",
        "",
    ]
    if e.action_balance is not None:
        shares = ", ".join(f"choice {a}: {100 * b:.1f}%" for a, b in enumerate(e.action_balance))
        lines += ["Action balance (evaluation): " + shares, ""]
    elif e.action_mean is not None:  # Box actions: per dimension, in the evaluation and in the kept data
        lines += [
            "| actions | dim | mean | std | at a bound |",
            "|---|---|---|---|---|",
            *(
                f"| {where} | {d} | {mu:.3f} | {sd:.3f} | {100 * sat:.1f}% |"
                for where, f in (("evaluation", e), ("kept data", c))
                for d, (mu, sd, sat) in enumerate(
                    zip(f.action_mean or [], f.action_std or [], f.action_saturation or [], strict=True)
                )
            ),
            "",
        ]
    if len(m.rounds) > 1:
        lines += [
            "## Rounds",
            "",
            f"| round | collect mean | kept | lowest kept score | {f'train {_loss_name(m)}' if box else 'train acc'} "
            "| eval mean ± std |",
            "|---|---|---|---|---|---|",
        ]
        for r in m.rounds:
            rc, rt, re_ = r.collect, r.train, r.eval
            lines.append(
                f"| {r.round} | {rc.score_mean:.1f} | {rc.kept_episodes} | {_g(rc.threshold)} | "
                f"{_f(rt.final_loss if box else rt.train_accuracy)} | {_eval_cell(re_)} |"
            )
        lines.append("")
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _eval_cell(e: EvalFigures) -> str:
    """A round's evaluation: mean ± std, or, cut short by evaluator.early_exit, the bound it proved."""
    if e.cut_step is not None:
        return f"≤ {e.score_bound:.1f} (stopped at step {e.cut_step}: stop_score out of reach)"
    return f"{e.score_mean:.1f} ± {e.score_std:.1f}"


def _loss_name(m: RunMetrics) -> str:
    """What a Box run's training losses measure: "mse" (a mean head) or "nll" (a Gaussian head)."""
    return next((r.train.loss for r in m.rounds if r.train.loss), "mse")


def _g(x: float | None) -> str:
    return "n/a" if x is None else f"{x:g}"


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _plots(out: Path, m: RunMetrics, report: EvalReport, first_dataset: Path) -> list[str]:
    """One PNG with four panels (one figure keeps matplotlib's cost low)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 7.5))
    (ax_scores, ax_train), (ax_actions, ax_rounds) = fig.subplots(2, 2)

    bins: Any = 30
    if first_dataset.is_file():
        ds = load_dataset(first_dataset)
        bins = np.linspace(0, max(ds.episode_returns.max(), report.scores.max()) + 1, 50)
        if ds.episode_returns.min() < 0:  # negative scores (Acrobot): bins over the whole range
            lo = min(ds.episode_returns.min(), report.scores.min())
            bins = np.linspace(lo - 1, max(ds.episode_returns.max(), report.scores.max()) + 1, 50)
        ax_scores.hist(ds.episode_returns, bins=bins, alpha=0.5, label="collected (round 0)", density=True)
        ax_scores.hist(ds.episode_returns[ds.kept], bins=bins, alpha=0.5, label="kept (round 0)", density=True)
    ax_scores.hist(report.scores, bins=bins, alpha=0.6, label="evaluation (final)", density=True)
    ax_scores.set(xlabel="episode score", ylabel="density", title="Scores: collected vs kept vs evaluation")
    ax_scores.legend(fontsize=8)

    history = [h for r in m.rounds for h in r.train.history]
    for key in ("train/loss", "val/loss", "train/accuracy", "val/accuracy"):
        ys = [h.get(key) for h in history]
        if any(y is not None for y in ys):
            ax_train.plot(range(1, len(ys) + 1), ys, marker="o", ms=3, label=key)
    ax_train.set(xlabel="epoch (all rounds)", title="Training curves")
    ax_train.legend(fontsize=8)

    assert m.last is not None
    c, e = m.last.collect, m.last.eval
    if e.action_balance is not None:
        kept, ev = c.action_balance or [], e.action_balance
        x = np.arange(len(ev))
        if len(kept) == len(ev):
            ax_actions.bar(x - 0.2, kept, 0.4, label="kept data (last round)")
        ax_actions.bar(x + 0.2, ev, 0.4, label="evaluation")
        ax_actions.set(xticks=x, xlabel="action", ylabel="share", title="Action balance")
    else:  # Box actions: each dimension's histogram over [low, high], as a share of the actions
        for where, f, style in (("kept data (last round)", c, "--"), ("evaluation", e, "-")):
            hist = f.action_histogram or {"edges": [], "counts": []}
            for d, (edges, counts) in enumerate(zip(hist["edges"], hist["counts"], strict=True)):
                share = np.asarray(counts, dtype=np.float64) / max(sum(counts), 1)
                ax_actions.stairs(share, edges, linestyle=style, label=f"dim {d}, {where}")
        ax_actions.set(xlabel="action value", ylabel="share", title="Action histogram")
    ax_actions.legend(fontsize=8)

    rs = m.rounds
    full = [r for r in rs if r.eval.cut_step is None]
    ax_rounds.errorbar(
        [r.round for r in full],
        [r.eval.score_mean for r in full],
        yerr=[r.eval.score_std for r in full],
        marker="o",
        capsize=3,
        label="evaluation",
    )
    cut = [r for r in rs if r.eval.cut_step is not None]
    if cut:  # evaluator.early_exit: only a bound is known
        ax_rounds.scatter(
            [r.round for r in cut], [r.eval.score_bound for r in cut], marker="v", label="evaluation cut: at most"
        )
    ax_rounds.plot([r.round for r in rs], [r.collect.score_mean for r in rs], marker=".", label="collected")
    ax_rounds.set(xlabel="round", ylabel="score mean", title="Score per round")
    ax_rounds.legend(fontsize=8)

    fig.subplots_adjust(hspace=0.35, wspace=0.2, left=0.06, right=0.98, top=0.95, bottom=0.07)
    with atomic_path(out / "report.png", suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    return ["report.png"]
