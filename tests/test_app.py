"""The real CLI in a subprocess: artifacts, TensorBoard events, rl-lab-eval, multirun, bad input, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rl_lab.data import load_dataset
from rl_lab.policy import load_policy

pytestmark = pytest.mark.slow

SMALL = ["debug=fast", "collector.episodes=300", "evaluator.episodes=6"]


def run_dir(tmp_path: Path, name: str = "run") -> Path:
    return tmp_path / name


def check_run(out: Path) -> dict:
    """Every artifact is present and well formed."""
    ds = load_dataset(out / "dataset.npz")
    with np.load(out / "dataset.npz", allow_pickle=False) as f:
        assert {"obs", "actions", "episode_returns", "episode_lengths", "kept", "meta"} <= set(f.files)
    assert ds.samples == ds.episode_lengths[ds.kept].sum() > 0
    policy, payload = load_policy(out / "policy.pt")
    assert payload["env_id"] == "CartPole-v1"
    ev = json.loads((out / "eval.json").read_text())
    assert abs(sum(ev["action_balance"]) - 1) < 1e-9 and len(ev["scores"]) == ev["episodes"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "completed"
    assert {
        "episodes",
        "kept_episodes",
        "samples",
        "score_mean",
        "score_max",
        "env_steps",
        "seconds",
        "steps_per_second",
    } <= set(m["collect"])
    assert {"epochs", "samples", "final_loss", "val_accuracy", "seconds"} <= set(m["train"])
    assert {"score_mean", "score_std", "seconds"} <= set(m["eval"]) and m["total_seconds"] > 0
    assert (out / ".hydra" / "config.yaml").is_file()
    assert not list(out.glob(".*.tmp")) and not (out / "policy_last.pt").exists()
    return m


def test_default_pipeline_writes_every_artifact_and_tensorboard(cli, tmp_path):
    out = run_dir(tmp_path)
    proc = cli(*SMALL, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    check_run(out)
    text = proc.stdout + proc.stderr
    assert "kept" in text and "choice 0:" in text and "val accuracy" in text
    ea = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for tag in (
        "collect/kept_fraction",
        "collect/score_mean",
        "train/loss",
        "train/accuracy",
        "val/loss",
        "val/accuracy",
        "eval/score_mean",
        "eval/score_std",
        "eval/action_balance/0",
        "eval/action_balance/1",
    ):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    assert len(ea.Scalars("train/loss")) == 1  # debug=fast trains one epoch
    assert {"collect/scores_all", "collect/scores_kept", "eval/scores"} <= set(ea.Tags()["histograms"])
    hp = ea.PluginTagToContent("hparams")
    assert hp, "no hparams summaries"
    assert len(ea.Scalars("eval/score_mean")) == 1  # the hparams metrics add no extra point to the curves
    assert any("config" in t for t in ea.Tags()["tensors"])


def test_eval_cli_evaluates_a_saved_policy(cli, tmp_path):
    out = run_dir(tmp_path)
    assert cli(*SMALL, f"hydra.run.dir={out}").returncode == 0
    ev_dir = tmp_path / "ev"
    proc = cli(
        f"checkpoint={out / 'policy.pt'}", "evaluator.episodes=5", f"hydra.run.dir={ev_dir}", entry="rl_lab.eval"
    )
    assert proc.returncode == 0, proc.stderr
    ev = json.loads((ev_dir / "eval.json").read_text())
    assert ev["episodes"] == 5 and ev["env_id"] == "CartPole-v1"


def test_help_lists_the_config_groups(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    for group in ("env:", "policy:", "collector:", "trainer:", "evaluator:", "experiment:"):
        assert group in proc.stdout


def test_multirun_two_jobs(cli, tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli("-m", *SMALL, "trainer.lr=1e-3,1e-4", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == 2
    assert jobs[0].name.startswith("0_") and jobs[0].name.endswith("trainer.lr=0.001")  # labelled by overrides
    assert jobs[1].name.startswith("1_") and jobs[1].name.endswith("trainer.lr=0.0001")
    for job in jobs:
        check_run(job)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["env.id=NoSuchEnv-v0"], "env.id='NoSuchEnv-v0'"),
        (["env.id=Pendulum-v1"], "continuous"),
        (["collector.min_score=499"], "collector.min_score=499"),
        (["policy.dropout=1.5"], "policy.dropout"),
        (["collector.episodes=0"], "collector.episodes"),
        (["collector.min_score=null", "collector.top_fraction=2"], "collector.top_fraction"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph_and_no_traceback(cli, tmp_path, overrides, needle):
    proc = cli(*SMALL, *overrides, f"hydra.run.dir={tmp_path / 'bad'}")
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "bad" / "policy.pt").exists()


def test_missing_and_corrupt_checkpoint(cli, tmp_path):
    proc = cli(entry="rl_lab.eval")
    assert proc.returncode == 2 and "checkpoint is not set" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("checkpoint=nope.pt", entry="rl_lab.eval")
    assert proc.returncode == 2 and "checkpoint='nope.pt'" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    proc = cli("checkpoint=bad.pt", entry="rl_lab.eval")
    assert proc.returncode == 2 and "corrupt" in proc.stderr and "Traceback" not in proc.stderr


def test_same_seed_same_results_other_seed_differs(cli, tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / name
        assert cli(*SMALL, f"seed={seed}", f"hydra.run.dir={out}").returncode == 0
        m = json.loads((out / "metrics.json").read_text())
        weights = load_policy(out / "policy.pt")[0].state_dict()
        runs[name] = (
            m["rounds"][0]["dataset_sha256"],
            m["weights_sha256"],
            json.loads((out / "eval.json").read_text())["scores"],
            weights,
        )
    a, b, c = runs["a"], runs["b"], runs["c"]
    assert a[:3] == b[:3]
    assert all(torch.equal(x, y) for x, y in zip(a[3].values(), b[3].values(), strict=True))
    assert a[0] != c[0] and a[1] != c[1]


def test_dataset_reuse_and_env_mismatch(cli, tmp_path):
    out = tmp_path / "run"
    assert cli(*SMALL, f"hydra.run.dir={out}").returncode == 0
    reuse = tmp_path / "reuse"
    proc = cli(*SMALL, f"collector.dataset={out / 'dataset.npz'}", f"hydra.run.dir={reuse}")
    assert proc.returncode == 0, proc.stderr
    a = json.loads((out / "metrics.json").read_text())["rounds"][0]["dataset_sha256"]
    b = json.loads((reuse / "metrics.json").read_text())["rounds"][0]["dataset_sha256"]
    assert a == b  # trained on the very same data, without collecting
    proc = cli(
        *SMALL, "env.id=Acrobot-v1", f"collector.dataset={out / 'dataset.npz'}", f"hydra.run.dir={tmp_path / 'bad'}"
    )
    assert proc.returncode == 2 and "CartPole-v1" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(f"checkpoint={out / 'policy.pt'}", "env.id=Acrobot-v1", entry="rl_lab.eval")
    assert proc.returncode == 2 and "4 observations and 2 actions" in proc.stderr
    assert "Traceback" not in proc.stderr
