"""rl-lab-report's sweep statistics: the IQM and its stratified-bootstrap CI (rliable), the performance profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

rliable = pytest.importorskip("rliable", reason="rliable not installed (the report extra)")
from rliable import library as rly  # noqa: E402
from rliable import metrics  # noqa: E402

from rl_lab.report import (  # noqa: E402
    GroupRow,
    RunRecord,
    _iqm,
    iqm_interval,
    performance_profiles,
    rliable_problem,
    summarize,
)


def row(group: str, scores: list[float]) -> GroupRow:
    mean, std = (float(np.mean(scores)), float(np.std(scores))) if scores else (None, None)
    return GroupRow(group, [group], len(scores), mean, std, scores)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 12])
def test_iqm_is_rliables_aggregate_iqm(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        x = rng.normal(100, 30, size=(n, 1))
        assert _iqm(x) == pytest.approx(float(metrics.aggregate_iqm(x)), rel=1e-12, abs=1e-12)


@pytest.mark.filterwarnings("ignore:random_state is deprecated:FutureWarning")
def test_interval_is_rliables_stratified_bootstrap_and_seeded():
    scores = [12.0, 80.0, 33.0, 500.0, 41.0, 9.0]
    iqm, low, high = iqm_interval(scores, reps=500, seed=3)
    # the same bootstrap, with rliable's own IQM function (rliable 1.2 resamples from np.random's global state)
    state = np.random.get_state()
    np.random.seed(3)
    point, ci = rly.get_interval_estimates(
        {"g": np.array(scores).reshape(-1, 1)},
        lambda s: np.array([metrics.aggregate_iqm(s)]),
        reps=500,
        random_state=np.random.RandomState(3),
    )
    np.random.set_state(state)
    assert iqm == pytest.approx(point["g"][0]) and iqm == pytest.approx(np.mean(sorted(scores)[1:5]))
    assert (low, high) == pytest.approx((ci["g"][0][0], ci["g"][1][0]))
    assert low <= iqm <= high and min(scores) <= low and high <= max(scores)
    before = np.random.get_state()[1].copy()
    assert iqm_interval(scores, reps=500, seed=3) == (iqm, low, high)  # deterministic
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # the caller's global generator is untouched
    assert iqm_interval(scores, reps=500, seed=4) != (iqm, low, high)


def test_outlier_moves_the_mean_not_the_iqm():
    iqm, low, high = iqm_interval([100.0, 101.0, 99.0, 100.0, 5000.0])
    assert iqm == pytest.approx(100.0 + 1 / 3) and high < 5000.0
    assert iqm_interval([7.0]) == (7.0, 7.0, 7.0)  # one seed: a point, no spread


def run(path: str, overrides: list[str], score: float) -> RunRecord:
    return RunRecord(Path(path), overrides, "completed", {"score_mean": score}, {"status": "completed"})


def test_each_group_is_resampled_on_its_own():
    """A group's interval does not depend on which other groups are in the sweep."""
    runs = []
    for seed, score in enumerate([10.0, 20.0, 35.0, 90.0]):
        runs += [run(f"a{seed}", [f"seed={seed}", "x=1"], score), run(f"b{seed}", [f"seed={seed}", "x=2"], 3 * score)]
    both = {r.group: r for r in summarize(runs)}
    (alone,) = summarize([r for r in runs if "x=1" in r.overrides])
    assert alone.iqm_ci == both["x=1"].iqm_ci and alone.iqm == both["x=1"].iqm == 27.5
    assert both["x=2"].iqm == pytest.approx(82.5)
    assert summarize(runs, iqm=False)[0].iqm is None


def test_performance_profiles_are_rliables_score_distributions():
    rows = [row("a", [1.0, 5.0, 9.0]), row("b", [4.0, 6.0]), row("empty", [])]
    taus = np.linspace(0, 10, 21)
    profiles = performance_profiles(rows, taus, reps=200)
    assert list(profiles) == ["a", "b"]
    for name, scores in (("a", [1.0, 5.0, 9.0]), ("b", [4.0, 6.0])):
        profile, low, high = profiles[name]
        np.testing.assert_allclose(profile, rly.score_distributions(np.array(scores).reshape(-1, 1), taus))
        assert np.all(low <= profile + 1e-12) and np.all(profile <= high + 1e-12)
    assert rliable_problem() is None
