"""Tests of rl_lab.report: loading job dirs, grouping over seeds, output files and the CLI."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rl_lab import report
from rl_lab.report import GroupRow, RunRecord, load_runs, main, summarize, write_outputs

HAS_MPL = importlib.util.find_spec("matplotlib") is not None


def make_job(
    job: Path,
    overrides: list[str],
    score: float | None = None,
    *,
    status: str = "completed",
    val_accuracy: float = 0.9,
    kept: int = 20,
    total_seconds: float = 2.0,
) -> Path:
    """Write a fake job dir: .hydra/overrides.yaml, and eval.json + metrics.json when ``score`` is given."""
    (job / ".hydra").mkdir(parents=True)
    text = "".join(f"- {o}\n" for o in overrides) or "[]\n"
    (job / ".hydra" / "overrides.yaml").write_text(text)
    if score is None:
        return job
    ev = {"env_id": "CartPole-v1", "episodes": 5, "score_mean": score, "score_std": 1.0, "scores": [score] * 5}
    (job / "eval.json").write_text(json.dumps(ev))
    metrics = {
        "status": status,
        "collect": {"episodes": 50, "kept_episodes": kept, "samples": 1000},
        "train": {"epochs": 3, "samples": 1000, "final_loss": 0.1, "val_accuracy": val_accuracy},
        "eval": {**ev, "seconds": 0.5},
        "total_seconds": total_seconds,
        "solve_seconds": None,
    }
    (job / "metrics.json").write_text(json.dumps(metrics))
    return job


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 thresholds x 3 seeds, plus broken jobs.

    min_score=50:  seeds 1-3 score 10, 20, 30 (completed); seed 4 interrupted.
    min_score=100: seeds 1-2 score 200, 220 (completed); seed 3 failed (only .hydra/);
                   seed 4 with a truncated metrics.json.
    """
    root = tmp_path / "multirun" / "2024-06-01" / "12-00-00"
    for i, (seed, score) in enumerate([(1, 10.0), (2, 20.0), (3, 30.0)]):
        prefix = ["", "+", "++"][i]  # the same key with +/++ prefixes must land in one group
        make_job(
            root / f"{i}_seed={seed},collector.min_score=50",
            [f"seed={seed}", f"{prefix}collector.min_score=50"],
            score,
            val_accuracy=0.8 + 0.1 * i,
            kept=10 * (i + 1),
            total_seconds=float(i + 1),
        )
    make_job(root / "3", ["seed=4", "collector.min_score=50"], 25.0, status="interrupted")
    make_job(root / "4", ["seed=1", "collector.min_score=100"], 200.0, val_accuracy=1.0, kept=5, total_seconds=4.0)
    make_job(root / "5", ["seed=2", "collector.min_score=100"], 220.0, val_accuracy=0.5, kept=7, total_seconds=6.0)
    make_job(root / "6", ["seed=3", "collector.min_score=100"])  # failed before writing anything
    job = make_job(root / "7", ["seed=4", "collector.min_score=100"], 999.0)
    text = (job / "metrics.json").read_text()
    (job / "metrics.json").write_text(text[: len(text) // 2])  # truncated
    (root / "multirun.yaml").write_text("hydra: {}\n")  # sweep-level files are not jobs
    return root


def by_group(rows: list[GroupRow]) -> dict[str, GroupRow]:
    return {r.group: r for r in rows}


def test_load_runs_finds_jobs_and_flags_broken_ones(sweep: Path) -> None:
    runs = load_runs(sweep)
    status = {r.name: r.status for r in runs}
    assert len(runs) == 8
    assert status["3"] == "interrupted"
    assert status["6"] == "incomplete"
    assert status["7"] == "corrupt: metrics.json"
    assert sum(r.completed for r in runs) == 5
    assert all(isinstance(r, RunRecord) for r in runs)
    assert runs[0].overrides == ["seed=1", "collector.min_score=50"]
    assert runs[0].eval is not None and runs[0].metrics is not None
    assert next(r for r in runs if r.name == "7").metrics is None


def test_summarize_means_stds_and_failures(sweep: Path) -> None:
    rows = summarize(load_runs(sweep))
    # numeric values sort as numbers: 50 before 100
    assert [r.group for r in rows] == ["collector.min_score=50", "collector.min_score=100"]
    low, high = rows
    assert low.n == 3
    assert low.scores == [10.0, 20.0, 30.0]
    assert low.score_mean == pytest.approx(20.0)
    assert low.score_std == pytest.approx(math.sqrt(200 / 3))  # population std, ddof=0
    assert low.val_accuracy == pytest.approx(0.9)
    assert low.kept_episodes == pytest.approx(20.0)
    assert low.total_seconds == pytest.approx(2.0)
    assert low.failed == [("3", "interrupted")] and low.n_failed == 1

    assert high.n == 2
    assert high.score_mean == pytest.approx(210.0)
    assert high.score_std == pytest.approx(10.0)
    assert high.val_accuracy == pytest.approx(0.75)
    assert high.kept_episodes == pytest.approx(6.0)
    assert high.total_seconds == pytest.approx(5.0)
    assert high.failed == [("6", "incomplete"), ("7", "corrupt: metrics.json")]


def test_summarize_single_run_has_zero_std_and_ignore_keys(sweep: Path) -> None:
    runs = load_runs(sweep)
    one = summarize([r for r in runs if r.name == "4"])
    assert one[0].n == 1 and one[0].score_mean == 200.0 and one[0].score_std == 0.0
    (merged,) = summarize(runs, group_ignore=("seed", "collector.min_score"))
    assert merged.group == "(defaults)" and merged.n == 5 and merged.n_failed == 3
    assert merged.score_mean == pytest.approx((10 + 20 + 30 + 200 + 220) / 5)


def test_group_with_no_completed_job(tmp_path: Path) -> None:
    make_job(tmp_path / "0", ["lr=0.1"])
    (row,) = summarize(load_runs(tmp_path))
    assert (row.n, row.score_mean, row.score_std, row.failed) == (0, None, None, [("0", "incomplete")])


def test_normalize_override_and_group_key() -> None:
    assert report.normalize_override("++a.b=3") == ("a.b", "a.b=3")
    assert report.group_key(["seed=3", "+x=1", "a=2"]) == ("a=2", "x=1")
    assert report.group_key(["seed=3", "+x=1"], ignore=("x",)) == ()
    assert report.group_name(()) == "(defaults)"


def test_corrupt_files_and_odd_json(tmp_path: Path) -> None:
    make_job(tmp_path / "a", ["x=1"], 1.0)
    (tmp_path / "a" / "eval.json").write_text("[1, 2]")  # valid JSON, not an object
    make_job(tmp_path / "b", ["x=1"], 1.0)
    (tmp_path / "b" / ".hydra" / "overrides.yaml").write_text("- [unclosed\n")
    make_job(tmp_path / "c", ["x=1"], 1.0, status="failed")
    status = {r.name: r.status for r in load_runs(tmp_path)}
    assert status == {"a": "corrupt: eval.json", "b": "corrupt: .hydra/overrides.yaml", "c": "failed"}


def test_write_outputs(sweep: Path) -> None:
    runs = load_runs(sweep)
    rows = summarize(runs)
    written = write_outputs(sweep, rows, runs)
    assert (sweep / "summary.csv") in written and (sweep / "summary.md") in written
    assert ((sweep / "summary.png") in written) == HAS_MPL
    if HAS_MPL:
        assert (sweep / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with open(sweep / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["group"] for r in table] == ["collector.min_score=50", "collector.min_score=100"]
    assert float(table[1]["score_mean"]) == 210.0 and float(table[1]["score_std"]) == 10.0
    assert table[1]["n_seeds"] == "2" and table[1]["n_failed"] == "2"

    md = (sweep / "summary.md").read_text()
    assert "| collector.min_score=50 | 3 | 20.00 ± 8.16 |" in md
    assert "## Failed / incomplete jobs" in md
    for name, status in [("3", "interrupted"), ("6", "incomplete"), ("7", "corrupt: metrics.json")]:
        assert f"- `{name}`: **{status}** (`{sweep / name}`)" in md
    assert not list(sweep.glob(".summary*"))  # no temporary files left behind
    # the outputs do not disturb a second pass
    assert [r.name for r in load_runs(sweep)] == [r.name for r in runs]


def test_write_outputs_without_matplotlib(sweep: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)
    runs = load_runs(sweep)
    with caplog.at_level(logging.INFO, logger="rl_lab.report"):
        written = write_outputs(sweep, summarize(runs), runs)
    assert written == [sweep / "summary.csv", sweep / "summary.md"]
    assert not (sweep / "summary.png").exists()
    skips = [r for r in caplog.records if r.name == "rl_lab.report"]
    assert len(skips) == 1 and skips[0].levelno == logging.INFO and "matplotlib" in skips[0].getMessage()


def test_main_prints_table_and_writes_files(sweep: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main([str(sweep), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "score" in out and "± std" in out
    line = next(ln for ln in out.splitlines() if "collector.min_score=50 " in ln)
    assert [c.strip() for c in line.split("│")[1:5]] == ["collector.min_score=50", "3", "20.00", "8.16"]
    assert "210.00" in out and "10.00" in out
    assert "not completed: 6 (incomplete)" in out and "not completed: 7 (corrupt: metrics.json)" in out
    assert "3 of 8 jobs did not complete" in out
    assert str(sweep / "summary.md") in out
    assert (sweep / "summary.csv").exists() and not (sweep / "summary.png").exists()


def test_main_ignore_option(sweep: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main([str(sweep), "--ignore", "collector.min_score", "--no-plot"]) == 0
    assert "(defaults)" in capsys.readouterr().out
    assert (sweep / "summary.csv").read_text().count("\n") == 2  # header + one group


@pytest.mark.parametrize("kind", ["missing", "empty", "file"])
def test_main_without_runs_exits_2(tmp_path: Path, capsys, kind: str) -> None:
    target = tmp_path / "nothing-here"
    if kind == "empty":
        (target / "sub" / "dir").mkdir(parents=True)
    elif kind == "file":
        target.write_text("x")
    assert main([str(target)]) == 2
    captured = capsys.readouterr()
    assert str(target) in captured.err and ".hydra/" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (target / "summary.csv").exists()


def test_folder_of_single_runs(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    make_job(outputs / "2024-06-01" / "10-00-00", [], 10.0)
    make_job(outputs / "2024-06-01" / "11-00-00", ["seed=7"], 30.0)
    make_job(outputs / "2024-06-02" / "09-30-00", ["collector.min_score=50"], 5.0)
    make_job(outputs / "2024-06-02" / "10-30-00", ["collector.min_score=50", "seed=2"])  # crashed
    runs = load_runs(outputs)
    assert [r.name for r in runs] == [
        "2024-06-01/10-00-00", "2024-06-01/11-00-00", "2024-06-02/09-30-00", "2024-06-02/10-30-00",
    ]  # fmt: skip
    rows = by_group(summarize(runs))
    assert list(rows) == ["(defaults)", "collector.min_score=50"]
    assert rows["(defaults)"].n == 2 and rows["(defaults)"].score_mean == 20.0
    assert rows["(defaults)"].score_std == 10.0
    assert rows["collector.min_score=50"].n == 1
    assert rows["collector.min_score=50"].failed == [("2024-06-02/10-30-00", "incomplete")]


def test_root_that_is_a_job_dir(tmp_path: Path) -> None:
    job = make_job(tmp_path / "12-00-00", ["seed=1"], 42.0)
    (run,) = load_runs(job)
    assert run.name == "12-00-00" and run.completed and run.score == 42.0


def test_cli_subprocess(sweep: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rl_lab.report", str(sweep)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "collector.min_score=100" in proc.stdout and "Traceback" not in proc.stderr
    assert (sweep / "summary.md").exists()
    assert (sweep / "summary.png").exists() == HAS_MPL

    missing = subprocess.run(
        [sys.executable, "-m", "rl_lab.report", str(sweep / "nope")], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2
    assert str(sweep / "nope") in missing.stderr and "Traceback" not in missing.stderr


HAS_RLIABLE = importlib.util.find_spec("rliable") is not None


@pytest.mark.skipif(not HAS_RLIABLE, reason="rliable not installed (the report extra)")
def test_iqm_columns_in_outputs(sweep: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """min_score=50: seeds 10, 20, 30 -> IQM 20 (the middle one) with a bootstrap CI inside [10, 30]."""
    rows = summarize(load_runs(sweep))
    low = by_group(rows)["collector.min_score=50"]
    assert low.iqm == pytest.approx(20.0) and 10.0 <= low.iqm_ci[0] <= 20.0 <= low.iqm_ci[1] <= 30.0
    written = write_outputs(sweep, rows, load_runs(sweep))
    assert ((sweep / "summary_profile.png") in written) == HAS_MPL
    with open(sweep / "summary.csv", newline="") as f:
        table = {r["group"]: r for r in csv.DictReader(f)}
    assert float(table["collector.min_score=50"]["iqm"]) == pytest.approx(20.0)
    high = table["collector.min_score=100"]
    assert float(high["iqm_ci_low"]) <= 210.0 <= float(high["iqm_ci_high"])
    md = (sweep / "summary.md").read_text()
    ci = f"{low.iqm_ci[0]:.2f}, {low.iqm_ci[1]:.2f}"
    assert "IQM [95% CI]" in md and f"| collector.min_score=50 | 3 | 20.00 ± 8.16 | 20.00 [{ci}] |" in md
    monkeypatch.setenv("COLUMNS", "200")
    assert main([str(sweep), "--no-plot"]) == 0
    assert "IQM [95% CI]" in capsys.readouterr().out


def test_without_rliable_the_report_says_how_to_get_the_iqm(
    sweep: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    for mod in ("rliable", "rliable.library", "rliable.metrics"):
        monkeypatch.setitem(sys.modules, mod, None)
    monkeypatch.setenv("COLUMNS", "200")
    assert main([str(sweep), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "pip install -e '.[report]'" in out and "IQM [95% CI] │" not in out
    md = (sweep / "summary.md").read_text()
    assert "pip install -e '.[report]'" in md and "| IQM" not in md
    assert "| collector.min_score=50 | 3 | 20.00 ± 8.16 | 0.900 |" in md
    with open(sweep / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert table[0]["iqm"] == table[0]["iqm_ci_low"] == table[0]["iqm_ci_high"] == ""  # same columns, empty
    rows = summarize(load_runs(sweep))
    assert all(r.iqm is None and r.iqm_ci is None for r in rows)
    assert not (sweep / "summary_profile.png").exists()
