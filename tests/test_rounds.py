"""Iterative rounds (the cross-entropy method): learning across rounds, previous-round behaviour, stop_score,
per-round artifacts."""

from __future__ import annotations

import json

import pytest
from conftest import stop_after_epoch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rl_lab.config import CollectorConfig, Config, EnvConfig, EvaluatorConfig, PolicyConfig, TrainerConfig
from rl_lab.data import load_dataset
from rl_lab.errors import ConfigError
from rl_lab.pipeline import run


def bandit_config(rounds: int, stop_score: float | None = None, **trainer) -> Config:
    """rl_lab_test/BestAction-v0: 20 steps, reward 1 when the action matches obs[0] > 0.5 (random scores ~10)."""
    return Config(
        env=EnvConfig(id="rl_lab_test/BestAction-v0", num_envs=32),
        collector=CollectorConfig(episodes=64, max_steps=20, min_score=None, top_fraction=0.25, behaviour="policy"),
        policy=PolicyConfig(hidden_sizes=[32], dropout=0.0),
        trainer=TrainerConfig(**{"epochs": 3, "batch_size": 64, "lr": 0.01, "val_fraction": 0.0, **trainer}),
        evaluator=EvaluatorConfig(episodes=20),
        rounds=rounds,
        stop_score=stop_score,
        seed=0,
    )


def test_rounds_improve_and_collect_with_the_previous_policy(tmp_path):
    metrics = run(bandit_config(rounds=4), tmp_path)
    rounds = metrics["rounds"]
    assert len(rounds) == 4
    collect_means = [r["collect"]["score_mean"] for r in rounds]
    assert collect_means[0] < 12  # random behaviour in round 0
    assert collect_means[-1] > collect_means[0] + 4  # later rounds collect with a trained policy
    assert rounds[-1]["eval"]["score_mean"] >= 18  # the known best action is learned (max 20)
    behaviours = [load_dataset(tmp_path / f"round_{k}" / "dataset.npz").meta["behaviour"] for k in range(4)]
    assert behaviours == ["random", "policy", "policy", "policy"]
    assert metrics["solve_seconds"] is None  # no stop_score
    assert [r["elapsed_seconds"] for r in rounds] == sorted(r["elapsed_seconds"] for r in rounds)


def test_stop_score_stops_early_and_records_solve_seconds(tmp_path):
    metrics = run(bandit_config(rounds=10, stop_score=15), tmp_path)
    assert len(metrics["rounds"]) < 10
    assert metrics["rounds"][-1]["eval"]["score_mean"] >= 15
    assert all(r["eval"]["score_mean"] < 15 for r in metrics["rounds"][:-1])
    assert metrics["solve_seconds"] == pytest.approx(metrics["rounds"][-1]["elapsed_seconds"])


def test_per_round_artifacts_and_round_curves(tmp_path):
    metrics = run(bandit_config(rounds=3), tmp_path)
    for k in range(3):
        for name in ("dataset.npz", "policy.pt", "eval.json"):
            assert (tmp_path / f"round_{k}" / name).is_file(), f"round_{k}/{name}"
    top = json.loads((tmp_path / "eval.json").read_text())
    assert top == json.loads((tmp_path / "round_2" / "eval.json").read_text())
    assert (tmp_path / "policy.pt").is_file() and metrics["status"] == "completed"
    ea = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    for tag in (
        "round/eval_score_mean",
        "round/collect_score_mean",
        "round/kept_fraction",
        "round/threshold",
        "round/train_loss",
        "round/action_balance/0",
    ):
        assert [e.step for e in ea.Scalars(tag)] == [0, 1, 2], tag
    assert len(ea.Scalars("train/loss")) == 9  # 3 epochs x 3 rounds, one curve
    assert [e.step for e in ea.Scalars("eval/score_mean")] == [0, 1, 2]  # hparams add no point at step 0
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = ea.PluginTagToContent("hparams")
    infos = [HParamsPluginData.FromString(v) for v in content.values()]
    exp = next(i.experiment for i in infos if i.HasField("experiment"))
    assert "eval/score_mean" in [m.name.tag for m in exp.metric_infos]


def test_accumulate_trains_on_all_rounds_elites(tmp_path):
    metrics = run(bandit_config(rounds=2, warm_start=False), tmp_path.joinpath("a"))
    cfg = bandit_config(rounds=2)
    cfg.collector.accumulate = True
    acc = run(cfg, tmp_path / "b")
    kept = [r["collect"]["samples"] for r in acc["rounds"]]
    assert acc["rounds"][1]["train"]["samples"] == sum(kept)  # val_fraction 0: every kept sample
    assert metrics["rounds"][1]["train"]["samples"] == metrics["rounds"][1]["collect"]["samples"]


def test_report_md_always_report_png_with_plots_true(tmp_path, monkeypatch):
    cfg = bandit_config(rounds=2)
    cfg.plots = True
    run(cfg, tmp_path / "with")
    text = (tmp_path / "with" / "report.md").read_text()
    assert "## Rounds" in text and "![report.png](report.png)" in text
    assert (tmp_path / "with" / "report.png").read_bytes()[:4] == b"\x89PNG"
    run(bandit_config(rounds=1), tmp_path / "default")  # plots=false: no matplotlib at all
    assert (tmp_path / "default" / "report.md").is_file() and not (tmp_path / "default" / "report.png").exists()
    assert "report.png" not in (tmp_path / "default" / "report.md").read_text()

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(ConfigError, match=r"plots=true .*pip install -e \"\.\[plots\]\""):
        run(cfg, tmp_path / "missing")  # refused before any work, not after the run
    assert not (tmp_path / "missing" / "metrics.json").exists()


def _round_checkpoints(out, rounds):
    from rl_lab.policy import read_checkpoint

    return [read_checkpoint(out / f"round_{k}" / "policy.pt") for k in range(rounds)]


def test_warm_start_carries_adam_state_across_rounds(tmp_path):
    """trainer.warm_start continues the previous round's Adam: step counts add up, moments carry over."""
    import math

    import torch

    from rl_lab.envs import env_info
    from rl_lab.pipeline import TRAIN, build_policy
    from rl_lab.policy import MLPPolicy
    from rl_lab.train import fit, split
    from rl_lab.utils import derive_seed

    cfg = bandit_config(rounds=3, epochs=2, batch_size=48, val_fraction=0.1)
    run(cfg, tmp_path)
    payloads = _round_checkpoints(tmp_path, 3)
    total = 0
    for k, payload in enumerate(payloads):
        ds = load_dataset(tmp_path / f"round_{k}" / "dataset.npz")
        n_train = len(split(ds.samples, cfg.trainer.val_fraction, 0)[0])
        total += cfg.trainer.epochs * math.ceil(n_train / cfg.trainer.batch_size)  # keeps the short last batch
        steps = {float(s) for s in payload["extra"]["optimizer"]["step"]}
        assert steps == {float(total)}, f"round {k}: Adam step count {steps}, expected {total} (carried over)"

    # The moments are not reset: round 2 is exactly round 1's weights + Adam state trained on round 2's data.
    info = env_info(cfg.env.id)
    ds = load_dataset(tmp_path / "round_2" / "dataset.npz")
    prev = payloads[1]
    expected = payloads[2]["state_dict"]

    def refit(optimizer_state):
        policy = MLPPolicy(**prev["kwargs"])
        policy.load_state_dict(prev["state_dict"])
        fit(
            policy,
            ds.obs,
            ds.actions,
            cfg.trainer,
            seed=derive_seed(cfg.seed, TRAIN, 2),
            optimizer_state=optimizer_state,
        )
        return policy.state_dict()

    carried = refit(prev["extra"]["optimizer"])
    assert all(torch.equal(carried[n], expected[n]) for n in expected)
    fresh = refit(None)
    assert not all(torch.equal(fresh[n], expected[n]) for n in expected), "a fresh Adam gives the same weights"
    assert build_policy(cfg, info).kwargs == prev["kwargs"]


def test_fresh_weights_come_from_the_round_seed_and_no_adam_state_is_kept(tmp_path, monkeypatch):
    """Without warm_start each round starts from weights seeded by derive_seed(seed, INIT, k), not the global RNG."""
    import torch

    import rl_lab.pipeline as pipeline
    from rl_lab.envs import env_info
    from rl_lab.utils import derive_seed

    built = []
    real_build = pipeline.build_policy

    def build_policy(cfg, info):
        policy = real_build(cfg, info)
        built.append(pipeline.weights_hash(policy))
        torch.rand(7)  # consume the global RNG: the next round's weights must not depend on it
        return policy

    monkeypatch.setattr(pipeline, "build_policy", build_policy)
    cfg = bandit_config(rounds=3, warm_start=False)
    run(cfg, tmp_path)
    info = env_info(cfg.env.id)
    expected = []
    for k in range(3):
        torch.manual_seed(derive_seed(cfg.seed, pipeline.INIT, k))
        expected.append(pipeline.weights_hash(real_build(cfg, info)))
    assert built == expected and len(set(built)) == 3
    assert all("optimizer" not in p["extra"] for p in _round_checkpoints(tmp_path, 3))


@pytest.mark.parametrize("warm_start", [True, False])
@pytest.mark.parametrize("where", ["between_rounds", "mid_training"])
def test_multi_round_resume_is_bit_identical(tmp_path, monkeypatch, warm_start, where):
    """Interrupted in round 1 (mid-training) or before round 2, then resumed: every round as uninterrupted."""
    import rl_lab.pipeline as pipeline

    cfg = bandit_config(rounds=3, warm_start=warm_start, epochs=3)
    full = run(cfg, tmp_path / "a")

    flag = pipeline.StopFlag()
    if where == "between_rounds":
        real_collect = pipeline._collect_stage

        def collect_stage(cfg, info, k, *args):
            if k == 2:
                raise KeyboardInterrupt
            return real_collect(cfg, info, k, *args)

        monkeypatch.setattr(pipeline, "_collect_stage", collect_stage)
    else:
        stop_after_epoch(monkeypatch, flag)  # round 1 stops after its first epoch
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "b", stop=flag)
    monkeypatch.undo()
    part = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert part["status"] == "interrupted"
    assert len(part["rounds"]) == (2 if where == "between_rounds" else 1)
    assert (tmp_path / "b" / "policy_last.pt").is_file()

    cfg.resume = str(tmp_path / "b")
    resumed = run(cfg, tmp_path / "b")
    assert resumed["status"] == "completed" and len(resumed["rounds"]) == 3
    for k, (x, y) in enumerate(zip(full["rounds"], resumed["rounds"], strict=True)):
        assert x["dataset_sha256"] == y["dataset_sha256"], f"round {k}: dataset differs after resume"
        assert x["weights_sha256"] == y["weights_sha256"], f"round {k}: weights differ after resume"
    assert full["weights_sha256"] == resumed["weights_sha256"]


def test_screening_skips_full_evaluations_that_cannot_pass_and_changes_nothing_else(tmp_path):
    """evaluator.screen_episodes: hopeless rounds report their screen; the stopping round is a full evaluation."""
    plain_cfg = bandit_config(rounds=6, stop_score=19.5)  # the early rounds are far from it, the later ones close
    screened_cfg = bandit_config(rounds=6, stop_score=19.5)
    screened_cfg.evaluator.screen_episodes = 5
    plain = run(plain_cfg, tmp_path / "plain")
    quick = run(screened_cfg, tmp_path / "screened")
    assert [r["weights_sha256"] for r in quick["rounds"]] == [r["weights_sha256"] for r in plain["rounds"]]
    flags = [r["eval"]["screened"] for r in quick["rounds"]]
    assert any(flags) and not flags[-1]  # some hopeless rounds were screened; the last one never is
    for r, p in zip(quick["rounds"], plain["rounds"], strict=True):
        if r["eval"]["screened"]:
            assert r["eval"]["episodes"] == 5 and r["eval"]["score_mean"] < 19.5
        else:  # a full evaluation: the same episodes as without a screen
            assert r["eval"] == {**p["eval"], "seconds": r["eval"]["seconds"]}
    assert quick["eval"] == {**plain["eval"], "seconds": quick["eval"]["seconds"]}  # the final report: a full one
    assert quick["eval"]["episodes"] == 20 and flags[0] and not all(flags[:-1])


def test_screen_episodes_must_be_a_count():
    cfg = bandit_config(rounds=2)
    cfg.evaluator.screen_episodes = -1
    with pytest.raises(ConfigError, match="evaluator.screen_episodes=-1"):
        from rl_lab.config import validate

        validate(cfg)


def test_temperature_decay_makes_each_round_greedier(tmp_path, monkeypatch):
    import rl_lab.pipeline as pipeline

    seen = []
    real = pipeline.act_fn

    def spy(policy, greedy=True, temperature=1.0, **kw):
        if not greedy:
            seen.append(temperature)
        return real(policy, greedy=greedy, temperature=temperature, **kw)

    monkeypatch.setattr(pipeline, "act_fn", spy)
    cfg = bandit_config(rounds=4)
    cfg.collector.temperature, cfg.collector.temperature_decay = 2.0, 0.5
    run(cfg, tmp_path)
    assert seen == [2.0, 1.0, 0.5]  # rounds 1, 2, 3 (round 0 plays uniformly at random)
    cfg.collector.temperature_decay = 0.0
    with pytest.raises(ConfigError, match="collector.temperature_decay=0.0"):
        from rl_lab.config import validate

        validate(cfg)


def _cartpole_cem(rounds: int, early_exit: bool) -> Config:
    """A small CEM on CartPole-v1 whose early rounds fall well short of stop_score=500."""
    return Config(
        env=EnvConfig(id="CartPole-v1", num_envs=64),
        collector=CollectorConfig(episodes=64, min_score=None, top_fraction=0.2, behaviour="policy"),
        policy=PolicyConfig(hidden_sizes=[32], dropout=0.0),
        trainer=TrainerConfig(epochs=1, batch_size=256, lr=0.01, val_fraction=0.0, progress=False),
        evaluator=EvaluatorConfig(episodes=50, early_exit=early_exit),
        rounds=rounds,
        stop_score=500,
        seed=1,
    )


def test_early_exit_cuts_hopeless_evaluations_and_changes_nothing_else(tmp_path):
    """evaluator.early_exit: the same datasets, weights and stopping round; cut rounds say so, everywhere."""
    from rl_lab.pipeline import format_round
    from rl_lab.results import RunMetrics

    plain = run(_cartpole_cem(4, False), tmp_path / "plain")
    quick = run(_cartpole_cem(4, True), tmp_path / "cut")
    for key in ("weights_sha256", "dataset_sha256"):
        assert [r[key] for r in quick["rounds"]] == [r[key] for r in plain["rounds"]]
    cuts = [r["eval"].get("cut_step") is not None for r in quick["rounds"]]
    assert any(cuts) and not cuts[-1]  # the last round's evaluation is the run's final score: never cut
    for k, (r, p) in enumerate(zip(quick["rounds"], plain["rounds"], strict=True)):
        saved = json.loads((tmp_path / "cut" / f"round_{k}" / "eval.json").read_text())
        if r["eval"].get("cut_step") is not None:
            assert r["eval"]["screened"] and p["eval"]["score_mean"] <= r["eval"]["score_bound"] < 500
            assert saved["cut_step"] == r["eval"]["cut_step"]
        else:
            assert r["eval"] == {**p["eval"], "seconds": r["eval"]["seconds"]} and "cut_step" not in saved
    assert quick["eval"] == {**plain["eval"], "seconds": quick["eval"]["seconds"]}
    first_cut = RunMetrics.from_dict(quick).rounds[cuts.index(True)]
    assert "stop_score out of reach" in format_round(first_cut, 4)
    report_md = (tmp_path / "cut" / "report.md").read_text()
    assert f"stopped at step {first_cut.eval.cut_step}: stop_score out of reach" in report_md
    acc = EventAccumulator(str(tmp_path / "cut" / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    cut_steps = {e.step for e in acc.Scalars("eval/score_bound")}
    assert cut_steps == {k for k, c in enumerate(cuts) if c}
    assert not cut_steps & {e.step for e in acc.Scalars("eval/score_mean")}  # no partial figure logged as a score
    assert "eval/cut_step" in tags


def test_early_exit_on_an_env_without_a_reward_bound_says_so_and_evaluates_in_full(tmp_path, caplog):
    cfg = bandit_config(rounds=3, stop_score=19.5)
    cfg.evaluator.early_exit = True
    with caplog.at_level("WARNING", logger="rl_lab"):
        metrics = run(cfg, tmp_path)
    assert "knows no bound on rl_lab_test/BestAction-v0's step rewards" in caplog.text
    assert all("cut_step" not in r["eval"] for r in metrics["rounds"])


@pytest.mark.parametrize("experiment", ["cem", "acrobot"])
def test_the_race_experiments_cut_hopeless_evaluations(experiment):
    """README, "The baseline ladder": experiment=cem and experiment=acrobot set evaluator.early_exit."""
    from rl_lab.api import compose

    assert compose([f"experiment={experiment}"]).evaluator.early_exit is True
    assert compose([]).evaluator.early_exit is False
