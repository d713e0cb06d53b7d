"""Typed round results (rl_lab.results): metrics.json keeps the keys it had, and reads back into the same objects."""

from __future__ import annotations

import json

import pytest

from rl_lab.config import CollectorConfig, Config, EnvConfig, EvaluatorConfig, PolicyConfig, TrainerConfig
from rl_lab.results import CollectFigures, EvalFigures, RoundResult, RunMetrics, TrainFigures

# The keys of metrics.json and eval.json, pinned from a run of the code before the typed results
# (dict-built figures, commit 5ec1168), in the order they are written. They are the public contract.
METRICS_KEYS = [
    "status", "rounds", "env_id", "seed", "device", "backend", "env_threads",
    "collect", "train", "eval", "total_seconds", "solve_seconds", "weights_sha256",
]  # fmt: skip
INTERRUPTED_KEYS = [k for k in METRICS_KEYS if k not in ("solve_seconds", "weights_sha256")]
ROUND_KEYS = ["round", "collect", "train", "eval", "dataset_sha256", "weights_sha256", "elapsed_seconds"]
COLLECT_KEYS = [
    "episodes", "kept_episodes", "kept_fraction", "samples", "score_mean", "score_std", "score_max", "threshold",
    "action_balance", "env_steps", "useful_steps", "steps_per_second", "seconds",
]  # fmt: skip
TRAIN_KEYS = [
    "history", "epochs", "samples", "val_samples", "final_loss", "train_accuracy", "val_loss", "val_accuracy",
    "seconds", "samples_per_second",
]  # fmt: skip
EVAL_JSON_KEYS = [
    "env_id", "episodes", "score_mean", "score_std", "score_min", "score_median", "score_max", "success_rate",
    "reward_threshold", "length_mean", "action_counts", "action_balance", "scores",
]  # fmt: skip
EVAL_KEYS = [k for k in EVAL_JSON_KEYS if k != "scores"] + ["seconds", "screened"]
BOX_KEYS = ["action_mean", "action_std", "action_saturation", "action_histogram"]


def bandit_config(rounds: int, **kw) -> Config:
    return Config(
        env=EnvConfig(id="rl_lab_test/BestAction-v0", num_envs=16),
        collector=CollectorConfig(episodes=32, max_steps=20, min_score=None, top_fraction=0.25, behaviour="policy"),
        policy=PolicyConfig(hidden_sizes=[16], dropout=0.0),
        trainer=TrainerConfig(epochs=2, batch_size=64, lr=0.01),
        evaluator=EvaluatorConfig(episodes=8),
        rounds=rounds,
        seed=0,
        **kw,
    )


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    from rl_lab.pipeline import run

    out = tmp_path_factory.mktemp("run")
    returned = run(bandit_config(rounds=2), out)
    return out, returned


def test_metrics_json_keys_are_todays(two_rounds):
    out, returned = two_rounds
    m = json.loads((out / "metrics.json").read_text())
    assert m == returned
    assert list(m) == METRICS_KEYS
    for r in (*m["rounds"], m):
        if "round" in r:
            assert list(r) == ROUND_KEYS
        assert list(r["collect"]) == COLLECT_KEYS
        assert list(r["train"]) == TRAIN_KEYS
        assert list(r["eval"]) == EVAL_KEYS
        assert isinstance(r["eval"]["screened"], bool) and isinstance(r["collect"]["episodes"], int)
    assert [r["round"] for r in m["rounds"]] == [0, 1] and m["eval"] == m["rounds"][-1]["eval"]
    assert list(m["train"]["history"][0]) == ["train/loss", "train/accuracy", "val/loss", "val/accuracy"]
    for path in (out / "eval.json", out / "round_0" / "eval.json"):
        assert list(json.loads(path.read_text())) == EVAL_JSON_KEYS


def test_a_round_round_trips_through_its_json_form(two_rounds):
    out, _ = two_rounds
    m = json.loads((out / "metrics.json").read_text())
    for r in m["rounds"]:
        result = RoundResult.from_dict(r)
        assert isinstance(result.collect, CollectFigures) and isinstance(result.train, TrainFigures)
        assert isinstance(result.eval, EvalFigures)
        assert result.to_dict() == r and list(result.to_dict()) == ROUND_KEYS
        assert json.loads(json.dumps(result.to_dict())) == r
    metrics = RunMetrics.from_dict(m)
    assert metrics.to_dict() == m and list(metrics.to_dict()) == METRICS_KEYS
    assert metrics.last is not None and metrics.last.eval.score_mean == m["eval"]["score_mean"]


def test_an_interrupted_run_writes_no_solve_seconds_and_resumes(tmp_path, monkeypatch):
    from conftest import stop_after_epoch

    from rl_lab import pipeline

    flag = pipeline.StopFlag()
    stop_after_epoch(monkeypatch, flag)  # round 1 stops after its first epoch
    cfg = bandit_config(rounds=2)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg, tmp_path, stop=flag)
    monkeypatch.undo()
    part = json.loads((tmp_path / "metrics.json").read_text())
    assert list(part) == INTERRUPTED_KEYS and part["status"] == "interrupted"
    assert RunMetrics.from_dict(part).to_dict() == part
    cfg.resume = str(tmp_path)
    done = pipeline.run(cfg, tmp_path)
    assert list(done) == METRICS_KEYS and done["rounds"][0] == part["rounds"][0]


def _eval_figures(**actions) -> EvalFigures:
    return EvalFigures(
        env_id="x", episodes=2, score_mean=1.0, score_std=0.0, score_min=1.0, score_median=1.0, score_max=1.0,
        success_rate=None, reward_threshold=None, length_mean=3.0, seconds=0.1, screened=False, **actions,
    )  # fmt: skip


def test_action_figures_are_left_out_when_none_other_nones_are_null():
    discrete = _eval_figures(action_counts=[1, 1], action_balance=[0.5, 0.5]).to_dict()
    assert list(discrete) == EVAL_KEYS and discrete["success_rate"] is None  # null, not left out
    box = {"action_mean": [0.1], "action_std": [0.2], "action_saturation": [0.0]}
    box["action_histogram"] = {"edges": [-1.0, 1.0], "counts": [[3]]}
    continuous = _eval_figures(**box).to_dict()
    assert [k for k in continuous if k not in EVAL_KEYS] == BOX_KEYS
    assert "action_balance" not in continuous and "action_counts" not in continuous
    assert EvalFigures.from_dict(continuous).to_dict() == continuous


def test_from_dict_refuses_unknown_and_missing_keys():
    good = _eval_figures(action_counts=[2], action_balance=[1.0]).to_dict()
    with pytest.raises(ValueError, match="unknown keys.*'surprise'"):
        EvalFigures.from_dict({**good, "surprise": 1})
    with pytest.raises(ValueError, match="score_mean"):
        EvalFigures.from_dict({k: v for k, v in good.items() if k != "score_mean"})


def test_format_round_reads_the_typed_result(two_rounds):
    from rl_lab.pipeline import format_eval, format_round

    out, _ = two_rounds
    result = RoundResult.from_dict(json.loads((out / "metrics.json").read_text())["rounds"][1])
    text = format_round(result, rounds=2)
    assert text.startswith("round 1\n") and "lowest kept score" in text and "choice 1:" in text
    summary = json.loads((out / "eval.json").read_text())  # what rl-lab-eval passes
    assert format_eval(summary, 1.5).splitlines()[0] == format_eval(result.eval, 1.5).splitlines()[0]
