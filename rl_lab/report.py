"""Summarize a Hydra sweep (or a folder of single runs): one row per config, mean ± std over seeds.

A *job dir* is any directory that contains ``.hydra/``; :func:`load_runs` finds them under a root
(``multirun/<date>/<time>/`` or ``outputs/``), without descending into a job dir. Each job is read
from ``.hydra/overrides.yaml``, ``eval.json`` and ``metrics.json``; a job that failed, was
interrupted, never finished or left a truncated file is kept with a status that says so, and is
never an error. :func:`summarize` groups the jobs by their overrides minus ``seed=`` (and any other
ignored key), and :func:`write_outputs` writes ``summary.csv``, ``summary.md`` and ``summary.png``
into the root, atomically.

With ``rliable`` installed (the ``report`` extra), each group also gets the interquartile mean
(IQM) of its seeds' final scores with a 95% stratified-bootstrap confidence interval (Agarwal et
al., NeurIPS 2021; :data:`IQM_REPS` resamples, seeded, so a report is reproducible), in the
tables and in ``summary.csv`` (``iqm``, ``iqm_ci_low``, ``iqm_ci_high``; empty cells without
rliable), and with plots on, ``summary_profile.png``: the performance profile (the share of seeds
scoring above each score, with its 95% band) of every group.

Command line::

    rl-lab-report multirun/2024-06-01/12-00-00 [--ignore KEY ...] [--no-plot]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import math
import os
import statistics
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rl_lab.errors import ConfigError, MissingExtraError, RLLabError
from rl_lab.utils import atomic_path, atomic_write

log = logging.getLogger(__name__)

COMPLETED = "completed"
DEFAULTS_GROUP = "(defaults)"
OUTPUT_NAMES = ("summary.csv", "summary.md", "summary.png", "summary_profile.png")
IQM_REPS = 2000  # bootstrap resamples (rliable's default, 50,000, takes seconds per group)
IQM_SEED = 0  # the bootstrap's seed: the same runs give the same intervals
IQM_INSTALL = "pip install -e '.[report]'"


@dataclass
class RunRecord:
    """One job dir as read from disk.

    Attributes:
        path: the job dir.
        overrides: the Hydra overrides of the job, as written in ``.hydra/overrides.yaml``.
        status: ``"completed"``, ``"failed"``, ``"interrupted"``, ``"incomplete"`` (results
            missing) or ``"corrupt: <file>"`` (a file that cannot be parsed).
        eval: the contents of ``eval.json``, or None when it is missing or corrupt.
        metrics: the contents of ``metrics.json``, or None when it is missing or corrupt.
        name: the job dir relative to the root it was found under (for messages and tables).
    """

    path: Path
    overrides: list[str]
    status: str
    eval: dict[str, Any] | None
    metrics: dict[str, Any] | None
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.path.name

    @property
    def completed(self) -> bool:
        """Whether the job finished and its eval score can be used."""
        return self.status == COMPLETED

    @property
    def score(self) -> float | None:
        """Mean eval score of the job (``eval.json``, else ``metrics.json``'s eval section)."""
        for section in (self.eval, _section(self.metrics, "eval")):
            value = _number((section or {}).get("score_mean"))
            if value is not None:
                return value
        return None


@dataclass
class GroupRow:
    """Summary of the jobs that share a config (all overrides but the ignored keys, e.g. seeds).

    Attributes:
        group: the group name: its normalized overrides joined with ``,``, or ``(defaults)``.
        overrides: the normalized overrides that define the group.
        n: number of completed jobs (seeds) in the group.
        score_mean: mean over the completed jobs of their mean eval score (None if n == 0).
        score_std: population std (ddof=0) of those scores; 0.0 for one job, None if n == 0.
        scores: the eval score of each completed job, in job order.
        val_accuracy: mean of ``train.val_accuracy`` over the completed jobs that report it.
        kept_episodes: mean of ``collect.kept_episodes`` over the completed jobs that report it.
        total_seconds: mean of ``total_seconds`` over the completed jobs that report it.
        failed: ``(job name, status)`` of each job in the group that did not complete.
        iqm: interquartile mean of ``scores`` (rliable); None without rliable or if n == 0.
        iqm_ci: its 95% stratified-bootstrap confidence interval ``(low, high)``, or None.
    """

    group: str
    overrides: list[str]
    n: int
    score_mean: float | None
    score_std: float | None
    scores: list[float] = field(default_factory=list)
    val_accuracy: float | None = None
    kept_episodes: float | None = None
    total_seconds: float | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)
    iqm: float | None = None
    iqm_ci: tuple[float, float] | None = None

    @property
    def n_failed(self) -> int:
        """Number of jobs in the group that did not complete."""
        return len(self.failed)


# --------------------------------------------------------------------------------------- loading


def load_runs(root: Path) -> list[RunRecord]:
    """Find and read every job dir (a dir containing ``.hydra/``) under ``root``.

    Args:
        root: a multirun sweep dir, a folder of single runs, or one run dir.

    Returns:
        The jobs, sorted by their path relative to ``root``; empty when there are none (or
        ``root`` does not exist). Broken jobs are returned with a non-completed status.
    """
    root = Path(root)
    return [_load_run(job, _relative_name(job, root)) for job in _find_job_dirs(root)]


def _find_job_dirs(root: Path) -> Iterator[Path]:
    """Yield job dirs under ``root`` in sorted order, not descending into job or hidden dirs."""
    if not root.is_dir():
        return
    if (root / ".hydra").is_dir():
        yield root
        return
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        yield from _find_job_dirs(child)


def _relative_name(job: Path, root: Path) -> str:
    rel = job.relative_to(root).as_posix()
    if rel != ".":
        return rel
    return job.resolve().name or str(job)


def _load_run(job: Path, name: str) -> RunRecord:
    overrides, problems = _read_overrides(job / ".hydra" / "overrides.yaml")
    eval_data, eval_problem = _read_json(job / "eval.json")
    metrics, metrics_problem = _read_json(job / "metrics.json")
    corrupt = [p for p in (*problems, eval_problem, metrics_problem) if p]
    record = RunRecord(job, overrides, "", eval_data, metrics, name)
    record.status = f"corrupt: {', '.join(corrupt)}" if corrupt else _status(record)
    return record


def _read_overrides(path: Path) -> tuple[list[str], list[str]]:
    """Return the overrides and a list of the (at most one) corrupt file names."""
    if not path.is_file():
        return [], []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return [], [".hydra/overrides.yaml"]
    if data is None:
        return [], []
    if not isinstance(data, list):
        return [], [".hydra/overrides.yaml"]
    return [str(item).strip() for item in data], []


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Return ``(data, None)``, ``(None, None)`` if missing, or ``(None, file name)`` if corrupt."""
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None, path.name
    return (data, None) if isinstance(data, dict) else (None, path.name)


def _status(run: RunRecord) -> str:
    """Status of a job whose files all parsed."""
    if not (run.path / ".hydra" / "overrides.yaml").is_file():
        return "incomplete"
    if run.metrics is None:
        return "incomplete"
    status = str(run.metrics.get("status", COMPLETED))
    if status != COMPLETED:
        return status
    return COMPLETED if run.score is not None else "incomplete"


def _section(data: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    value = (data or {}).get(key)
    return value if isinstance(value, dict) else None


def _number(value: Any) -> float | None:
    """``value`` as a float if it is a real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# --------------------------------------------------------------------------------------- grouping


def normalize_override(override: str) -> tuple[str, str]:
    """Split ``[+|++]key=value`` into ``(key, "key=value")``, dropping the ``+``/``++`` prefix."""
    text = override.strip().lstrip("+")
    key = text.split("=", 1)[0].strip()
    return key, text


# Keys that say how a job ran, not what it computed: never a group of their own.
EXECUTION_KEYS = frozenset({"seed", "launcher", "hparams_search", "debug", "device", "threads", "trainer.progress"})


def group_key(overrides: Iterable[str], ignore: Iterable[str] = ("seed",)) -> tuple[str, ...]:
    """The overrides that define a job's group: normalized, without ignored keys, sorted.

    The seed and the keys that only choose how a job runs (launcher, threads, ``hydra.*``...) are
    always left out.
    """
    ignored = EXECUTION_KEYS | set(ignore)
    kept = (normalize_override(o) for o in overrides if o.strip())
    return tuple(sorted(text for key, text in kept if key not in ignored and not key.startswith("hydra")))


def group_name(key: Sequence[str]) -> str:
    """Human name of a group: its overrides joined with ``,``, or ``(defaults)`` when empty."""
    return ",".join(key) if key else DEFAULTS_GROUP


def _sort_key(key: Sequence[str]) -> tuple[Any, ...]:
    """Order groups by their override string, comparing numeric values as numbers."""
    parts = []
    for text in key:
        name, _, value = text.partition("=")
        try:
            parts.append((name, 0, float(value), value))
        except ValueError:
            parts.append((name, 1, 0.0, value))
    return tuple(parts)


def summarize(
    runs: Sequence[RunRecord], group_ignore: Iterable[str] = ("seed",), *, iqm: bool = True
) -> list[GroupRow]:
    """Group jobs by their overrides (minus ``seed`` and ``group_ignore``) and aggregate each group.

    Args:
        runs: jobs from :func:`load_runs`.
        group_ignore: override keys (without ``+``/``++``) that do not define a group; ``seed``
            is always ignored.
        iqm: also compute each group's IQM and its confidence interval, when rliable is installed.

    Returns:
        One row per group, sorted by the group's override string (numbers compared as numbers).
    """
    ignore = tuple(group_ignore)
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(group_key(run.overrides, ignore), []).append(run)
    rows = [_group_row(key, groups[key]) for key in sorted(groups, key=_sort_key)]
    if iqm and rliable_problem() is None:
        for row in rows:
            if row.scores:
                row.iqm, low, high = iqm_interval(row.scores)
                row.iqm_ci = (low, high)
    return rows


# --------------------------------------------------------------------------------------- IQM (rliable)


def rliable_problem() -> str | None:
    """None when rliable can be used; else one sentence saying how to get the IQM columns."""
    try:
        from rliable import library, metrics  # noqa: F401
    except ImportError:
        return f"IQM [95% CI] columns: install rliable with {IQM_INSTALL}."
    except Exception as e:  # noqa: BLE001  (arch<8, which rliable pins, fails to import under pandas 3)
        return (
            f"IQM [95% CI] columns: rliable is installed but fails to import ({type(e).__name__}: {str(e)[:120]}); "
            f"{IQM_INSTALL} installs versions that work together (rliable's arch<8 needs pandas<3)."
        )
    return None


@contextlib.contextmanager
def _seeded_rliable(seed: int) -> Iterator[None]:
    """rliable's bootstrap, seeded: numpy's global generator set to ``seed`` and restored afterwards.

    rliable 1.2's ``StratifiedBootstrap.update_indices`` draws its resamples from ``np.random``,
    not from the ``random_state`` it is given, so only the global seed makes it reproducible.
    Also silences its "Calculating estimates for ..." log line (absl) and arch's FutureWarning.
    """
    absl = logging.getLogger("absl")
    level, state = absl.level, np.random.get_state()
    absl.setLevel(logging.WARNING)
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # arch: "random_state is deprecated"
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        absl.setLevel(level)
        np.random.set_state(state)


def _iqm(scores: np.ndarray) -> float:
    """rliable's ``metrics.aggregate_iqm`` (the 25% trimmed mean over all runs) in plain numpy: 5x faster."""
    a = np.sort(scores, axis=None)
    cut = int(0.25 * a.size)
    return float(a[cut : a.size - cut].mean())


def iqm_interval(
    scores: Sequence[float], reps: int = IQM_REPS, seed: int = IQM_SEED, size: float = 0.95
) -> tuple[float, float, float]:
    """IQM of the seeds' scores and its stratified-bootstrap CI: ``(iqm, low, high)``, with rliable.

    The scores are one task's runs (a ``(runs, 1)`` matrix); each group is resampled with its own
    generator seeded by ``seed``, so a group's interval does not depend on the other groups.
    """
    from rliable import library

    x = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    with _seeded_rliable(seed):
        point, ci = library.get_interval_estimates(
            {"g": x},
            lambda s: np.array([_iqm(s)]),
            reps=reps,
            confidence_interval_size=size,
            random_state=np.random.RandomState(seed),
        )
    return float(point["g"][0]), float(ci["g"][0][0]), float(ci["g"][1][0])


def performance_profiles(
    rows: Sequence[GroupRow], taus: np.ndarray, reps: int = IQM_REPS, seed: int = IQM_SEED
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per group with scores: ``(profile, low, high)``, the share of seeds scoring above each tau, with its 95% CI."""
    from rliable import library

    def profile(s: np.ndarray) -> np.ndarray:  # rliable's score_distributions, vectorized over taus
        return (s.reshape(1, -1) > taus.reshape(-1, 1)).mean(axis=1)

    out = {}
    for row in rows:
        if not row.scores:
            continue
        with _seeded_rliable(seed):
            point, ci = library.get_interval_estimates(
                {"g": np.asarray(row.scores, dtype=np.float64).reshape(-1, 1)},
                profile,
                reps=reps,
                random_state=np.random.RandomState(seed),
            )
        out[row.group] = (point["g"], ci["g"][0], ci["g"][1])
    return out


def _group_row(key: tuple[str, ...], runs: list[RunRecord]) -> GroupRow:
    done = [r for r in runs if r.completed]
    scores = [r.score for r in done if r.score is not None]
    return GroupRow(
        group=group_name(key),
        overrides=list(key),
        n=len(done),
        score_mean=statistics.fmean(scores) if scores else None,
        score_std=statistics.pstdev(scores) if scores else None,
        scores=scores,
        val_accuracy=_mean_of(done, "train", "val_accuracy"),
        kept_episodes=_mean_of(done, "collect", "kept_episodes"),
        total_seconds=_mean_of(done, None, "total_seconds"),
        failed=[(r.name, r.status) for r in runs if not r.completed],
    )


def _mean_of(runs: list[RunRecord], section: str | None, key: str) -> float | None:
    """Mean of ``metrics[section][key]`` (or ``metrics[key]``) over the runs that have a number."""
    values = []
    for run in runs:
        data = _section(run.metrics, section) if section else run.metrics
        value = _number((data or {}).get(key))
        if value is not None:
            values.append(value)
    return statistics.fmean(values) if values else None


# --------------------------------------------------------------------------------------- outputs


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.{digits}f}"


def _score_text(row: GroupRow) -> str:
    return "—" if row.score_mean is None else f"{_fmt(row.score_mean)} ± {_fmt(row.score_std)}"


def _iqm_text(row: GroupRow) -> str:
    if row.iqm is None or row.iqm_ci is None:
        return "—"
    return f"{_fmt(row.iqm)} [{_fmt(row.iqm_ci[0])}, {_fmt(row.iqm_ci[1])}]"


def _failed_text(row: GroupRow) -> str:
    return "; ".join(f"{name} ({status})" for name, status in row.failed)


def table_cells(row: GroupRow, iqm: bool = False) -> list[str]:
    """The cells of one row of the text tables (rich and markdown); ``iqm``: with the IQM column."""
    return [
        row.group,
        str(row.n),
        _score_text(row),
        *([_iqm_text(row)] if iqm else []),
        _fmt(row.val_accuracy, 3),
        _fmt(row.kept_episodes, 1),
        _fmt(row.total_seconds, 1),
        f"{row.n_failed}: {_failed_text(row)}" if row.failed else "0",
    ]


TABLE_HEADERS = ["group", "n", "score (mean ± std)", "val acc", "kept episodes", "total s", "failed"]
IQM_HEADER = "IQM [95% CI]"
CSV_HEADERS = [
    "group", "n_seeds", "score_mean", "score_std", "iqm", "iqm_ci_low", "iqm_ci_high", "seed_scores", "val_accuracy",
    "kept_episodes", "total_seconds", "n_failed", "failed",
]  # fmt: skip


def render_csv(rows: Sequence[GroupRow]) -> str:
    """The summary as CSV text (full precision; empty cells for missing values)."""

    def num(value: float | None) -> str:
        return "" if value is None else repr(value)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADERS)
    for r in rows:
        low, high = r.iqm_ci or (None, None)
        writer.writerow([
            r.group, r.n, num(r.score_mean), num(r.score_std), num(r.iqm), num(low), num(high),
            ";".join(map(repr, r.scores)),
            num(r.val_accuracy), num(r.kept_episodes), num(r.total_seconds), r.n_failed, _failed_text(r),
        ])  # fmt: skip
    return buf.getvalue()


def render_markdown(root: Path, rows: Sequence[GroupRow], runs: Sequence[RunRecord]) -> str:
    """The summary as markdown: a table, then the jobs that did not complete."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    iqm = any(r.iqm is not None for r in rows)
    how = (
        f"; IQM: interquartile mean, with its 95% stratified-bootstrap confidence interval over seeds, by rliable "
        f"from {IQM_REPS} resamples"
        if iqm
        else ""
    )
    out = [f"# Summary of `{root}`", "", f"{len(runs)} jobs, {len(rows)} groups (mean ± std over seeds{how}).", ""]
    problem = None if iqm else rliable_problem()
    if problem:
        out += [problem, ""]
    headers = [*TABLE_HEADERS[:3], *([IQM_HEADER] if iqm else []), *TABLE_HEADERS[3:]]
    out += [line(headers), line(["---"] * len(headers)), *(line(table_cells(r, iqm)) for r in rows)]
    out += ["", "## Failed / incomplete jobs", ""]
    bad = [r for r in runs if not r.completed]
    out += [f"- `{r.name}`: **{r.status}** (`{r.path}`)" for r in bad] or ["None: every job completed."]
    return "\n".join(out) + "\n"


def write_plot(path: Path, root: Path, rows: Sequence[GroupRow]) -> Path | None:
    """Plot the mean eval score ± std per group, with each seed's score as a dot; write atomically.

    Returns:
        ``path``, or None when matplotlib is not installed (one log line, no error).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.info("Skipping %s: %s", path.name, MissingExtraError("matplotlib", "plots", "The summary plot"))
        return None
    fig = Figure(figsize=(max(6.0, 0.9 * len(rows) + 2.0), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    _draw(fig.add_subplot(), root, rows)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def _draw(ax: Any, root: Path, rows: Sequence[GroupRow]) -> None:
    for x, row in enumerate(rows):
        if row.scores:
            k = len(row.scores)
            offsets = [0.0] if k == 1 else [-0.15 + 0.3 * i / (k - 1) for i in range(k)]
            ax.errorbar(x, row.score_mean, yerr=row.score_std, fmt="o", color="tab:blue", capsize=5, zorder=2)
            ax.scatter([x + o for o in offsets], row.scores, s=14, color="black", alpha=0.6, lw=0, zorder=3)
    ax.set_xticks(range(len(rows)), [r.group for r in rows], rotation=30, ha="right")
    ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.set_ylabel("eval score (mean over episodes)")
    ax.set_title(f"{_root_label(root)}\neval score per group: mean ± std over seeds (dots: one seed each)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def write_profile_plot(path: Path, root: Path, rows: Sequence[GroupRow]) -> Path | None:
    """Plot every group's performance profile with its 95% band (rliable); write atomically.

    Returns:
        ``path``, or None when matplotlib or rliable is missing, or no group has a score.
    """
    scores = [s for r in rows for s in r.scores]
    if not scores or rliable_problem() is not None:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    lo, hi = min(scores), max(scores)
    pad = max(1e-9, 0.02 * (hi - lo) or 0.02 * abs(hi) or 1.0)
    taus = np.linspace(lo - pad, hi + pad, 201)
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for group, (profile, low, high) in performance_profiles(rows, taus).items():
        (line,) = ax.plot(taus, profile, lw=2, label=group)
        ax.fill_between(taus, low, high, color=line.get_color(), alpha=0.15, lw=0)
    ax.set(xlabel="eval score τ", ylabel="fraction of seeds with score > τ", ylim=(-0.02, 1.02))
    ax.set_title(f"{_root_label(root)}\nperformance profiles (95% stratified-bootstrap bands, rliable)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def _root_label(root: Path) -> str:
    """The root's name, with its parent's for a sweep dir (``<date>/<time>``)."""
    root = root.resolve()
    return f"{root.parent.name}/{root.name}" if root.parent.name else root.name or str(root)


def write_outputs(root: Path, rows: Sequence[GroupRow], runs: Sequence[RunRecord], *, plot: bool = True) -> list[Path]:
    """Write ``summary.csv``, ``summary.md`` and (unless ``plot`` is False) ``summary.png`` into ``root``.

    With rliable, ``summary_profile.png`` (the performance profiles) comes with ``summary.png``.
    Each file is written atomically. The PNGs are skipped with one log line if matplotlib is missing.

    Returns:
        The paths written.
    """
    root = Path(root)
    csv_path, md_path, png_path, profile_path = (root / name for name in OUTPUT_NAMES)
    atomic_write(csv_path, lambda f: f.write(render_csv(rows).encode()))
    atomic_write(md_path, lambda f: f.write(render_markdown(root, rows, runs).encode()))
    written = [csv_path, md_path]
    if plot and write_plot(png_path, root, rows) is not None:
        written.append(png_path)
        if write_profile_plot(profile_path, root, rows) is not None:
            written.append(profile_path)
    return written


# --------------------------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rl-lab-report",
        description="Summarize a Hydra sweep dir (or a folder of runs): mean ± std of the eval score per config, "
        f"and with rliable ({IQM_INSTALL}) its IQM with a 95% stratified-bootstrap confidence interval.",
    )
    parser.add_argument("dir", type=Path, help="multirun/<date>/<time>/, outputs/, or any dir with job dirs inside")
    parser.add_argument(
        "--ignore", metavar="KEY", action="append", default=[],
        help="override key that does not define a group, besides seed (repeatable)",
    )  # fmt: skip
    parser.add_argument("--no-plot", action="store_true", help="do not write summary.png")
    return parser.parse_args(argv)


def _load_or_explain(root: Path) -> list[RunRecord]:
    """:func:`load_runs`, raising :class:`ConfigError` with a clear message when there is nothing to read."""
    expected = (
        "It should be a Hydra sweep dir (multirun/<date>/<time>/) or a folder of runs (outputs/), with job "
        "dirs inside that each contain a .hydra/ folder (plus eval.json and metrics.json once they finish)."
    )
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise ConfigError(f"rl-lab-report: {root} {what}. {expected}")
    runs = load_runs(root)
    if not runs:
        raise ConfigError(f"rl-lab-report: found no runs in {root}: no directory under it contains .hydra/. {expected}")
    return runs


def _print_table(rows: Sequence[GroupRow], runs: Sequence[RunRecord], title: str) -> None:
    """Print the summary as a rich table, then one line per job that did not complete."""
    from rich.console import Console
    from rich.table import Table

    iqm = any(r.iqm is not None for r in rows)
    table = Table(title=title)
    table.add_column("group", overflow="fold", min_width=12)
    headers = ("n", "score", "± std", *([IQM_HEADER] if iqm else []), "val acc", "kept ep", "total s", "failed")
    for header in headers:
        table.add_column(header, justify="right")
    for r in rows:
        numbers = (r.val_accuracy, 3), (r.kept_episodes, 1), (r.total_seconds, 1)
        cells = [r.group, str(r.n), _fmt(r.score_mean), _fmt(r.score_std), *([_iqm_text(r)] if iqm else [])]
        cells += [*(_fmt(v, d) for v, d in numbers), str(r.n_failed)]
        table.add_row(*cells, style=None if r.n else "red")
    console = Console()
    console.print(table)
    problem = None if iqm else rliable_problem()
    if problem:
        console.print(problem, markup=False, highlight=False)
    for run in (r for r in runs if not r.completed):
        console.print(f"[red]not completed[/red]: {run.name} ({run.status})", markup=True, highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``rl-lab-report <dir> [--ignore KEY ...] [--no-plot]``.

    Returns:
        0 on success; 2 (with one paragraph on stderr) when ``dir`` is missing or holds no runs.
    """
    args = _parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        runs = _load_or_explain(args.dir)
    except RLLabError as err:
        print(err, file=sys.stderr)
        return err.exit_code
    rows = summarize(runs, group_ignore=("seed", *args.ignore))
    _print_table(rows, runs, title=f"{args.dir}: {len(runs)} jobs")
    written = write_outputs(args.dir, rows, runs, plot=not args.no_plot)
    n_bad = sum(not r.completed for r in runs)
    if n_bad:
        print(f"{n_bad} of {len(runs)} jobs did not complete; they are listed in {args.dir / 'summary.md'}.")
    print("Wrote " + ", ".join(os.fspath(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
