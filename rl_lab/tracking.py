"""TensorBoard logging: namespaced scalars, histograms, the config as a table, hparams and GIFs.

Tags follow SB3/CleanRL namespaces: ``collect/*``, ``train/*``, ``val/*``, ``eval/*``,
``time/*``. Single-round runs log per-epoch curves with the epoch as step; multi-round runs also
log one point per round with the round as step, so the curves show learning across rounds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


class Tracker:
    """A thin wrapper over ``torch.utils.tensorboard.SummaryWriter`` writing into ``<run dir>/tb``."""

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir))

    def scalars(self, figures: dict[str, float | int | None], step: int) -> None:
        """Log each finite number of ``figures`` under its (namespaced) key."""
        for tag, value in figures.items():
            if value is not None and math.isfinite(float(value)):
                self.writer.add_scalar(tag, float(value), step)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        """Log a histogram; empty arrays are skipped."""
        values = np.asarray(values, dtype=np.float64)
        if values.size:
            self.writer.add_histogram(tag, values, step)

    def action_balance(self, prefix: str, balance: np.ndarray, counts: np.ndarray, step: int) -> None:
        """Per-action shares as scalars (``<prefix>/action_balance/<a>``) and the actions as a histogram."""
        self.scalars({f"{prefix}/action_balance/{a}": float(b) for a, b in enumerate(balance)}, step)
        counts = np.asarray(counts, dtype=np.int64)
        if counts.sum() > 0:
            # A histogram of action ids, one bucket per action, built from the counts.
            edges = np.arange(len(counts) + 1, dtype=np.float64) - 0.5
            self.writer.add_histogram_raw(
                f"{prefix}/actions",
                min=0.0,
                max=float(len(counts) - 1),
                num=int(counts.sum()),
                sum=float((np.arange(len(counts)) * counts).sum()),
                sum_squares=float((np.arange(len(counts)) ** 2 * counts).sum()),
                bucket_limits=edges[1:].tolist(),
                bucket_counts=counts.astype(np.float64).tolist(),
                global_step=step,
            )

    def box_actions(self, prefix: str, stats: Any, step: int) -> None:
        """Box actions (a :class:`rl_lab.actions.BoxStats`): per dimension ``<prefix>/action_mean/<j>``,
        ``action_std/<j>``, ``action_saturation/<j>`` and a histogram ``<prefix>/actions/<j>``."""
        for name, values in (
            ("action_mean", stats.mean),
            ("action_std", stats.std),
            ("action_saturation", stats.saturation),
        ):
            self.scalars({f"{prefix}/{name}/{j}": float(v) for j, v in enumerate(values)}, step)
        if stats.count == 0:
            return
        for j in range(stats.counts.shape[0]):
            counts = stats.counts[j].astype(np.float64)
            self.writer.add_histogram_raw(
                f"{prefix}/actions/{j}",
                min=float(stats.edges[j, 0]),
                max=float(stats.edges[j, -1]),
                num=int(stats.count),
                sum=float(stats.total[j]),
                sum_squares=float(stats.total_sq[j]),
                bucket_limits=stats.edges[j, 1:].tolist(),
                bucket_counts=counts.tolist(),
                global_step=step,
            )

    def weights(self, model: Any, step: int) -> None:
        """Histograms of every parameter tensor (``weights/<name>``)."""
        for name, p in model.named_parameters():
            self.histogram(f"weights/{name}", p.detach().cpu().numpy(), step)

    def config_table(self, flat: dict[str, Any]) -> None:
        """The resolved config as a markdown table (TensorBoard's Text tab)."""
        rows = "\n".join(f"|{k}|{v}|" for k, v in sorted(flat.items()))
        self.writer.add_text("config", f"|key|value|\n|-|-|\n{rows}", 0)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float | None]) -> None:
        """Hyperparameters and final metrics for the HParams tab, in this run's own directory.

        The metrics name scalar tags this run already logs (``eval/score_mean``...): the HParams tab
        shows their last value. Unlike ``SummaryWriter.add_hparams``, no extra scalar point is
        written at step 0 (TensorBoard would then show those curves as one point).
        """
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        hp = {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in hparams.items()}
        mt = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        file_writer = self.writer._get_file_writer()
        for summary in hparams_summaries(hp, mt):
            file_writer.add_summary(summary)

    def gif(self, tag: str, frames: list[np.ndarray], step: int, fps: float) -> None:
        """An animated GIF image summary (plays in the Images tab)."""
        from rl_lab.render import add_gif_summary

        add_gif_summary(self.writer, tag, frames, step, fps)

    def flush(self) -> None:
        """Write pending events to disk."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
